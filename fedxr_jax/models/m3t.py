"""The multi-modal multi-task (M3T) foundation model.

tokens = [CLS, prompts, modality_1 tokens, ..., modality_M tokens]
  -> pre-LN transformer backbone (LoRA on attention projections)
  -> CLS -> one head per task.

A missing modality's tokens are replaced by that modality's learned "absent"
token; only its first position stays visible to attention, so the backbone
sees one "this sensor is missing" signal per absent modality.

Parameter trees by role (see `role_of`): `base` (backbone, frozen in PEFT),
`lora`, `prompts`, `encoders` (modality encoders and absent tokens), `heads`.
"""
from typing import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.core import trees
from fedxr_jax.models.lora import LORA_PREFIX, LoRADense, SelfAttention

ROLES = ('base', 'lora', 'prompts', 'encoders', 'heads')


def role_of(path: tuple) -> str:
  """The parameter tree a param belongs to, from its path in the param dict."""
  if any(str(p).startswith(LORA_PREFIX) for p in path):
    return 'lora'
  return {'prompts': 'prompts', 'encoders': 'encoders',
          'heads': 'heads'}.get(path[0], 'base')


def tokenize(x: jax.Array, token_shape: Sequence[int]) -> jax.Array:
  """Cuts an input [..., *shape] into non-overlapping blocks of `token_shape`.

  An image [H, W, C] with token_shape (p, p, C) gives H/p*W/p patch tokens; a
  time series [T, F] with token_shape (w, F) gives T/w window tokens.
  """
  lead = x.shape[:x.ndim - len(token_shape)]
  shape = x.shape[len(lead):]
  blocks, inner = [], []
  for size, tok in zip(shape, token_shape):
    blocks += [size // tok, tok]
  x = x.reshape(lead + tuple(blocks))
  n = len(lead)
  outer_axes = [n + 2 * i for i in range(len(shape))]
  inner_axes = [n + 2 * i + 1 for i in range(len(shape))]
  x = x.transpose(tuple(range(n)) + tuple(outer_axes) + tuple(inner_axes))
  return x.reshape(lead + (-1, int(np.prod(token_shape))))


def num_tokens(shape: Sequence[int], token_shape: Sequence[int]) -> int:
  return int(np.prod([s // t for s, t in zip(shape, token_shape)]))


class ModalityEncoder(nn.Module):
  """Tokens of one modality: linear patch/window embedding + position."""
  width: int
  token_shape: Sequence[int]

  @nn.compact
  def __call__(self, x):
    tokens = tokenize(x, self.token_shape)
    pos = self.param('position', nn.initializers.normal(0.02),
                     tokens.shape[-2:-1] + (self.width,))
    return nn.Dense(self.width, name='embed')(tokens) + pos


class AbsentTokens(nn.Module):
  """One learned token per modality, used where that modality is missing."""
  modalities: Sequence[str]
  width: int

  @nn.compact
  def __call__(self):
    return {m: self.param(m, nn.initializers.normal(0.02), (self.width,))
            for m in self.modalities}


class Encoders(nn.Module):
  modalities: Mapping[str, tuple]   # name -> (input shape, token shape)
  width: int

  @nn.compact
  def __call__(self, x: Mapping[str, jax.Array], modality_mask: jax.Array):
    """Returns tokens [..., L, width] and their attention key mask [..., L]."""
    absent = AbsentTokens(tuple(self.modalities), self.width, name='absent')()
    tokens, masks = [], []
    for i, (name, (_, token_shape)) in enumerate(self.modalities.items()):
      present = modality_mask[..., i]
      tok = ModalityEncoder(self.width, tuple(token_shape), name=name)(x[name])
      tok = jnp.where(present[..., None, None], tok, absent[name])
      visible = jnp.zeros(tok.shape[-2], bool).at[0].set(True)
      tokens.append(tok)
      masks.append(present[..., None] | visible)
    return jnp.concatenate(tokens, axis=-2), jnp.concatenate(masks, axis=-1)


class Heads(nn.Module):
  """One linear head per task, each its own module for masked aggregation."""
  tasks: Mapping[str, int]

  @nn.compact
  def __call__(self, features):
    return {t: nn.Dense(k, name=t)(features) for t, k in self.tasks.items()}


class Block(nn.Module):
  num_heads: int
  mlp_width: int
  lora_rank: int
  lora_alpha: float
  lora_targets: Sequence[str]

  @nn.compact
  def __call__(self, x, key_mask):
    h = nn.LayerNorm(name='norm_attn')(x)
    x = x + SelfAttention(self.num_heads, self.lora_rank, self.lora_alpha,
                          tuple(self.lora_targets), name='attn')(h, key_mask)
    h = nn.LayerNorm(name='norm_mlp')(x)
    h = nn.gelu(LoRADense(self.mlp_width, name='mlp_in')(h))
    return x + LoRADense(x.shape[-1], name='mlp_out')(h)


class Backbone(nn.Module):
  depth: int
  num_heads: int
  mlp_width: int
  lora_rank: int
  lora_alpha: float
  lora_targets: Sequence[str]

  @nn.compact
  def __call__(self, tokens, key_mask):
    cls = self.param('cls', nn.initializers.normal(0.02), (tokens.shape[-1],))
    cls = jnp.broadcast_to(cls, tokens.shape[:-2] + (1, tokens.shape[-1]))
    x = jnp.concatenate([cls, tokens], axis=-2)
    key_mask = jnp.concatenate(
        [jnp.ones(key_mask.shape[:-1] + (1,), bool), key_mask], axis=-1)
    for i in range(self.depth):
      x = Block(self.num_heads, self.mlp_width, self.lora_rank, self.lora_alpha,
                self.lora_targets, name=f'block_{i}')(x, key_mask)
    return nn.LayerNorm(name='norm_out')(x[..., 0, :])


class M3TModel(nn.Module):
  """Multi-modal multi-task transformer with prompts, LoRA and task heads."""
  modalities: Mapping[str, tuple]   # name -> (input shape, token shape), in mask order
  tasks: Mapping[str, int]          # name -> number of classes
  width: int = 32
  depth: int = 2
  num_heads: int = 4
  mlp_width: int = 64
  num_prompts: int = 4
  lora_rank: int = 4
  lora_alpha: float = 8.0
  lora_targets: Sequence[str] = ('query', 'value')

  @nn.compact
  def __call__(self, x: Mapping[str, jax.Array], modality_mask: jax.Array):
    tokens, key_mask = Encoders(self.modalities, self.width, name='encoders')(
        x, modality_mask)
    if self.num_prompts:
      prompts = self.param('prompts', nn.initializers.normal(0.02),
                           (self.num_prompts, self.width))
      prompts = jnp.broadcast_to(prompts, tokens.shape[:-2] + prompts.shape)
      tokens = jnp.concatenate([prompts, tokens], axis=-2)
      key_mask = jnp.concatenate(
          [jnp.ones(key_mask.shape[:-1] + (self.num_prompts,), bool), key_mask],
          axis=-1)
    features = Backbone(self.depth, self.num_heads, self.mlp_width,
                        self.lora_rank, self.lora_alpha, tuple(self.lora_targets),
                        name='backbone')(tokens, key_mask)
    return Heads(self.tasks, name='heads')(features)
