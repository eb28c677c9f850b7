"""npz: a big_vision / vision_transformer ViT as flat '/'-joined arrays (np.savez).

  cls [1,1,D] (+ the old combined posemb's first row)        -> backbone/cls
  pos_embedding [1,N,D] (or [1,1+N,D]; also under
    Transformer/ or Transformer/posembed_input/)              -> encoders/vision/position
  embedding/kernel [p,p,C,D] -> [p*p*C, D]                    -> encoders/vision/embed/kernel
  embedding/bias                                              -> encoders/vision/embed/bias
  (none)                                                      -> encoders/absent/vision = 0
  Transformer/encoderblock_i/
    LayerNorm_0                                               -> block_i/norm_attn
    MultiHeadDotProductAttention_0/{query,key,value}
      kernel [D,H,Dh] -> [D,D], bias [H,Dh] -> [D]            -> block_i/attn/*/dense
    MultiHeadDotProductAttention_0/out kernel [H,Dh,D]->[D,D] -> block_i/attn/out/dense
    LayerNorm_1                                               -> block_i/norm_mlp
    MlpBlock_0/Dense_0, Dense_1                               -> block_i/mlp_in, mlp_out
  Transformer/encoder_norm                                    -> backbone/norm_out
  ignored: head/*, pre_logits/*

The pre-linen names of the original vision_transformer checkpoints
(MultiHeadDotProductAttention_1, LayerNorm_2, MlpBlock_3) are read too. The
model is flax's: LayerNorm epsilon 1e-6, tanh-approximate GELU (nn.gelu),
heads read from the query kernel. A class token is needed ('tok' pooling):
M3T reads its features from one. The patch grid is taken to be square.
"""
import math
from typing import NamedTuple

from fedxr_jax.errors import CheckpointError
from fedxr_jax.models.importers import common
from fedxr_jax.models.importers import files

FORMAT = 'npz'
MODALITY = 'vision'
_POSITIONS = ('pos_embedding', 'Transformer/pos_embedding',
              'Transformer/posembed_input/pos_embedding')
# (attention, second LayerNorm, MLP) module names: big_vision's, then pre-linen ones.
_NAMES = (('MultiHeadDotProductAttention_0', 'LayerNorm_1', 'MlpBlock_0'),
          ('MultiHeadDotProductAttention_1', 'LayerNorm_2', 'MlpBlock_3'))


def _prefix(tensors: common.Tensors) -> str:
  found = sorted(n[:-len('embedding/kernel')] for n in tensors.arrays
                 if n == 'embedding/kernel' or n.endswith('/embedding/kernel'))
  if len(found) != 1:
    raise CheckpointError(f"{tensors.path}: {'missing' if not found else 'several'} array(s) "
                          "'embedding/kernel' (the patch embedding of a big_vision ViT; is "
                          '--format right?)')
  return found[0]


def _depth(tensors: common.Tensors, prefix: str) -> int:
  t = prefix + 'Transformer/encoderblock'
  if t + '/LayerNorm_0/scale' in tensors:
    raise CheckpointError(f"{tensors.path}: the scanned layout ('{t}/...' stacked over "
                          'layers) is not supported; save the unrolled encoderblock_i arrays')
  indices = {int(n[len(t) + 1:].split('/')[0]) for n in tensors.arrays
             if n.startswith(t + '_') and n[len(t) + 1:].split('/')[0].isdigit()}
  if not indices:
    raise CheckpointError(f"{tensors.path}: missing array '{t}_0/LayerNorm_0/scale' (no "
                          'encoder blocks)')
  return max(indices) + 1


class _Layout(NamedTuple):
  prefix: str         # before 'embedding/kernel' ('' or e.g. 'params/')
  names: tuple        # (attention, second LayerNorm, MLP) module names
  position: str       # the position embedding's array
  rows: int           # its rows: N, or 1 + N (combined with the class token)
  combined: bool
  shape: tuple        # image [H, W, C]
  token: tuple        # patch [p, p, C]


def _layout(tensors: common.Tensors) -> _Layout:
  """Where the arrays are, and the images they embed."""
  path, prefix = tensors.path, _prefix(tensors)
  if prefix + 'cls' not in tensors:
    raise CheckpointError(f"{path}: no array '{prefix}cls': a ViT pooled by GAP or MAP has "
                          "no class token, and M3T reads its features from one (import a "
                          "'tok'-pooled checkpoint)")
  kernel = tensors.shape(prefix + 'embedding/kernel')
  if len(kernel) != 4:
    raise CheckpointError(f"{path}: array '{prefix}embedding/kernel' has shape "
                          f'{list(kernel)}, expected [patch, patch, channels, width]')
  positions = [prefix + n for n in _POSITIONS if prefix + n in tensors]
  if len(positions) != 1:
    raise CheckpointError(f"{path}: {'missing' if not positions else 'several'} position "
                          f"embedding(s) ('{prefix}pos_embedding')")
  shape = tensors.shape(positions[0])
  rows = shape[1] if len(shape) == 3 else 0
  combined = math.isqrt(rows) ** 2 != rows    # the old [cls, patches] posemb
  side = math.isqrt(max(rows - combined, 0))
  if side * side != rows - combined or side < 1:
    raise CheckpointError(f'{path}: array {positions[0]!r} holds {rows} positions: neither a '
                          'square patch grid nor one plus a square grid')
  names = next((x for x in _NAMES if f'{prefix}Transformer/encoderblock_0/{x[0]}/query/kernel'
                in tensors), _NAMES[0])
  ph, pw, channels, _ = kernel
  return _Layout(prefix, names, positions[0], rows, combined,
                 (side * ph, side * pw, channels), (ph, pw, channels))


