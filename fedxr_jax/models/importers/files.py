"""Reading checkpoint files: every problem is one line naming the file and the tensor.

safetensors are read with the `safetensors` library's numpy API after the
header is checked here (the library names no tensor when a file is cut
short); npz with numpy, never unpickling.
"""
import hashlib
import json
import os
import struct
import zipfile
import zlib

import numpy as np

from fedxr_jax.errors import CheckpointError

# safetensors dtype codes -> itemsize; the floating ones are weights.
_ITEMSIZE = {'BOOL': 1, 'U8': 1, 'I8': 1, 'F8_E4M3': 1, 'F8_E5M2': 1, 'U16': 2, 'I16': 2,
             'F16': 2, 'BF16': 2, 'U32': 4, 'I32': 4, 'F32': 4, 'U64': 8, 'I64': 8, 'F64': 8}
FLOAT_DTYPES = ('float16', 'bfloat16', 'float32', 'float64')


def sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      h.update(chunk)
  return h.hexdigest()


def check_file(path: str) -> None:
  if not os.path.isfile(path):
    raise CheckpointError(f'checkpoint {path} does not exist (or is not a file)')


def safetensors_header(path: str) -> dict:
  """{name: (dtype code, shape)} of a safetensors file, refusing a damaged or cut one."""
  size = os.path.getsize(path)
  with open(path, 'rb') as f:
    head = f.read(8)
    if len(head) < 8:
      raise CheckpointError(f'{path} is not a safetensors file ({size} bytes, shorter '
                            'than its 8-byte header length)')
    n = struct.unpack('<Q', head)[0]
    if 8 + n > size:
      raise CheckpointError(f'{path} is truncated inside its header ({size} bytes, '
                            f'the header alone needs {8 + n})')
    try:
      header = json.loads(f.read(n))
    except ValueError as e:
      raise CheckpointError(f'{path} is not a safetensors file (header: {e})') from None
  if not isinstance(header, dict):
    raise CheckpointError(f'{path} is not a safetensors file (its header is not a table)')
  data = size - 8 - n
  out, spans = {}, []
  for name, info in header.items():
    if name == '__metadata__':
      continue
    try:
      dtype, shape, (begin, end) = info['dtype'], list(info['shape']), info['data_offsets']
      need = int(np.prod(shape)) * _ITEMSIZE[dtype]
    except (KeyError, TypeError, ValueError):
      raise CheckpointError(f'{path}: tensor {name!r} has a malformed header entry '
                            f'{info!r}') from None
    if end - begin != need:
      raise CheckpointError(f'{path}: tensor {name!r} ({dtype} {shape}) spans {end - begin} '
                            f'bytes, not {need}')
    out[name] = (dtype, tuple(shape))
    spans.append((begin, end, name))
  cut = sorted(s for s in spans if s[1] > data)
  if cut:
    begin, end, name = cut[0]
    later = f'; {len(cut) - 1} later tensor(s) lost too' if len(cut) > 1 else ''
    raise CheckpointError(f'{path} is truncated: the file ends inside tensor {name!r} (its '
                          f'data spans bytes {begin}..{end}, the file holds {data}{later})')
  return out


def read_safetensors(path: str) -> dict:
  """{name: numpy array} of a safetensors file (header checked first)."""
  check_file(path)
  names = safetensors_header(path)
  from safetensors import safe_open   # pylint: disable=import-outside-toplevel
  try:
    with safe_open(path, framework='np') as f:
      return {name: f.get_tensor(name) for name in names}
  except Exception as e:  # pylint: disable=broad-except
    detail = ' '.join(str(e).split())[:200]
    raise CheckpointError(f'{path} cannot be read as safetensors ({type(e).__name__}: '
                          f'{detail})') from None


def read_npz(path: str) -> dict:
  """{name: numpy array} of an npz file (no pickles), naming a damaged member."""
  check_file(path)
  try:
    archive = np.load(path, allow_pickle=False)
  except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
    raise CheckpointError(f'{path} is not a readable npz file (truncated or not a zip '
                          f'archive: {type(e).__name__})') from None
  if not isinstance(archive, np.lib.npyio.NpzFile):
    raise CheckpointError(f'{path} holds one array, not an npz archive of named arrays')
  out = {}
  with archive:
    for name in archive.files:
      try:
        out[name] = archive[name]
      except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as e:
        detail = ' '.join(str(e).split())[:200]
        raise CheckpointError(f'{path}: array {name!r} cannot be read (truncated or '
                              f'damaged: {type(e).__name__}: {detail})') from None
  return out


def read_json_beside(path: str, name: str = 'config.json') -> dict:
  """The JSON file `name` in the checkpoint's directory ({} if there is none)."""
  other = os.path.join(os.path.dirname(os.path.abspath(path)), name)
  if not os.path.isfile(other):
    return {}
  try:
    with open(other) as f:
      value = json.load(f)
  except (OSError, ValueError) as e:
    raise CheckpointError(f'{other} cannot be read ({type(e).__name__}: {e})') from None
  if not isinstance(value, dict):
    raise CheckpointError(f'{other} is not a JSON object')
  return value
