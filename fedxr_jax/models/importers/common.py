"""What every importer shares: its result, the ledger of source tensors, and the
assembly of a name map into M3T's parameter trees, checked against the shapes
of the M3T model the checkpoint describes.

A name map is a list of `Entry(target, sources, convert)`: the '/'-joined path
of one M3T parameter, the source tensors it is made from (name, expected
shape) and how (a transpose, a reshape, a fold of two tensors). Every source
tensor feeds one entry or more; what is left over and not knowingly ignored
(a classifier, a pooler) is an error, as is a missing, misshaped or
non-floating tensor: one line naming it.
"""
import os
from typing import Callable, Mapping, NamedTuple, Sequence

import jax
import numpy as np
from flax import traverse_util

from fedxr_jax.errors import CheckpointError
from fedxr_jax.models import m3t
from fedxr_jax.models.importers import files
from fedxr_jax.models.interface import Spec

# The model.m3t keys an imported base fixes (its architecture); the run must match them.
SETTING_KEYS = ('width', 'depth', 'num_heads', 'mlp_width', 'ln_eps', 'exact_gelu',
                'num_registers')
_DIMS = ('width', 'depth', 'num_heads', 'mlp_width')


class Imported(NamedTuple):
  """An external checkpoint as M3T's trees, with what a run needs to use them."""
  params: dict       # {'base': tree, 'encoders': tree}: full param paths, float32 numpy
  settings: dict     # {SETTING_KEYS: value}: the M3T the checkpoint is
  modality: str      # the modality its encoder reads
  layout: tuple      # that modality's (input shape, token shape, token stride)
  about: str         # its input in words: '14x14 patches of 16x16 px at 224x224 px, 3 channels'
  source: dict       # format, file, sha256, bytes, architecture (the source's own names)
  notes: tuple       # what was folded, permuted, zero-filled, cast, ignored or assumed


class Entry(NamedTuple):
  target: str          # '/'-joined M3T param path
  sources: tuple       # ((source name, expected shape), ...)
  convert: Callable    # (*source arrays) -> the M3T value


class Tensors:
  """A checkpoint's tensors by name, each checked for shape and dtype where it is taken."""

  def __init__(self, arrays: Mapping[str, np.ndarray], path: str, fmt: str):
    self.arrays, self.path, self.fmt = dict(arrays), path, fmt
    self.context = ''    # the architecture, in words, for shape errors
    self.used = set()
    self.cast = set()    # dtypes converted to float32

  def __contains__(self, name: str) -> bool:
    return name in self.arrays

  def shape(self, name: str) -> tuple:
    """The tensor's shape (refusing a missing one)."""
    return tuple(self._get(name).shape)

  def _get(self, name: str) -> np.ndarray:
    if name not in self.arrays:
      raise CheckpointError(f'{self.path}: missing tensor {name!r} (a {self.fmt} '
                            f'checkpoint{self._of()} has it)')
    return self.arrays[name]

  def _of(self) -> str:
    return f' of {self.context}' if self.context else ''

  def take(self, name: str, shape: Sequence[int]) -> np.ndarray:
    """The tensor as float32, refusing a missing, misshaped or non-floating one."""
    x = self._get(name)
    if x.dtype.name not in files.FLOAT_DTYPES:
      raise CheckpointError(f'{self.path}: tensor {name!r} has dtype {x.dtype.name}; '
                            f'weights must be floating point ({", ".join(files.FLOAT_DTYPES)})')
    if tuple(x.shape) != tuple(shape):
      raise CheckpointError(f'{self.path}: tensor {name!r} has shape {list(x.shape)}, '
                            f'expected {list(shape)}{self._for()}')
    self.used.add(name)
    if x.dtype.name != 'float32':
      self.cast.add(x.dtype.name)
    return np.asarray(x, np.float32)

  def _for(self) -> str:
    return f' for {self.context}' if self.context else ''

  def check_leftover(self, ignored: Callable[[str], bool]) -> tuple:
    """The ignored tensors' names; refuses any other tensor no entry took."""
    left = sorted(n for n in self.arrays if n not in self.used)
    extra = [n for n in left if not ignored(n)]
    if extra:
      more = f' (and {len(extra) - 1} more)' if len(extra) > 1 else ''
      raise CheckpointError(f'{self.path}: unexpected tensor {extra[0]!r}{more}: not part of '
                            f'a {self.fmt} checkpoint{self._of()} (is --format right?)')
    return tuple(n for n in left if ignored(n))


def linear(target: str, name: str, d_in: int, d_out: int, torch_layout: bool) -> list:
  """A dense layer: torch's weight [out, in] (transposed) or flax's kernel [in, out]."""
  if torch_layout:
    return [Entry(f'{target}/kernel', ((f'{name}.weight', (d_out, d_in)),), lambda w: w.T),
            Entry(f'{target}/bias', ((f'{name}.bias', (d_out,)),), lambda b: b)]
  return [Entry(f'{target}/kernel', ((f'{name}/kernel', (d_in, d_out)),), lambda w: w),
          Entry(f'{target}/bias', ((f'{name}/bias', (d_out,)),), lambda b: b)]


def layer_norm(target: str, scale: str, bias: str, width: int) -> list:
  return [Entry(f'{target}/scale', ((scale, (width,)),), lambda g: g),
          Entry(f'{target}/bias', ((bias, (width,)),), lambda b: b)]