def _settings(tensors: common.Tensors, lay: _Layout) -> dict:
  width = tensors.shape(lay.prefix + 'embedding/kernel')[-1]
  block0 = f'{lay.prefix}Transformer/encoderblock_0/'
  query = tensors.shape(f'{block0}{lay.names[0]}/query/kernel')
  if len(query) != 3 or query[1] * query[2] != width:
    raise CheckpointError(f"{tensors.path}: array '{block0}{lay.names[0]}/query/kernel' has "
                          f'shape {list(query)}, expected [{width}, heads, {width} / heads]')
  mlp = tensors.shape(f'{block0}{lay.names[2]}/Dense_0/kernel')[-1]
  # flax's LayerNorm epsilon and nn.gelu (tanh approximation)
  return {'width': width, 'depth': _depth(tensors, lay.prefix), 'num_heads': query[1],
          'mlp_width': mlp, 'ln_eps': 1e-6, 'exact_gelu': False, 'num_registers': 0}


def _embedding_entries(lay: _Layout, width: int, modality: str) -> list:
  pos = (lay.position, (1, lay.rows, width))
  cls_pos = (lambda p: p[0, 0]) if lay.combined else (lambda p: 0.0)
  return [
      common.Entry('backbone/cls', ((lay.prefix + 'cls', (1, 1, width)), pos),
                   lambda cls, p: cls[0, 0] + cls_pos(p)),
      common.Entry(f'encoders/{modality}/position', (pos,), lambda p: p[0, int(lay.combined):]),
      common.Entry(f'encoders/{modality}/embed/kernel',
                   ((lay.prefix + 'embedding/kernel', lay.token[:2] + (lay.token[2], width)),),
                   lambda k: k.reshape(-1, width)),
      common.Entry(f'encoders/{modality}/embed/bias',
                   ((lay.prefix + 'embedding/bias', (width,)),), lambda b: b),
      common.zeros(f'encoders/absent/{modality}', (width,)),
  ]


def _block_entries(lay: _Layout, s: dict, i: int) -> list:
  width, heads, mlp = s['width'], s['num_heads'], s['mlp_width']
  split = (width, heads, width // heads)
  src, dst = f'{lay.prefix}Transformer/encoderblock_{i}/', f'backbone/block_{i}/'
  attn, norm, block = (src + n for n in lay.names)
  out = common.layer_norm(dst + 'norm_attn', src + 'LayerNorm_0/scale',
                          src + 'LayerNorm_0/bias', width)
  for name in ('query', 'key', 'value'):   # [D, H, Dh] -> [D, H*Dh], heads major
    out += [common.Entry(f'{dst}attn/{name}/dense/kernel', ((f'{attn}/{name}/kernel', split),),
                         lambda k: k.reshape(width, width)),
            common.Entry(f'{dst}attn/{name}/dense/bias', ((f'{attn}/{name}/bias', split[1:]),),
                         lambda b: b.reshape(width))]
  out += [common.Entry(f'{dst}attn/out/dense/kernel',
                       ((f'{attn}/out/kernel', split[1:] + (width,)),),
                       lambda k: k.reshape(width, width)),
          common.Entry(f'{dst}attn/out/dense/bias', ((f'{attn}/out/bias', (width,)),), lambda b: b)]
  out += common.layer_norm(dst + 'norm_mlp', norm + '/scale', norm + '/bias', width)
  out += common.linear(dst + 'mlp_in/dense', block + '/Dense_0', width, mlp, torch_layout=False)
  out += common.linear(dst + 'mlp_out/dense', block + '/Dense_1', mlp, width, torch_layout=False)
  return out


def read(path: str, modality: str = MODALITY) -> common.Imported:
  tensors = common.Tensors(files.read_npz(path), path, FORMAT)
  lay = _layout(tensors)
  s = _settings(tensors, lay)
  tensors.context = (f"a ViT of width {s['width']}, {s['depth']} block(s), {s['num_heads']} "
                     f"heads, MLP {s['mlp_width']}, {common.grid_words(lay.shape, lay.token)}")
  entries = _embedding_entries(lay, s['width'], modality)
  for i in range(s['depth']):
    entries += _block_entries(lay, s, i)
  norm = lay.prefix + 'Transformer/encoder_norm/'
  entries += common.layer_norm('backbone/norm_out', norm + 'scale', norm + 'bias', s['width'])
  notes = [('backbone/cls = cls + pos_embedding[0] (the old combined position embedding)'
            if lay.combined else 'backbone/cls = cls (big_vision adds no position to it)'),
           'embedding conv kernel [p, p, C, D] -> linear embed over ({}, {}, {})-flattened '
           'patches'.format(*lay.token),
           f'encoders/absent/{modality} has no ViT counterpart: zeros',
           f'patch grid taken as square: {lay.shape[0]}x{lay.shape[1]} px images']
  architecture = {'width': s['width'], 'depth': s['depth'], 'num_heads': s['num_heads'],
                  'mlp_dim': s['mlp_width'], 'patch_size': list(lay.token[:2]),
                  'image_size': list(lay.shape[:2]), 'channels': lay.shape[2],
                  'pool_type': 'tok', 'posemb': 'learn',
                  'names': 'big_vision' if lay.names == _NAMES[0] else 'vision_transformer'}
  ignored = lambda name: name.startswith((lay.prefix + 'head/', lay.prefix + 'pre_logits/'))
  return common.finish(tensors, entries, fmt=FORMAT, path=path, settings=s,
                       modality=modality, layout=(lay.shape, lay.token),
                       architecture=architecture, ignored=ignored, notes=notes)
