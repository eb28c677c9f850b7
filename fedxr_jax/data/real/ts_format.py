"""The sktime/aeon `.ts` time-series format, parsed without aeon.

  # comments
  @problemName BasicMotions
  @univariate false
  @dimensions 6
  @equalLength true
  @seriesLength 100
  @classLabel true Standing Running Walking Badminton
  @data
  0.1,0.2,...:0.3,0.1,...:...:Running

One case per line: dimensions separated by ':', values by ',', then the
class label. '?' and 'NaN' are missing values; trailing missing values are
padding (the archive pads unequal series that way) and are dropped.
"""
import dataclasses
from typing import Optional

import numpy as np

from fedxr_jax.errors import DataError

_MISSING = ('?', 'nan', 'NaN')
_TRUE = {'true': True, 'false': False}


@dataclasses.dataclass(frozen=True, eq=False)
class TsData:
  problem_name: str
  series: tuple            # per case, [dims, length_i] float64
  labels: np.ndarray       # [cases] int32, index into class_names
  class_names: tuple
  dimensions: int
  equal_length: bool
  series_length: Optional[int]


def _bool(tag, value):
  try:
    return _TRUE[value.lower()]
  except KeyError:
    raise DataError(f'.ts header @{tag} must be true or false, got {value!r}') from None


def _values(text, line_no):
  vals = []
  for v in text.split(','):
    v = v.strip()
    try:
      vals.append(np.nan if v in _MISSING else float(v))
    except ValueError:
      raise DataError(f'.ts line {line_no}: {v!r} is not a number') from None
  return vals


def _strip_padding(case):
  """Drops trailing time steps missing in every dimension."""
  present = ~np.all(np.isnan(case), axis=0)
  length = int(np.flatnonzero(present)[-1]) + 1 if present.any() else 0
  return case[:, :length]


def parse(text: str) -> TsData:
  """A `.ts` file's cases and class labels (tags are case-insensitive)."""
  header, rows, in_data = {}, [], False
  for line_no, line in enumerate(text.splitlines(), 1):
    line = line.strip()
    if not line or line.startswith('#'):
      continue
    if in_data:
      rows.append((line_no, line))
    elif line.startswith('@'):
      tag, _, value = line[1:].partition(' ')
      tag = tag.lower()
      if tag == 'data':
        in_data = True
      else:
        header[tag] = value.strip()
    else:
      raise DataError(f'.ts line {line_no}: data before @data')
  if not in_data:
    raise DataError('.ts file has no @data section')
  if _bool('timestamps', header.get('timestamps', 'false')):
    raise DataError('.ts files with @timeStamps true are not supported')

  labeled, *names = (header.get('classlabel') or 'false').split()
  if not _bool('classLabel', labeled) or not names:
    raise DataError('.ts file has no class labels (@classLabel true <labels...>)')
  univariate = _bool('univariate', header.get('univariate', 'true'))
  dims = 1 if univariate else int(header.get('dimensions', 0)) or None
  equal = _bool('equalLength', header.get('equallength', 'true'))
  length = int(header['serieslength']) if 'serieslength' in header else None

  series, labels = [], []
  for line_no, line in rows:
    *fields, label = line.split(':')
    if label.strip() not in names:
      raise DataError(f'.ts line {line_no}: label {label.strip()!r} is not one of '
                      f'@classLabel {names}')
    if dims is None:
      dims = len(fields)
    if len(fields) != dims:
      raise DataError(f'.ts line {line_no}: {len(fields)} dimensions, header says {dims}')
    columns = [_values(f, line_no) for f in fields]
    if len({len(c) for c in columns}) != 1:
      raise DataError(f'.ts line {line_no}: the dimensions of one case differ in length')
    case = _strip_padding(np.asarray(columns, np.float64))
    if case.shape[1] == 0 or np.isnan(case).any():
      raise DataError(f'.ts line {line_no}: empty series or missing values inside it')
    if equal and length is not None and case.shape[1] != length:
      raise DataError(f'.ts line {line_no}: length {case.shape[1]}, header says {length}')
    series.append(case)
    labels.append(names.index(label.strip()))
  if not series:
    raise DataError('.ts file has no cases after @data')
  if equal and len({s.shape[1] for s in series}) > 1:
    raise DataError('.ts file says @equalLength true but its series differ in length')
  return TsData(problem_name=header.get('problemname', ''), series=tuple(series),
                labels=np.asarray(labels, np.int32), class_names=tuple(names),
                dimensions=dims, equal_length=equal, series_length=length)


def resample(case: np.ndarray, length: int) -> np.ndarray:
  """[dims, L] -> [dims, length] by linear interpolation over the same span."""
  old = case.shape[1]
  if old == 1:
    return np.repeat(case, length, axis=1)
  t = np.linspace(0.0, old - 1.0, length)
  return np.stack([np.interp(t, np.arange(old), row) for row in case])


def to_fixed_length(series, length: int, method: str = 'resample') -> np.ndarray:
  """Cases [dims, L_i] -> [cases, length, dims] float32.

  'resample' stretches or squeezes every series to `length` points (keeps
  the whole shape of a gesture whatever its speed); 'pad' appends zeros and
  refuses a series longer than `length`.
  """
  out = []
  for case in series:
    if method == 'resample':
      fixed = resample(case, length)
    elif method == 'pad':
      if case.shape[1] > length:
        raise DataError(f'a series of length {case.shape[1]} does not fit in {length}')
      fixed = np.pad(case, ((0, 0), (0, length - case.shape[1])))
    else:
      raise DataError(f"length method {method!r} is not 'resample' or 'pad'")
    out.append(fixed.T)
  return np.asarray(out, np.float32)
