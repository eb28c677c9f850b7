"""Ranking entries of a track and finding the Pareto front (pure functions).

Entries share a rank when their scores are a statistical tie: each score's
95% interval over seeds is mean +- t(0.975, n - 1) * std / sqrt(n) (a point
for n < 2), and an entry's rank is 1 + the number of entries whose interval
lies entirely on the better side of its own, raised to the rank of any entry
with a better mean (a wide interval can overlap the leader's where a narrower,
better one does not; it never ranks above that one). Overlapping intervals
share a rank; entries are listed by mean (`sort_key`).
"""
import functools
import itertools
import math
import os
from typing import Optional, Sequence

CONFIDENCE = 0.95


@functools.lru_cache(maxsize=None)
def t_quantile(df: int) -> float:
  """Student's t quantile at (1 + CONFIDENCE) / 2 with `df` degrees of freedom."""
  from scipy import stats   # pylint: disable=g-import-not-at-top
  return float(stats.t.ppf((1 + CONFIDENCE) / 2, df))


def interval(mean: float, std: Optional[float], n: int) -> tuple:
  """(low, high): the 95% interval of a mean over n seeds."""
  if std is None or n < 2:
    return (mean, mean)
  half = t_quantile(n - 1) * std / math.sqrt(n)
  return (mean - half, mean + half)


def tied_ranks(intervals: Sequence[tuple], higher_is_better: bool) -> list:
  """Rank of each (low, high): 1 + how many intervals are entirely better."""
  if higher_is_better:
    return [1 + sum(lo2 > hi for lo2, _ in intervals) for _, hi in intervals]
  return [1 + sum(hi2 < lo for _, hi2 in intervals) for lo, _ in intervals]


def sort_key(mean: float, std: Optional[float], method: str, path: str,
             higher_is_better: bool) -> tuple:
  """Best first: the primary mean, then the smaller std (unknown last), then
  method name and file name, so equal scores still get one fixed order."""
  return (-mean if higher_is_better else mean, math.inf if std is None else std,
          method.casefold(), method, os.path.basename(path))


def rank(entries: Sequence, primary: str, higher_is_better: bool) -> list:
  """[(rank, entry)] best first by `primary` over seeds (validate.Submission
  entries), ties sharing a rank."""
  def key(s):
    stat = s.stat(primary)
    return sort_key(stat['mean'], stat['std'], s.method, s.path, higher_is_better)
  ordered = sorted(entries, key=key)
  spans = [interval(s.stat(primary)['mean'], s.stat(primary)['std'], s.stat(primary)['n'])
           for s in ordered]
  ranks = itertools.accumulate(tied_ranks(spans, higher_is_better), max)
  return list(zip(ranks, ordered))


def pareto_front(points: Sequence[tuple], higher_is_better: bool) -> list:
  """[bool] per (cost, score) point: True where no other point is at least as
  good on both (lower cost; higher score, or lower with not higher_is_better)
  and strictly better on one."""
  sign = 1.0 if higher_is_better else -1.0
  pts = [(c, sign * s) for c, s in points]
  return [not any(c2 <= c and s2 >= s and (c2 < c or s2 > s) for c2, s2 in pts)
          for c, s in pts]


def varies(values: Sequence[Optional[float]]) -> bool:
  """Whether a metric takes two or more values over the entries (a Pareto axis
  that does not vary says nothing)."""
  return len({v for v in values if v is not None}) >= 2
