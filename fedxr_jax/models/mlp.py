"""A second backbone: per-modality MLP encoders, mean-pooled, an MLP trunk, task heads.

Far smaller than a transformer and without attention; it shows what a
backbone needs to be a registry entry (`models.registry`): a `make(spec,
**settings)` returning a `ModelDef`. Roles: `encoders` (one MLP per
modality over its flattened tokens), `base` (the trunk), `lora_a` / `lora_b`
(LoRA on the trunk's layers), `heads`. A missing modality contributes
nothing to the pooled features.
"""
from typing import Mapping

import flax.linen as nn
import jax.numpy as jnp

from fedxr_jax.errors import ConfigError
from fedxr_jax.models import interface
from fedxr_jax.models import m3t
from fedxr_jax.models.lora import LoRADense


class MLPModel(nn.Module):
  modalities: Mapping[str, tuple]
  tasks: Mapping[str, int]
  width: int = 64
  depth: int = 2
  lora_rank: int = 0
  lora_alpha: float = 1.0

  @nn.compact
  def __call__(self, x, modality_mask):
    pooled, count = 0.0, 0.0
    for i, (name, layout) in enumerate(self.modalities.items()):
      tokens = m3t.tokenize(x[name], tuple(layout[1]))
      h = nn.gelu(nn.Dense(self.width, name=f'encoders_{name}')(tokens)).mean(axis=-2)
      present = modality_mask[..., i:i + 1].astype(h.dtype)
      pooled, count = pooled + present * h, count + present
    h = pooled / jnp.maximum(count, 1.0)
    for i in range(self.depth):
      h = h + nn.gelu(LoRADense(self.width, self.lora_rank, self.lora_alpha,
                                name=f'trunk_{i}')(h))
    return {t: nn.Dense(k, name=f'heads_{t}')(h) for t, k in self.tasks.items()}


def role_of(path: tuple) -> str:
  names = [str(p) for p in path]
  if names[-1] in m3t.LORA_ROLES:
    return m3t.LORA_ROLES[names[-1]]
  return next((role for role in ('encoders', 'heads') if names[0].startswith(role)), 'base')


def make(spec, *, lora_residual: bool, dtype: str, width: int = 64, depth: int = 2,
         lora_rank: int = 0, lora_alpha: float = 1.0):
  """The MLP model for `spec`; width of every layer, `depth` residual trunk layers."""
  if lora_residual:
    raise ConfigError('not supported yet: model.name=mlp with an exact LoRA rule')
  if dtype != 'float32':
    raise ConfigError(f'not supported yet: model.dtype={dtype} with model.name=mlp')
  if width < 1 or depth < 0 or lora_rank < 0:
    raise ConfigError('model.mlp: width >= 1, depth >= 0, lora_rank >= 0')
  module = MLPModel(dict(spec.modalities), dict(spec.tasks), width, depth, lora_rank,
                    lora_alpha)

  def init(key):
    x = {m: jnp.zeros((1,) + tuple(layout[0])) for m, layout in spec.modalities.items()}
    return module.init(key, x, jnp.ones((1, len(spec.modalities)), bool))['params']

  def features(params, x, mask):
    raise ConfigError('not supported yet: token features of model.name=mlp (it pools)')

  return interface.ModelDef(
      name='mlp', init=init, apply=lambda params, x, mask: (
          module.apply({'params': params}, x, mask), {}),
      features=features, role_of=role_of, module_weights=lambda counts: {
          'encoders': {f'encoders_{m}': c for m, c in counts['present'].items()},
          'heads': {f'heads_{t}': c for t, c in counts['labeled'].items()},
          'base': counts['examples'], 'lora_a': counts['lora'], 'lora_b': counts['lora']},
      lora_rank=lora_rank, lora_scale=lora_alpha / lora_rank if lora_rank else 0.0,
      num_experts=0, tokens=len(spec.modalities), width=width, depth=depth, num_heads=1,
      dtype=dtype, moe_balance=0.0)
