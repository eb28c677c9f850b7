"""metrics.jsonl: one strict-JSON object per round, durable with each checkpoint.

JSON has no NaN: a non-finite value is written as null and its key listed
in the row's 'nonfinite'. Rows are flushed as they come and fsynced with
each checkpoint (`sync`, before the checkpoint is written), so a kill loses
no checkpointed round.

`MetricsLog.open(path, resume_round)` keeps the rows up to the round a run
resumes from and says which of them are damaged or missing (`missing`),
for the loop to recompute; the file itself is rewritten only by `commit`,
once every row is back, so it never loses a readable row on the way. Rows
past `resume_round` were never checkpointed: the resumed run recomputes
them.
"""
import fnmatch
import json
import math
import os
from typing import Optional

NONFINITE = 'nonfinite'
# Keys whose values depend on the machine, not on the run's math (fnmatch patterns):
# wall times, and the forward timed on the host (eval.measure_latency).
MACHINE_KEYS = ('time/*', 'latency/measured_*')


def is_machine_key(key: str) -> bool:
  return any(fnmatch.fnmatch(key, p) for p in MACHINE_KEYS)


def comparable(row: dict) -> dict:
  """A row without its machine-dependent keys: what a rerun reproduces bit for bit."""
  return {k: v for k, v in row.items() if not is_machine_key(k)}


def _clean(value, key, bad: set):
  if isinstance(value, (list, tuple)):
    return [_clean(v, key, bad) for v in value]
  if isinstance(value, float) and not math.isfinite(value):
    bad.add(key)
    return None
  return value


def encode(row: dict) -> str:
  """One line of strict JSON: non-finite floats as null, named in 'nonfinite'."""
  bad = set(row.get(NONFINITE, ()))
  out = {k: _clean(v, k, bad) for k, v in row.items() if k != NONFINITE}
  if bad:
    out[NONFINITE] = sorted(bad)
  return json.dumps(out, sort_keys=True, allow_nan=False)


def decode(line) -> Optional[dict]:
  """A row from a line (older files' bare NaN tokens become null), or None."""
  try:
    row = json.loads(line)
  except ValueError:   # also UnicodeDecodeError: garbage bytes
    return None
  if not isinstance(row, dict) or type(row.get('round')) is not int or row['round'] < 1:
    return None
  return json.loads(encode(row))


def read(path: str) -> tuple:
  """({round: row}, [line numbers that hold no row]) of a metrics file."""
  rows, unreadable = {}, []
  if not os.path.exists(path):
    return rows, unreadable
  with open(path, 'rb') as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      row = decode(line)
      if row is None:
        unreadable.append(number)
      else:
        rows.setdefault(row['round'], row)
  return rows, unreadable


def read_rows(path: str) -> list:
  """The readable rows of a metrics file, in round order."""
  rows, _ = read(path)
  return [rows[r] for r in sorted(rows)]


def spans(rounds) -> str:
  """'1-4, 7, 9-10': sorted rounds as ranges."""
  out, rounds = [], sorted(rounds)
  for i, r in enumerate(rounds):
    if i and r == rounds[i - 1] + 1:
      out[-1][1] = r
    else:
      out.append([r, r])
  return ', '.join(str(a) if a == b else f'{a}-{b}' for a, b in out)


class MetricsLog:
  """Rows 1..resume_round (some maybe `missing`), then appended ones."""

  def __init__(self, path: str, resume_round: int, contents=None, write: bool = True):
    """`contents`: what `read(path)` gave where it was read (another process);
    `write` False keeps the rows in memory only (processes other than the leader)."""
    self.path, self.write = path, write
    found, self.unreadable = read(path) if contents is None else contents
    self.rows = [found[r] for r in sorted(found) if r <= resume_round]
    self.missing = sorted(set(range(1, resume_round + 1)) - set(found))
    self.past = sorted(r for r in found if r > resume_round)   # never checkpointed

  def put(self, row: dict) -> dict:
    """A recomputed row, in round order (the file changes at `commit`)."""
    row = decode(encode(row))
    self.rows = sorted([r for r in self.rows if r['round'] != row['round']] + [row],
                       key=lambda r: r['round'])
    self.missing = [r for r in self.missing if r != row['round']]
    return row

  def commit(self) -> None:
    """Makes the file hold exactly `rows` (atomically) if it does not already."""
    if not self.write:
      return
    text = ''.join(encode(r) + '\n' for r in self.rows)
    try:
      with open(self.path, 'rb') as f:
        if f.read() == text.encode():
          return
    except FileNotFoundError:
      pass
    tmp = self.path + '.tmp'
    with open(tmp, 'w') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, self.path)
    _sync_directory(os.path.dirname(os.path.abspath(self.path)))

  def append(self, row: dict) -> dict:
    """Adds a row (flushed, not fsynced: `sync` makes it durable)."""
    row = decode(encode(row))
    self.rows.append(row)
    if self.write:
      with open(self.path, 'a') as f:
        f.write(encode(row) + '\n')
    return row

  def sync(self) -> None:
    if not self.write:
      return
    with open(self.path, 'a') as f:
      os.fsync(f.fileno())


def _sync_directory(path: str) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)
