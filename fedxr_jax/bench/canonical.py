"""Canonical JSON: the one byte string a hash of a JSON value is taken over.

canonical(v) = json.dumps(v, sort_keys=True, separators=(',', ':'),
                          ensure_ascii=True, allow_nan=False)
encoded as ASCII. Integers print as integers, floats as Python's repr (the
shortest string that reads back to the same double), so 1 and 1.0 differ,
and tuples print as lists. NaN and infinities are refused: strict JSON has
no token for them. Any language can reproduce it for a parsed file: sort
object keys by code point, no whitespace, \\uXXXX escapes for non-ASCII.
"""
import hashlib
import json
import math
from typing import Any

from fedxr_jax.bench.errors import SubmissionError


def canonical(value: Any) -> bytes:
  try:
    return json.dumps(value, sort_keys=True, separators=(',', ':'), ensure_ascii=True,
                      allow_nan=False).encode('ascii')
  except (TypeError, ValueError, RecursionError) as e:
    raise SubmissionError(f'value cannot be written as canonical JSON: {e}') from e


def sha256(value: Any) -> str:
  return hashlib.sha256(canonical(value)).hexdigest()


def equal(a: Any, b: Any) -> bool:
  """Equal as canonical JSON: (1, 2) equals [1, 2]; 1 does not equal 1.0."""
  return canonical(a) == canonical(b)


def to_json(value: Any, where: str = 'value', nonfinite_to_null: bool = False) -> Any:
  """A plain JSON copy of `value`: numpy scalars and arrays, tuples, mappings.

  A non-finite float is null with `nonfinite_to_null` (a diverged metric), an
  error otherwise (a config value must survive a round trip exactly).
  """
  if value is None or isinstance(value, (bool, str)):
    return value
  if isinstance(value, int):
    return int(value)
  if isinstance(value, float):
    if math.isfinite(value):
      return float(value)
    if nonfinite_to_null:
      return None
    raise SubmissionError(f'{where} is {value}: strict JSON has no NaN or infinity')
  if isinstance(value, dict) or hasattr(value, 'items'):
    out = {}
    for k, v in value.items():
      if not isinstance(k, str):
        raise SubmissionError(f'{where} has a non-string key {k!r}')
      out[k] = to_json(v, f'{where}.{k}', nonfinite_to_null)
    return out
  if isinstance(value, (list, tuple)):
    return [to_json(v, f'{where}[{i}]', nonfinite_to_null) for i, v in enumerate(value)]
  if hasattr(value, 'tolist'):   # numpy arrays and scalars, without importing numpy
    return to_json(value.tolist(), where, nonfinite_to_null)
  raise SubmissionError(f'{where} is a {type(value).__name__}, not a JSON value')
