"""metrics.jsonl: one JSON object per evaluated round, safe across resumes."""
import json
import math
import os


class MetricsLog:
  """Appends rows; on open, drops rows past the round the run resumes from.

  A crash between writing a row and saving its checkpoint leaves rows that
  the resumed run recomputes, so they are dropped instead of duplicated.
  """

  def __init__(self, path: str, resume_round: int):
    self.path = path
    self.rows = []
    if os.path.exists(path):
      with open(path) as f:
        for line in f:
          if not line.strip():
            continue
          try:
            row = json.loads(line)
          except json.JSONDecodeError:
            break  # a torn last line from a kill mid-write
          if row.get('round', math.inf) <= resume_round:
            self.rows.append(row)
    self._rewrite()

  def _rewrite(self):
    tmp = self.path + '.tmp'
    with open(tmp, 'w') as f:
      for row in self.rows:
        f.write(json.dumps(row, sort_keys=True) + '\n')
    os.replace(tmp, self.path)

  def append(self, row: dict) -> None:
    self.rows.append(row)
    with open(self.path, 'a') as f:
      f.write(json.dumps(row, sort_keys=True) + '\n')
      f.flush()
      os.fsync(f.fileno())
