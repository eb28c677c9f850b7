"""The rule that sizes a track's rounds: the reference (FedAvg) curve has plateaued.

  check(points, num_rounds, tail=0.2, max_gain=0.005) -> Plateau

points: [(round, value)] of the evaluated rounds (a seed's curve, or the
mean over seeds), higher is better. The curve has plateaued when the mean of
its evaluations in the last `tail` (20%) of the rounds is less than
`max_gain` (relative: 0.5%) above the mean of those in the `tail` before it.
Window means, not two single evaluations: one low point (a curve's noise,
or a dip) no longer passes for a plateau. Undetermined when the final round
was not evaluated or a window holds no evaluation (evaluate more often).

Under a learning rate that decays over the run (version 3) the last rounds
anneal, so their window always gains: there the rule is `stretched`. N
rounds are enough when the same run with its schedule stretched over 2N
rounds ends less than `max_gain` (relative: 2%) above it, the gain taken
seed by seed (the same worlds) and averaged.
"""
import math
import statistics
from typing import NamedTuple, Optional, Sequence

TAIL = 0.2
MAX_GAIN = 0.005
STRETCH_GAIN = 0.02
RULE = (f'rule: the mean over the last {100 * TAIL:.0f}% of rounds < {100 * MAX_GAIN:.1f}% '
        f'above the mean over the {100 * TAIL:.0f}% before')


class Plateau(NamedTuple):
  reached: Optional[bool]     # None: undetermined (see `why`)
  gain: Optional[float]       # relative gain of the last window's mean over the one before
  start: Optional[int]        # the windows' first round (the earlier window's)
  why: str
  end: Optional[int] = None   # the last round

  def describe(self) -> str:
    if self.reached is None:
      return f'undetermined: {self.why}'
    verdict = 'plateaued' if self.reached else 'still improving'
    middle = self.start + (self.end - self.start + 1) // 2
    return (f'{verdict}: {100 * self.gain:+.2f}% from rounds {self.start}-{middle - 1} to '
            f'rounds {middle}-{self.end} ({RULE})')


def _windows(num_rounds: int, tail: float) -> tuple:
  """(first round of the earlier window, first of the last one): each ceil(tail * n)."""
  width = math.ceil(tail * num_rounds)
  return num_rounds - 2 * width + 1, num_rounds - width + 1


def window_gain(points: Sequence[tuple], num_rounds: int,
                tail: float = TAIL) -> Optional[float]:
  """The relative gain of the mean over the evaluations in the last `tail` of the
  rounds against the mean over the `tail` before it; None where either window holds
  no evaluation (or the earlier one's mean is 0)."""
  early, late = _windows(num_rounds, tail)
  last = [v for r, v in points if late <= r <= num_rounds]
  before = [v for r, v in points if early <= r < late]
  if not last or not before or math.fsum(before) == 0:
    return None
  base = math.fsum(before) / len(before)
  return (math.fsum(last) / len(last) - base) / abs(base)


def check(points: Sequence[tuple], num_rounds: int, tail: float = TAIL,
          max_gain: float = MAX_GAIN) -> Plateau:
  if not 0 < tail < 0.5 or num_rounds < 1:
    raise ValueError(f'tail must be in (0, 0.5) and num_rounds >= 1, got {tail}, '
                     f'{num_rounds}')
  points = sorted((int(r), float(v)) for r, v in points if v is not None)
  if not points or points[-1][0] != num_rounds:
    return Plateau(None, None, None, f'round {num_rounds} was not evaluated')
  early, late = _windows(num_rounds, tail)
  if not any(early <= r < late for r, _ in points):
    return Plateau(None, None, None, f'no evaluation in rounds {max(early, 1)}-{late - 1}: '
                   'evaluate more often')
  gain = window_gain(points, num_rounds, tail)
  if gain is None:
    return Plateau(None, None, early, 'the metric is 0 in the earlier window')
  return Plateau(gain < max_gain, gain, early, '', num_rounds)


def mean_curve(runs: Sequence[Sequence[dict]], metric: str) -> list:
  """[(round, mean over seeds)] at the rounds every run evaluated `metric`."""
  per_run = [{row['round']: row[metric] for row in curve if row.get(metric) is not None}
             for curve in runs]
  if not per_run:
    return []
  common = sorted(set.intersection(*(set(r) for r in per_run)))
  return [(r, math.fsum(run[r] for run in per_run) / len(per_run)) for r in common]


def first_plateau(points: Sequence[tuple], tail: float = TAIL,
                  max_gain: float = MAX_GAIN) -> Optional[int]:
  """The fewest rounds, among the evaluated ones, at which a run of that length would
  have plateaued (`check` on the curve cut there); None if none would."""
  points = sorted((int(r), float(v)) for r, v in points if v is not None)
  for end, _ in points:
    if check([p for p in points if p[0] <= end], end, tail, max_gain).reached:
      return end
  return None


class Stretched(NamedTuple):
  reached: bool
  gain: float                 # mean over seeds of (stretched - final) / final
  gains: tuple                # per seed
  rounds: int                 # N
  stretched_rounds: int       # the longer schedule's rounds
  max_gain: float = STRETCH_GAIN

  def describe(self) -> str:
    verdict = 'enough' if self.reached else 'not enough'
    per_seed = ', '.join(f'{100 * g:+.1f}%' for g in self.gains)
    return (f'{self.rounds} rounds {verdict}: the schedule stretched over '
            f'{self.stretched_rounds} rounds ends {100 * self.gain:+.1f}% higher (seeds: '
            f'{per_seed}; rule: < {100 * self.max_gain:g}%)')


def stretched(finals: Sequence[float], longer: Sequence[float], rounds: int,
              stretched_rounds: int, max_gain: float = STRETCH_GAIN) -> Stretched:
  """The stretch rule: `finals` and `longer` are the final values of the same seeds
  (in one order) after `rounds` and after the schedule stretched over `stretched_rounds`."""
  if len(finals) != len(longer) or not finals:
    raise ValueError(f'one final value per seed in both runs, got {len(finals)} and '
                     f'{len(longer)}')
  if stretched_rounds <= rounds:
    raise ValueError(f'the stretched run must be longer: {stretched_rounds} <= {rounds}')
  gains = tuple((b - a) / abs(a) for a, b in zip(finals, longer))
  gain = statistics.fmean(gains)
  return Stretched(gain < max_gain, gain, gains, rounds, stretched_rounds, max_gain)
