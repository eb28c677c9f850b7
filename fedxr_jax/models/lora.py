"""Dense layers with a low-rank adapter: y = x (W + R) + b + (alpha / r) (x A^T) B.

A is stored [rank, in] and B [rank, out], so the rank is the leading axis
of both factors: per-rank module weights (heterogeneous ranks, zero-padded
to r_max) weigh one slice of each factor along that axis.
"""
from typing import Any, Sequence

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp

LORA_PREFIX = 'lora_'


class LoRADense(nn.Module):
  """A dense layer with optional LoRA factors `lora_A`, `lora_B`.

  The factors are ordinary params whose names start with `lora_`, so the
  role split (`models.m3t.role_of`) puts them in trees of their own.
  B starts at zero: the adapted layer equals the base layer at init.
  With `residual`, a dense `lora_R` [in, out] (zeros, never trained by
  clients) carries what exact LoRA aggregation folds into the base.
  """
  features: int
  rank: int = 0
  alpha: float = 1.0
  residual: bool = False
  dtype: Any = None   # the base layer's compute dtype (bfloat16: a frozen bf16 base)

  @nn.compact
  def __call__(self, x):
    y = nn.Dense(self.features, dtype=self.dtype, name='dense')(x)
    if self.rank > 0:
      a = self.param(LORA_PREFIX + 'A', nn.initializers.lecun_normal(in_axis=1, out_axis=0),
                     (self.rank, x.shape[-1]))
      b = self.param(LORA_PREFIX + 'B', nn.initializers.zeros,
                     (self.rank, self.features))
      y = y + (self.alpha / self.rank) * ((x @ a.T) @ b)
      if self.residual:
        r = self.param(LORA_PREFIX + 'R', nn.initializers.zeros,
                       (x.shape[-1], self.features))
        y = y + x @ jax.lax.stop_gradient(r)
    return y


class SelfAttention(nn.Module):
  """Multi-head self-attention with LoRA on the projections named in `lora_targets`."""
  num_heads: int
  lora_rank: int = 0
  lora_alpha: float = 1.0
  lora_targets: Sequence[str] = ('query', 'value')
  lora_residual: bool = False
  dtype: Any = None

  @nn.compact
  def __call__(self, x, key_mask):
    width = x.shape[-1]
    head_dim = width // self.num_heads

    def proj(name):
      rank = self.lora_rank if name in self.lora_targets else 0
      return LoRADense(width, rank, self.lora_alpha, self.lora_residual, self.dtype,
                       name=name)

    # [..., heads, tokens, head_dim]: batch dims leading, contraction last,
    # the layout XLA:CPU runs as plain batched matmuls (4x faster here).
    split = lambda t: jnp.swapaxes(
        t.reshape(t.shape[:-1] + (self.num_heads, head_dim)), -2, -3)
    q, k, v = (split(proj(n)(x)) for n in ('query', 'key', 'value'))
    logits = jnp.einsum('...hqd,...hkd->...hqk', q, k) / jnp.sqrt(head_dim)
    # Masked keys (absent modalities) get no attention weight.
    logits = logits + jnp.where(key_mask, 0.0, -1e9)[..., None, None, :]
    weights = nn.softmax(logits, axis=-1)
    out = jnp.swapaxes(jnp.einsum('...hqk,...hkd->...hqd', weights, v), -2, -3)
    return proj('out')(out.reshape(x.shape))


def layers(tree: dict) -> dict:
  """{layer path: leaf} of a lora_a / lora_b / lora_residual tree."""
  return {path[:-1]: leaf for path, leaf in traverse_util.flatten_dict(tree).items()}


def products(a_tree: dict, b_tree: dict, scale: float) -> dict:
  """{layer path: s A^T B} for matching factor trees."""
  a, b = layers(a_tree), layers(b_tree)
  return {p: scale * a[p].T @ b[p] for p in a}
