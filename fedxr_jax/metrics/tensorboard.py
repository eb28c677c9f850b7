"""TensorBoard event files of the logged scalars, through tensorboardX (no TensorFlow).

Each metrics.jsonl row becomes one step (its 'round'): every numeric value
is a scalar under its key; lists (per-expert shares), strings and None are
skipped. The files go to WORKDIR/tensorboard; `tensorboard --logdir WORKDIR`
shows them. `read_scalars` reads them back from the TFRecord framing.
"""
import glob
import math
import numbers
import os
import struct
from typing import Iterable, Mapping, Optional

from fedxr_jax.errors import FedXRError

SUBDIR = 'tensorboard'


def scalars(row: Mapping) -> dict:
  """The row's loggable scalars: numbers other than 'round' (bools as 0/1)."""
  return {k: float(v) for k, v in row.items()
          if k != 'round' and isinstance(v, numbers.Real)}


class TensorBoardWriter:
  """Appends rows to TensorBoard event files in `workdir/tensorboard`."""

  def __init__(self, workdir: str, subdir: str = SUBDIR):
    try:
      from tensorboardX import SummaryWriter
    except ImportError:
      raise FedXRError('TensorBoard logging needs tensorboardX: pip install tensorboardX')
    self.logdir = os.path.join(workdir, subdir)
    self._writer = SummaryWriter(logdir=self.logdir, flush_secs=30)

  def write(self, row: Mapping, step: Optional[int] = None) -> int:
    """Logs the row's scalars at `step` (default: its round); returns how many."""
    step = int(row['round'] if step is None else step)
    values = scalars(row)
    for key, value in values.items():
      self._writer.add_scalar(key, value, global_step=step)
    return len(values)

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def write_rows(workdir: str, rows: Iterable[Mapping]) -> str:
  """Backfills a whole metrics.jsonl history; returns the log folder."""
  with TensorBoardWriter(workdir) as writer:
    for row in rows:
      writer.write(row)
  return writer.logdir


def _records(path: str):
  """The payloads of a TFRecord file, checking each length and data CRC."""
  from tensorboardX.record_writer import masked_crc32c
  with open(path, 'rb') as f:
    data = f.read()
  pos = 0
  while pos < len(data):
    if pos + 12 > len(data):
      raise FedXRError(f'{path}: truncated record header at byte {pos}')
    header = data[pos:pos + 8]
    (length,), (crc,) = struct.unpack('<Q', header), struct.unpack('<I', data[pos + 8:pos + 12])
    if crc != masked_crc32c(header):
      raise FedXRError(f'{path}: corrupt record length at byte {pos}')
    end = pos + 12 + length
    if end + 4 > len(data):
      raise FedXRError(f'{path}: truncated record at byte {pos}')
    body = data[pos + 12:end]
    if struct.unpack('<I', data[end:end + 4])[0] != masked_crc32c(body):
      raise FedXRError(f'{path}: corrupt record at byte {pos}')
    yield body
    pos += 16 + length


def read_scalars(logdir: str) -> dict:
  """{tag: [(step, value), ...]} of every event file under `logdir`."""
  from tensorboardX.proto import event_pb2
  out = {}
  for path in sorted(glob.glob(os.path.join(logdir, '**', 'events.out.tfevents.*'),
                              recursive=True)):
    for record in _records(path):
      event = event_pb2.Event.FromString(record)
      for v in event.summary.value:
        value = v.simple_value if v.HasField('simple_value') else math.nan
        out.setdefault(v.tag, []).append((event.step, value))
  return out
