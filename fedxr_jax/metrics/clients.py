"""eval_clients.jsonl: one JSON row per evaluated client and evaluation, safe across resumes.

A row: round, group (panel, holdout_environments, holdout_devices), client
id, device, environment, accuracy over its tasks (and the global model's
for the panel), modeled latency, and per task count, accuracy and loss.
Distributions across users (the worst 10%, per device class) come from
these rows after the run (`distribution`).
"""
import json
import math
import os
from typing import Iterable, Mapping, Optional

import numpy as np

FILE = 'eval_clients.jsonl'


def read(path: str) -> list:
  """The rows of a table; a torn last line (a kill mid-write) is dropped."""
  rows = []
  if not os.path.exists(path):
    return rows
  with open(path) as f:
    for line in f:
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError:
        break
      if isinstance(row, dict):
        rows.append(row)
  return rows


class ClientTable:
  """Appends one evaluation's rows at a time; on open, drops rows past `resume_round`.

  A round already in the table is not written again (an evaluation is a
  pure function of the run, so its rows would be the same).
  """

  def __init__(self, path: str, resume_round: int):
    self.path = path
    rows = [r for r in read(path) if r.get('round', math.inf) <= resume_round]
    self.rounds = {r['round'] for r in rows}
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      for row in rows:
        f.write(json.dumps(row, sort_keys=True) + '\n')
    os.replace(tmp, path)

  def append(self, round_idx: int, records: Iterable[Mapping]) -> bool:
    """Writes `records` as round `round_idx`; False if that round is there already."""
    if round_idx in self.rounds:
      return False
    with open(self.path, 'a') as f:
      for rec in records:
        f.write(json.dumps({'round': int(round_idx), **rec}, sort_keys=True) + '\n')
      f.flush()
      os.fsync(f.fileno())
    self.rounds.add(round_idx)
    return True


def worst_fraction_mean(values, fraction: float = 0.1) -> Optional[float]:
  """Mean of the lowest ceil(fraction x n) values (None if there are none)."""
  vals = np.sort(np.asarray([v for v in values if v is not None], np.float64))
  if not vals.size:
    return None
  return float(vals[:max(1, math.ceil(fraction * vals.size))].mean())


def distribution(rows: Iterable[Mapping], group: str = 'panel',
                 round_idx: Optional[int] = None) -> dict:
  """Accuracy across the group's users at one evaluation (default: the last).

  Keys: clients/count, clients/worst10_accuracy (mean of the worst 10% of
  users), clients/median_accuracy, clients/<device>/accuracy (mean over
  that device class's users).
  """
  rows = [r for r in rows if r.get('group') == group]
  if round_idx is None and rows:
    round_idx = max(r['round'] for r in rows)
  rows = [r for r in rows if r.get('round') == round_idx and r.get('accuracy') is not None]
  if not rows:
    return {}
  acc = [r['accuracy'] for r in rows]
  out = {'clients/count': float(len(rows)),
         'clients/worst10_accuracy': worst_fraction_mean(acc, 0.1),
         'clients/median_accuracy': float(np.median(acc))}
  for device in sorted({r['device'] for r in rows if r.get('device')}):
    out[f'clients/{device}/accuracy'] = float(np.mean(
        [r['accuracy'] for r in rows if r.get('device') == device]))
  return out
