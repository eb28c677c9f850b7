"""The multi-modal multi-task (M3T) foundation model.

tokens = [CLS, prompts, modality_1 tokens, ..., modality_M tokens]
  -> pre-LN transformer backbone (LoRA on attention projections)
  -> CLS -> one head per task.

A missing modality's tokens are replaced by that modality's learned "absent"
token; only its first position stays visible to attention, so the backbone
sees one "this sensor is missing" signal per absent modality.

Parameter trees by role (see `role_of`), each with its own tuning mode:
  base          the backbone (frozen in PEFT, shared in full tuning)
  lora_a/lora_b LoRA factors A [r, in] and B [r, out] on attention projections
  lora_residual exact-aggregation residual folded into the base (optional)
  prompts       prompt tokens shared by all users
  user_prompts  extra prompt tokens for shared+personal prompt tuning
  adapters      bottleneck adapters after attention and MLP (optional)
  experts       Mixture-of-Experts MLPs and their top-k gate (optional)
  encoders      modality encoders and absent tokens
  heads         one head per task
"""
from typing import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.models.lora import LORA_PREFIX, LoRADense, SelfAttention

ROLES = ('base', 'lora_a', 'lora_b', 'lora_residual', 'prompts', 'user_prompts',
         'adapters', 'experts', 'encoders', 'heads')
LORA_ROLES = {LORA_PREFIX + 'A': 'lora_a', LORA_PREFIX + 'B': 'lora_b',
              LORA_PREFIX + 'R': 'lora_residual'}


def role_of(path: tuple) -> str:
  """The parameter tree a param belongs to, from its path in the param dict."""
  names = [str(p) for p in path]
  if names[-1] in LORA_ROLES:
    return LORA_ROLES[names[-1]]
  if any(n.startswith('adapter_') for n in names):
    return 'adapters'
  if 'moe' in names:
    return 'experts'
  return {'prompts': 'prompts', 'user_prompts': 'user_prompts', 'encoders': 'encoders',
          'heads': 'heads'}.get(names[0], 'base')


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


class Adapter(nn.Module):
  """Bottleneck adapter (Houlsby et al. 2019): x + up(gelu(down(x))); identity at init."""
  dim: int

  @nn.compact
  def __call__(self, x):
    h = nn.gelu(nn.Dense(self.dim, name='down')(x))
    return x + nn.Dense(x.shape[-1], kernel_init=nn.initializers.zeros, name='up')(h)


class MoEMLP(nn.Module):
  """Mixture-of-Experts MLP with a learned top-k gate (Shazeer et al. 2017).

  Experts are stacked [E, ...] so each is one slice of the `experts` tree
  (aggregated with the tokens routed to it). Every expert runs densely and
  the gate zeroes all but the top k per token: at E <= 8 and these widths
  dense is faster than dispatch under vmap, and it keeps shapes static.
  Sows per-example tokens routed to each expert and mean gate probabilities
  (for routed-token weights, activation counts and the balance loss).
  """
  num_experts: int
  top_k: int
  mlp_width: int

  @nn.compact
  def __call__(self, x, token_mask):
    width, e = x.shape[-1], self.num_experts
    init = nn.initializers.lecun_normal(batch_axis=(0,))
    w_in = self.param('w_in', init, (e, width, self.mlp_width))
    b_in = self.param('b_in', nn.initializers.zeros, (e, self.mlp_width))
    w_out = self.param('w_out', init, (e, self.mlp_width, width))
    b_out = self.param('b_out', nn.initializers.zeros, (e, width))
    probs = nn.softmax(nn.Dense(e, name='gate')(x), axis=-1)        # [..., T, E]
    top_p, top_i = jax.lax.top_k(probs, self.top_k)
    routed = jnp.sum(jax.nn.one_hot(top_i, e, dtype=x.dtype), axis=-2)   # [..., T, E]
    combine = jnp.sum(jax.nn.one_hot(top_i, e, dtype=x.dtype)
                      * (top_p / jnp.sum(top_p, -1, keepdims=True))[..., None], axis=-2)
    h = nn.gelu(jnp.einsum('...td,edh->...teh', x, w_in) + b_in)
    out = jnp.einsum('...teh,ehd->...ted', h, w_out) + b_out
    live = token_mask[..., None].astype(x.dtype)
    self.sow('intermediates', 'expert_tokens', jnp.sum(routed * live, axis=-2))
    self.sow('intermediates', 'gate_probs', jnp.sum(probs * live, axis=-2)
             / jnp.maximum(jnp.sum(live, axis=-2), 1.0))
    return jnp.einsum('...te,...ted->...td', combine, out)