def zeros(target: str, shape: tuple) -> Entry:
  """A parameter without a counterpart in the source, started at zero."""
  return Entry(target, (), lambda: np.zeros(shape, np.float32))


def abstract_params(settings: Mapping, modality: str, layout: tuple) -> dict:
  """{path: ShapeDtypeStruct} of the M3T the checkpoint is (no prompts, no LoRA)."""
  model = m3t.make(Spec({modality: layout}, {}), lora_residual=False, dtype='float32',
                   num_prompts=0, lora_rank=0, **settings)
  tree = jax.eval_shape(model.init, jax.random.key(0))
  return {'/'.join(p): x for p, x in traverse_util.flatten_dict(tree).items()}


def in_scope(path: str, modality: str) -> bool:
  """Whether an M3T parameter is imported: the base, and this modality's encoder."""
  parts = path.split('/')
  if parts[0] != 'encoders':
    return m3t.role_of(tuple(parts)) == 'base'
  return parts[1] == modality or parts[1:] == ['absent', modality]


def assemble(tensors: Tensors, entries: Sequence[Entry], settings: Mapping, modality: str,
             layout: tuple) -> dict:
  """{'base': tree, 'encoders': tree} from a name map, every value checked against M3T."""
  target = {p: x for p, x in abstract_params(settings, modality, layout).items()
            if in_scope(p, modality)}
  flat = {}
  for entry in entries:
    value = np.asarray(entry.convert(*(tensors.take(n, s) for n, s in entry.sources)),
                       np.float32)
    want = target.get(entry.target)
    names = ', '.join(repr(n) for n, _ in entry.sources) or 'no tensor'
    if want is None or tuple(want.shape) != value.shape:
      # The map and M3T disagree: an importer bug, never the user's file.
      raise AssertionError(f'{entry.target} from {names}: {value.shape} vs {want}')
    flat[entry.target] = value
  missing = sorted(set(target) - set(flat))
  assert not missing, f'the name map misses {missing}'
  params = {'base': {}, 'encoders': {}}
  for path, value in flat.items():
    role = 'encoders' if path.startswith('encoders/') else 'base'
    params[role][tuple(path.split('/'))] = value
  return {r: traverse_util.unflatten_dict(t) for r, t in params.items()}


def config_values(settings: Mapping) -> dict:
  """{model.m3t key: value} a run needs: a named size where the dims are one, else the dims."""
  dims = tuple(settings[k] for k in _DIMS)
  named = [name for name, d in m3t.SIZES.items() if d == dims]
  values = ({'size': named[0], **{k: 0 for k in _DIMS}} if named
            else dict(zip(_DIMS, dims)))
  return {**values, **{k: settings[k] for k in SETTING_KEYS if k not in _DIMS}}


def overrides(settings: Mapping) -> tuple:
  """The --config.model.* flags a run starting from the checkpoint needs."""
  values = config_values(settings)
  shown = {k: v for k, v in values.items() if not (k in _DIMS and v == 0)}
  # As typed on a command line: ml_collections keeps a string flag's quotes.
  return tuple(f'--config.model.m3t.{k}={v}' for k, v in shown.items())


def grid_words(shape: Sequence[int], token_shape: Sequence[int], stride=None) -> str:
  """'14x14 patches of 16x16 px at 224x224 px, 3 channels' for an image layout,
  '101x12 patches of 16x16 every 10x10 over 1024x128' for a strided one."""
  blocks = [(s - t) // d + 1 for s, t, d in zip(shape, token_shape, stride or token_shape)]
  k = 2 if len(shape) == 3 else len(shape)
  x = lambda v: 'x'.join(str(int(i)) for i in v[:k])
  if stride and tuple(stride) != tuple(token_shape):
    return f'{x(blocks)} patches of {x(token_shape)} every {x(stride)} over {x(shape)}'
  channels = f', {shape[2]} channel{"s" if shape[2] != 1 else ""}' if len(shape) == 3 else ''
  return f'{x(blocks)} patches of {x(token_shape)} px at {x(shape)} px{channels}'


def finish(tensors: Tensors, entries: Sequence[Entry], *, fmt: str, path: str,
           settings: dict, modality: str, layout: tuple, architecture: dict,
           ignored: Callable[[str], bool], notes: Sequence[str]) -> Imported:
  """The importer's result: trees assembled and checked, leftovers refused, notes written."""
  params = assemble(tensors, entries, settings, modality, layout)
  skipped = tensors.check_leftover(ignored)
  notes = list(notes)
  if skipped:
    notes.append(f'ignored {len(skipped)} tensor(s) with no M3T counterpart: '
                 f'{", ".join(skipped[:6])}{" ..." if len(skipped) > 6 else ""} '
                 '(the run trains its own heads)')
  if tensors.cast:
    notes.append(f'cast {", ".join(sorted(tensors.cast))} to float32')
  return Imported(
      params=params, settings=dict(settings), modality=modality, layout=layout,
      about=grid_words(*layout), notes=tuple(notes),
      source={'format': fmt, 'file': os.path.abspath(path), 'sha256': files.sha256(path),
              'bytes': os.path.getsize(path),
              'architecture': architecture})
