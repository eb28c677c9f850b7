"""What Hugging Face's ViT-style encoders share (ViT, AST): the layer name map and
the architecture read from the tensors' shapes and an optional config.json.

  encoder.layer.N.layernorm_before            -> backbone/block_N/norm_attn
  encoder.layer.N.attention.attention.query   -> backbone/block_N/attn/query/dense (W.T)
     (key, value likewise)
  encoder.layer.N.attention.output.dense      -> backbone/block_N/attn/out/dense (W.T)
  encoder.layer.N.layernorm_after             -> backbone/block_N/norm_mlp
  encoder.layer.N.intermediate.dense          -> backbone/block_N/mlp_in/dense (W.T)
  encoder.layer.N.output.dense                -> backbone/block_N/mlp_out/dense (W.T)
  layernorm                                   -> backbone/norm_out
"""
import re

import numpy as np

from fedxr_jax.errors import CheckpointError
from fedxr_jax.models.importers import common

# HF activations M3T computes exactly: erf GELU, or its tanh approximation.
_ACTIVATIONS = {'gelu': True, 'gelu_new': False, 'gelu_pytorch_tanh': False,
                'gelu_fast': False}


def prefix_of(tensors: common.Tensors, anchor: str) -> str:
  """The key prefix ('' or e.g. 'vit.') of the tensor whose name ends with `anchor`."""
  found = sorted(n[:-len(anchor)] for n in tensors.arrays
                 if n == anchor or n.endswith('.' + anchor))
  if not found:
    raise CheckpointError(f'{tensors.path}: missing tensor {anchor!r} (a {tensors.fmt} '
                          'checkpoint has it; is --format right?)')
  if len(found) > 1:
    raise CheckpointError(f'{tensors.path} holds several encoders ({", ".join(found)}'
                          f'{anchor}); import one')
  return found[0]


def encoder_settings(tensors: common.Tensors, prefix: str, config: dict, width: int) -> dict:
  """depth, heads, MLP width, LayerNorm epsilon and GELU of the encoder; config.json wins."""
  layers = {int(m.group(1)) for n in tensors.arrays
            for m in [re.match(re.escape(prefix) + r'encoder\.layer\.(\d+)\.', n)] if m}
  depth = int(config.get('num_hidden_layers', max(layers, default=-1) + 1))
  if depth < 1:
    raise CheckpointError(f'{tensors.path}: missing tensor '
                          f"'{prefix}encoder.layer.0.layernorm_before.weight' (no layers)")
  mlp = int(config.get('intermediate_size', tensors.shape(
      f'{prefix}encoder.layer.0.intermediate.dense.weight')[0]))
  if 'num_attention_heads' in config:
    heads = int(config['num_attention_heads'])
  elif width % 64 == 0:
    heads = width // 64   # every released ViT / AST size has 64-wide heads
  else:
    raise CheckpointError(f'{tensors.path}: the number of attention heads is not in the '
                          f'tensors (hidden size {width} is not a multiple of 64): put the '
                          "model's config.json beside the checkpoint")
  if width % heads:
    raise CheckpointError(f'{tensors.path}: hidden size {width} does not split into '
                          f'{heads} attention heads')
  act = config.get('hidden_act', 'gelu')
  if act not in _ACTIVATIONS:
    raise CheckpointError(f"config.json hidden_act={act!r}: M3T's MLP computes "
                          f'{sorted(_ACTIVATIONS)} only')
  return {'width': width, 'depth': depth, 'num_heads': heads, 'mlp_width': mlp,
          'ln_eps': float(config.get('layer_norm_eps', 1e-12)),
          'exact_gelu': _ACTIVATIONS[act]}


def layers(prefix: str, s: dict, qkv_bias: bool = True) -> list:
  """Entries of every encoder layer and the final LayerNorm (module docstring)."""
  width, mlp = s['width'], s['mlp_width']
  out = []
  for i in range(s['depth']):
    src, dst = f'{prefix}encoder.layer.{i}.', f'backbone/block_{i}/'
    out += common.layer_norm(dst + 'norm_attn', src + 'layernorm_before.weight',
                             src + 'layernorm_before.bias', width)
    for name in ('query', 'key', 'value'):
      dense = common.linear(f'{dst}attn/{name}/dense', f'{src}attention.attention.{name}',
                            width, width, torch_layout=True)
      out += dense if qkv_bias else [dense[0], common.zeros(dense[1].target, (width,))]
    out += common.linear(dst + 'attn/out/dense', src + 'attention.output.dense', width, width,
                         torch_layout=True)
    out += common.layer_norm(dst + 'norm_mlp', src + 'layernorm_after.weight',
                             src + 'layernorm_after.bias', width)
    out += common.linear(dst + 'mlp_in/dense', src + 'intermediate.dense', width, mlp,
                         torch_layout=True)
    out += common.linear(dst + 'mlp_out/dense', src + 'output.dense', mlp, width,
                         torch_layout=True)
  out += common.layer_norm('backbone/norm_out', prefix + 'layernorm.weight',
                           prefix + 'layernorm.bias', width)
  return out


def words(s: dict) -> str:
  return (f"hidden size {s['width']}, {s['depth']} layer(s), {s['num_heads']} heads, "
          f"MLP {s['mlp_width']}")


def pair(value) -> tuple:
  v = np.atleast_1d(np.asarray(value, int))
  return (int(v[0]), int(v[-1]))