class Block(nn.Module):
  num_heads: int
  mlp_width: int
  lora_rank: int
  lora_alpha: float
  lora_targets: Sequence[str]
  lora_residual: bool = False
  adapter_dim: int = 0
  num_experts: int = 0
  expert_top_k: int = 2

  @nn.compact
  def __call__(self, x, key_mask):
    h = nn.LayerNorm(name='norm_attn')(x)
    h = SelfAttention(self.num_heads, self.lora_rank, self.lora_alpha,
                      tuple(self.lora_targets), self.lora_residual, name='attn')(h, key_mask)
    if self.adapter_dim:
      h = Adapter(self.adapter_dim, name='adapter_attn')(h)
    x = x + h
    h = nn.LayerNorm(name='norm_mlp')(x)
    if self.num_experts:
      h = MoEMLP(self.num_experts, self.expert_top_k, self.mlp_width, name='moe')(h, key_mask)
    else:
      h = nn.gelu(LoRADense(self.mlp_width, name='mlp_in')(h))
      h = LoRADense(x.shape[-1], name='mlp_out')(h)
    if self.adapter_dim:
      h = Adapter(self.adapter_dim, name='adapter_mlp')(h)
    return x + h


class Backbone(nn.Module):
  depth: int
  num_heads: int
  mlp_width: int
  lora_rank: int
  lora_alpha: float
  lora_targets: Sequence[str]
  lora_residual: bool = False
  adapter_dim: int = 0
  num_experts: int = 0
  expert_top_k: int = 2

  @nn.compact
  def __call__(self, tokens, key_mask):
    cls = self.param('cls', nn.initializers.normal(0.02), (tokens.shape[-1],))
    cls = jnp.broadcast_to(cls, tokens.shape[:-2] + (1, tokens.shape[-1]))
    x = jnp.concatenate([cls, tokens], axis=-2)
    key_mask = jnp.concatenate(
        [jnp.ones(key_mask.shape[:-1] + (1,), bool), key_mask], axis=-1)
    for i in range(self.depth):
      x = Block(self.num_heads, self.mlp_width, self.lora_rank, self.lora_alpha,
                self.lora_targets, self.lora_residual, self.adapter_dim,
                self.num_experts, self.expert_top_k, name=f'block_{i}')(x, key_mask)
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
  lora_residual: bool = False     # exact LoRA aggregation (FedEx residual)
  num_user_prompts: int = 0       # shared+personal prompt tuning
  adapter_dim: int = 0            # 0: no adapters
  num_experts: int = 0            # 0: dense MLPs; else a MoE MLP per block
  expert_top_k: int = 2

  @nn.compact
  def __call__(self, x: Mapping[str, jax.Array], modality_mask: jax.Array):
    tokens, key_mask = Encoders(self.modalities, self.width, name='encoders')(
        x, modality_mask)
    for name, count in (('user_prompts', self.num_user_prompts),
                        ('prompts', self.num_prompts)):
      if count:
        prompts = self.param(name, nn.initializers.normal(0.02), (count, self.width))
        prompts = jnp.broadcast_to(prompts, tokens.shape[:-2] + prompts.shape)
        tokens = jnp.concatenate([prompts, tokens], axis=-2)
        key_mask = jnp.concatenate(
            [jnp.ones(key_mask.shape[:-1] + (count,), bool), key_mask], axis=-1)
    features = Backbone(self.depth, self.num_heads, self.mlp_width,
                        self.lora_rank, self.lora_alpha, tuple(self.lora_targets),
                        self.lora_residual, self.adapter_dim, self.num_experts,
                        self.expert_top_k, name='backbone')(tokens, key_mask)
    return Heads(self.tasks, name='heads')(features)
