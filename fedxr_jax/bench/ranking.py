"""Ranking entries of a track and finding the Pareto front (pure functions)."""
import math
import os
from typing import Optional, Sequence


def sort_key(mean: float, std: Optional[float], method: str, path: str,
             higher_is_better: bool) -> tuple:
  """Best first: the primary mean, then the smaller std (unknown last), then
  method name and file name, so equal scores still get one fixed order."""
  return (-mean if higher_is_better else mean, math.inf if std is None else std,
          method.casefold(), method, os.path.basename(path))


def rank(entries: Sequence, primary: str, higher_is_better: bool) -> list:
  """Entries (validate.Submission) best first by `primary` over seeds."""
  def key(s):
    stat = s.stat(primary)
    return sort_key(stat['mean'], stat['std'], s.method, s.path, higher_is_better)
  return sorted(entries, key=key)


def pareto_front(points: Sequence[tuple], higher_is_better: bool) -> list:
  """[bool] per (cost, score) point: True where no other point is at least as
  good on both (lower cost; higher score, or lower with not higher_is_better)
  and strictly better on one."""
  sign = 1.0 if higher_is_better else -1.0
  pts = [(c, sign * s) for c, s in points]
  return [not any(c2 <= c and s2 >= s and (c2 < c or s2 > s) for c2, s2 in pts)
          for c, s in pts]
