"""The rule that sizes a track's rounds: the reference (FedAvg) curve has plateaued.

  check(points, num_rounds, tail=0.2, max_gain=0.005) -> Plateau

points: [(round, value)] of the evaluated rounds (a seed's curve, or the
mean over seeds), higher is better. The curve has plateaued when the metric
gains less than `max_gain` (relative: 0.5%) over the last `tail` (20%) of
the rounds: from the last evaluation at or before round
num_rounds - ceil(tail * num_rounds) to the final one. Undetermined when no
evaluation falls at or before that round (evaluate more often) or the final
round was not evaluated.
"""
import math
from typing import NamedTuple, Optional, Sequence

TAIL = 0.2
MAX_GAIN = 0.005


class Plateau(NamedTuple):
  reached: Optional[bool]     # None: undetermined (see `why`)
  gain: Optional[float]       # relative gain over the window
  start: Optional[int]        # the window's first evaluated round
  why: str

  def describe(self) -> str:
    if self.reached is None:
      return f'undetermined: {self.why}'
    verdict = 'plateaued' if self.reached else 'still improving'
    return (f'{verdict}: {100 * self.gain:+.2f}% from round {self.start} to the end '
            f'(rule: < {100 * MAX_GAIN:.1f}% over the last {100 * TAIL:.0f}% of rounds)')


def check(points: Sequence[tuple], num_rounds: int, tail: float = TAIL,
          max_gain: float = MAX_GAIN) -> Plateau:
  if not 0 < tail < 1 or num_rounds < 1:
    raise ValueError(f'tail must be in (0, 1) and num_rounds >= 1, got {tail}, {num_rounds}')
  points = sorted((int(r), float(v)) for r, v in points if v is not None)
  if not points or points[-1][0] != num_rounds:
    return Plateau(None, None, None, f'round {num_rounds} was not evaluated')
  window = num_rounds - math.ceil(tail * num_rounds)
  before = [p for p in points if p[0] <= window]
  if not before:
    return Plateau(None, None, None, f'no evaluation at or before round {window}: '
                   'evaluate more often')
  start, base = before[-1]
  final = points[-1][1]
  if base == 0:
    return Plateau(None, None, start, 'the metric is 0 at the window start')
  gain = (final - base) / abs(base)
  return Plateau(gain < max_gain, gain, start, '')


def mean_curve(runs: Sequence[Sequence[dict]], metric: str) -> list:
  """[(round, mean over seeds)] at the rounds every run evaluated `metric`."""
  per_run = [{row['round']: row[metric] for row in curve if row.get(metric) is not None}
             for curve in runs]
  if not per_run:
    return []
  common = sorted(set.intersection(*(set(r) for r in per_run)))
  return [(r, math.fsum(run[r] for run in per_run) / len(per_run)) for r in common]
