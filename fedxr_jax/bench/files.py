"""Reading untrusted JSON files safely, and writing files atomically.

read_json never loads more than `max_bytes` (the size is checked before a
byte is read), never opens anything but a regular file (a FIFO or a device
would block or never end), parses strict JSON only (no NaN/Infinity, no
duplicate keys, no number that overflows a double) and bounds nesting depth
and string lengths. Whatever the bytes, the outcome is a value or one
SubmissionError line: json.loads builds only dicts, lists, strings,
numbers, booleans and None, so nothing in a file is ever executed.
"""
import json
import math
import os
import stat
import tempfile
from typing import Any, Union

from fedxr_jax.bench.errors import SubmissionError

MAX_BYTES = 20 * 2**20
MAX_DEPTH = 32
MAX_STRING = 4096      # characters in any string value
MAX_KEY = 256          # characters in any object key


def _megabytes(n: int) -> str:
  return f'{n / 2**20:.1f} MiB'


def read_bytes(path: str, max_bytes: int = MAX_BYTES) -> bytes:
  try:
    info = os.stat(path)
  except FileNotFoundError:
    raise SubmissionError('no such file') from None
  except OSError as e:
    raise SubmissionError(f'cannot read it: {e.strerror or e}') from None
  if not stat.S_ISREG(info.st_mode):
    raise SubmissionError('not a regular file')
  if info.st_size > max_bytes:
    raise SubmissionError(f'{_megabytes(info.st_size)}, over the {_megabytes(max_bytes)} '
                          'limit (not read)')
  try:
    with open(path, 'rb') as f:
      data = f.read(max_bytes + 1)   # the file may have grown since stat
  except OSError as e:
    raise SubmissionError(f'cannot read it: {e.strerror or e}') from None
  if len(data) > max_bytes:
    raise SubmissionError(f'over the {_megabytes(max_bytes)} limit')
  return data


def _no_constant(name):
  raise SubmissionError(f'not strict JSON: {name} is not a JSON number')


def _finite_float(text):
  value = float(text)
  if not math.isfinite(value):
    raise SubmissionError(f'not strict JSON: the number {text[:30]} overflows a double')
  return value


def _unique_keys(pairs):
  out = {}
  for key, value in pairs:
    if key in out:
      raise SubmissionError(f'not strict JSON: key {key[:60]!r} appears twice in one object')
    out[key] = value
  return out


def check_bounds(value: Any) -> None:
  """Depth <= MAX_DEPTH, strings <= MAX_STRING and keys <= MAX_KEY characters."""
  stack = [(value, 1, '$')]
  while stack:
    node, depth, where = stack.pop()
    if depth > MAX_DEPTH:
      raise SubmissionError(f'nested deeper than {MAX_DEPTH} levels at {where}')
    if isinstance(node, str) and len(node) > MAX_STRING:
      raise SubmissionError(f'a string of {len(node)} characters at {where} '
                            f'(limit {MAX_STRING})')
    if isinstance(node, dict):
      for k, v in node.items():
        if len(k) > MAX_KEY:
          raise SubmissionError(f'a key of {len(k)} characters in {where} (limit {MAX_KEY})')
        stack.append((v, depth + 1, f'{where}[{k[:40]!r}]'))
    elif isinstance(node, list):
      stack.extend((v, depth + 1, f'{where}[{i}]') for i, v in enumerate(node))


def parse_json(data: bytes) -> Any:
  try:
    text = data.decode('utf-8')
  except UnicodeDecodeError as e:
    raise SubmissionError(f'not UTF-8 text (binary data at byte {e.start})') from None
  try:
    value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float,
                       object_pairs_hook=_unique_keys)
  except SubmissionError:
    raise
  except json.JSONDecodeError as e:
    raise SubmissionError(f'not JSON: {e.msg} at line {e.lineno} column {e.colno}') from None
  except RecursionError:
    raise SubmissionError(f'nested deeper than {MAX_DEPTH} levels') from None
  except ValueError as e:   # e.g. an integer literal of more than 4300 digits
    raise SubmissionError(f'not strict JSON: {str(e)[:120]}') from None
  check_bounds(value)
  return value


def read_json(path: str, max_bytes: int = MAX_BYTES) -> Any:
  return parse_json(read_bytes(path, max_bytes))


def atomic_write(path: str, data: Union[str, bytes]) -> str:
  """Writes `data` to `path` via a temp file in the same folder and a rename,
  so a reader never sees half a file."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix='.tmp-', dir=folder)
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data.encode('utf-8') if isinstance(data, str) else data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)   # mkstemp makes it owner-only; a site must be readable
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
  return path
