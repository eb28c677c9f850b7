"""QSGD: stochastic, unbiased b-bit quantization (Alistarh et al. 2017).

Per leaf (over the coordinates the client holds), with s = 2^b - 1 levels:
q_i = ||x|| sign(x_i) l_i / s, l_i = floor(r_i) + Bernoulli(r_i - floor(r_i)),
r_i = s |x_i| / ||x||, so E[q] = x. 'upload_bits' = (b + 1) per held
coordinate (level and sign) + 32 per leaf with any (its norm).
"""
import jax
import jax.numpy as jnp

from fedxr_jax.core import transforms
from fedxr_jax.errors import ConfigError
from fedxr_jax.transforms import _feedback

NORM_BITS = 32


def quantize(x, mask, key, levels: int):
  """Unbiased stochastic quantization of x's held coordinates (float32)."""
  x = x.astype(jnp.float32)
  norm = jnp.sqrt(jnp.sum(jnp.where(mask, jnp.square(x), 0.0)))
  r = levels * jnp.abs(x) / jnp.where(norm > 0, norm, 1.0)
  low = jnp.floor(r)
  level = low + (jax.random.uniform(key, x.shape) < r - low)
  return jnp.sign(x) * norm * level / levels


def qsgd(bits: int = 4) -> transforms.UpdateTransform:
  """`bits` bits per level (2^bits - 1 levels) plus a sign bit."""
  if not 1 <= bits <= 16:
    raise ConfigError(f'compression.qsgd.bits must be in [1, 16], got {bits}')
  levels = 2 ** bits - 1

  def update(update, key, weights, info):
    del info
    mask = _feedback.masks(weights, update)
    leaves, treedef = jax.tree.flatten(update)
    masks = jax.tree.leaves(mask)
    keys = jax.random.split(key, len(leaves))
    sent = jax.tree.unflatten(treedef, [quantize(u, m, k, levels)
                                        for u, m, k in zip(leaves, masks, keys)])
    count = sum(jnp.sum(m) for m in masks)
    norms = sum(jnp.any(m) for m in masks)
    upload = (bits + 1) * count + NORM_BITS * norms
    return (_feedback.outgoing(sent, update, mask), weights,
            {'upload_bits': jnp.asarray(upload, jnp.float32)})

  return transforms.stateless(update)
