"""Dense layers with a low-rank adapter: y = x W + b + (alpha / r) (x A) B."""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

LORA_PREFIX = 'lora_'


class LoRADense(nn.Module):
  """A frozen-able dense layer with optional LoRA factors `lora_A`, `lora_B`.

  The factors are ordinary params whose names start with `lora_`, so the
  role split (`models.m3t.role_of`) puts them in their own `lora` tree.
  B starts at zero: the adapted layer equals the base layer at init.
  """
  features: int
  rank: int = 0
  alpha: float = 1.0

  @nn.compact
  def __call__(self, x):
    y = nn.Dense(self.features, name='dense')(x)
    if self.rank > 0:
      a = self.param(LORA_PREFIX + 'A', nn.initializers.lecun_normal(),
                     (x.shape[-1], self.rank))
      b = self.param(LORA_PREFIX + 'B', nn.initializers.zeros,
                     (self.rank, self.features))
      y = y + (self.alpha / self.rank) * ((x @ a) @ b)
    return y


class SelfAttention(nn.Module):
  """Multi-head self-attention with LoRA on the projections named in `lora_targets`."""
  num_heads: int
  lora_rank: int = 0
  lora_alpha: float = 1.0
  lora_targets: Sequence[str] = ('query', 'value')

  @nn.compact
  def __call__(self, x, key_mask):
    width = x.shape[-1]
    head_dim = width // self.num_heads

    def proj(name):
      rank = self.lora_rank if name in self.lora_targets else 0
      return LoRADense(width, rank, self.lora_alpha, name=name)

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
