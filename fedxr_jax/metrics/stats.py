"""Mergeable evaluation statistics: sums and counts added over chunks, then finalized.

Every metric family reads sums like `eval_stats` returns them (correct [T],
count [T], loss_sum [T], ...): they add over clients, chunks and devices, so
a metric computed from merged sums equals one computed over all clients at
once. Finalization runs on the host in numpy.
"""
from typing import Mapping, Optional, Sequence

import numpy as np


def merge(*sums: Mapping) -> dict:
  """Adds sums key by key (nested dicts too); keys missing from one side are kept."""
  out = {}
  for s in sums:
    for k, v in s.items():
      if isinstance(v, Mapping):
        out[k] = merge(out.get(k, {}), v)
      else:
        v = np.asarray(v, np.float64)
        out[k] = out[k] + v if k in out else v
  return out


def ratio(num, den) -> np.ndarray:
  """num / den elementwise, NaN where den is 0 (nothing to measure)."""
  num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
  return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def scalar(x) -> Optional[float]:
  """A float for metrics.jsonl; None or NaN (nothing measured) becomes None."""
  if x is None:
    return None
  x = float(x)
  return None if np.isnan(x) else x


def mean_defined(values) -> Optional[float]:
  """Mean over the entries that are not NaN/None; None if there are none."""
  vals = np.asarray([np.nan if v is None else v for v in values], np.float64)
  vals = vals[~np.isnan(vals)]
  return float(vals.mean()) if vals.size else None


def task_accuracy(sums: Mapping) -> np.ndarray:
  """Accuracy per task [T] from summed correct/count (NaN: no labels)."""
  return ratio(sums['correct'], sums['count'])


def per_task(prefix: str, suffix: str, values, tasks: Sequence[str]) -> dict:
  """{prefix/<task>/suffix: value} plus {prefix/suffix: mean over tasks with a value}."""
  out = {f'{prefix}/{t}/{suffix}': scalar(v) for t, v in zip(tasks, values)}
  out[f'{prefix}/{suffix}'] = mean_defined(list(out.values()))
  return out


def sums_by_group(per_client: Mapping, group_ids, num_groups: int) -> dict:
  """Per-client stats [C, ...] summed into groups [G, ...] (environment, device).

  `group_ids` [C]: each client's group; a negative id drops the client
  (e.g. a padded slot).
  """
  ids = np.asarray(group_ids)
  if ids.ndim != 1:
    raise ValueError(f'group_ids must be [C], got shape {ids.shape}')
  out = {}
  for k, v in per_client.items():
    v = np.asarray(v, np.float64)
    if v.shape[:1] != ids.shape:
      raise ValueError(f'{k}: {v.shape[0]} clients but {ids.shape[0]} group ids')
    g = np.zeros((num_groups,) + v.shape[1:])
    keep = ids >= 0
    np.add.at(g, ids[keep], v[keep])
    out[k] = g
  return out
