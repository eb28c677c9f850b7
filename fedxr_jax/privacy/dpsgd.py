"""Example-level DP-SGD for local training (Abadi et al. 2016).

Per-example gradients (vmap over the batch's example axis), each clipped to
L2 norm <= C over all trainable trees, summed, plus N(0, (sigma C)^2) on
every coordinate, over the batch size B. B is the batch's static size, not
its count of valid examples: a data-dependent denominator would release
that count without noise. Padded examples (example_mask False) contribute
a zero gradient, so with every example valid and sigma = 0, C = inf this is
the plain mean gradient.

Account with `accounting.example_epsilon` (q = B / num_examples, one
subsampled Gaussian per local step run).
"""
import math
from typing import Callable

import jax
import jax.numpy as jnp

from fedxr_jax.core import transforms
from fedxr_jax.errors import ConfigError
from fedxr_jax.privacy import noise


def private_value_and_grad(loss_fn: Callable, *, clip_norm: float, noise_multiplier: float,
                           mask_key: str = 'example_mask') -> Callable:
  """grad_fn(params, batch, key, *args) -> ((loss, aux), private gradient).

  loss_fn(params, batch, *args) -> (loss, aux), with batch leaves [B, ...]
  (`args`, e.g. the client meta, pass through). Loss and aux come from one
  ordinary forward pass over the whole batch, for logging and aux sums
  exactly as without DP; only the gradient is private. batch[mask_key], if
  present, marks the valid examples.
  """
  if not clip_norm > 0:
    raise ConfigError(f'privacy.clip_norm must be > 0, got {clip_norm}')
  if noise_multiplier < 0:
    raise ConfigError(f'privacy.noise_multiplier must be >= 0, got {noise_multiplier}')
  if noise_multiplier > 0 and math.isinf(clip_norm):
    raise ConfigError('privacy.noise_multiplier > 0 needs a finite privacy.clip_norm')

  def grad_fn(params, batch, key, *args):
    size = jax.tree.leaves(batch)[0].shape[0]

    def example_grad(example):
      one = jax.tree.map(lambda x: x[None], example)
      return jax.grad(lambda p: loss_fn(p, one, *args)[0])(params)

    grads = jax.vmap(example_grad)(batch)
    norms = jax.vmap(transforms.global_norm)(grads)
    scale = jnp.where(norms > clip_norm, clip_norm / jnp.where(norms > 0, norms, 1.0), 1.0)
    valid = (batch[mask_key].astype(bool) if isinstance(batch, dict) and mask_key in batch
             else jnp.ones((size,), bool))

    def total(g):
      s = scale.reshape((size,) + (1,) * (g.ndim - 1))
      # where, not a product: a padded example's garbage (even NaN) must vanish.
      return jnp.sum(jnp.where(valid.reshape(s.shape), g * s.astype(g.dtype), 0), axis=0)

    summed = jax.tree.map(total, grads)
    if noise_multiplier > 0:
      summed = noise.add_gaussian_noise(summed, noise_multiplier * clip_norm, key)
    return loss_fn(params, batch, *args), jax.tree.map(lambda g: g / size, summed)

  return grad_fn
