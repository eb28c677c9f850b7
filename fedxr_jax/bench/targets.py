"""Time to accuracy: rounds, and simulated seconds on the cost model's clock.

  reach(curve, metric, target) -> (round, seconds) or None

The first logged round whose `metric` reaches `target` (>= it, or <= with
not higher_is_better), and the simulated seconds until then: the sum of
`cost/latency_s` (the cost model's round latency: compute, then the links'
airtime) over rounds 1..that round, or the row's own virtual clock
(`time/virtual_s`) where it has one (an asynchronous run's server steps
overlap: their latencies do not add up). seconds is None where a round's row
has neither (the curve must log every round). Over seeds (`summarize`): the
mean rounds and seconds where every seed reached the target, as MLPerf
counts a result only when each run converges.
"""
import math
from typing import Mapping, Optional, Sequence

CLOCK = 'cost/latency_s'
VIRTUAL = 'time/virtual_s'


def reach(curve: Sequence[Mapping], metric: str, target: float,
          higher_is_better: bool = True) -> Optional[tuple]:
  seconds, complete, expected = 0.0, True, 1
  for row in sorted(curve, key=lambda r: r['round']):
    if row['round'] != expected:
      complete = False         # a round without a row: its latency is unknown
    expected = row['round'] + 1
    latency = row.get(CLOCK)
    if latency is None:
      complete = False
    else:
      seconds += latency
    value = row.get(metric)
    if value is not None and (value >= target if higher_is_better else value <= target):
      if row.get(VIRTUAL) is not None:
        return row['round'], row[VIRTUAL]
      return row['round'], (seconds if complete else None)
  return None


def summarize(curves: Sequence[Sequence[Mapping]], metric: str, target: float,
              higher_is_better: bool = True) -> dict:
  """{reached, n, rounds, seconds}: rounds / seconds the means over seeds when
  all reached (else None)."""
  hits = [reach(c, metric, target, higher_is_better) for c in curves]
  done = [h for h in hits if h is not None]
  every = len(done) == len(hits) and bool(hits)
  rounds = math.fsum(r for r, _ in done) / len(done) if every else None
  seconds = (math.fsum(s for _, s in done) / len(done)
             if every and all(s is not None for _, s in done) else None)
  return {'reached': len(done), 'n': len(hits), 'rounds': rounds, 'seconds': seconds}
