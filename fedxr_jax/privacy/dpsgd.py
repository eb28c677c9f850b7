"""Example-level DP-SGD for local training (Abadi et al. 2016), privacy.mode=example.

Per-example gradients (vmap over the batch's example axis), each clipped to
L2 norm <= C over all trainable trees, summed, plus N(0, (sigma C)^2) on
every coordinate, over the batch size B. B is the batch's static size, not
its count of valid examples: a data-dependent denominator would release
that count without noise. Padded examples (example_mask False) contribute
a zero gradient, so with every example valid and sigma = 0, C = inf this is
the plain mean gradient. In local training (`local_grads`, the hook of
`core.local.make_local_update`) step s of a client draws its noise from
fold_in(fold_in(client key, core.local.DPSGD_STREAM), s); a data-free regularizer
(FedProx, Ditto) adds its exact gradient, outside the clip.

Sampling and accounting (`privacy.accounting.example_epsilon_per_round`).
`core.local` does not sample batches independently: each round a client
draws one permutation of its N examples (from its key) and step s takes
positions s B .. s B + B - 1 of it, mod N: a shuffled pass, wrapping into a
second pass (same order) when S B > N, an example repeated within a batch
when B > N. No dp-accounting event describes that (Poisson and
sampled-without-replacement events assume a fresh sample per step; a
shuffle gets neither amplification bound), so the conservative choice: no
amplification. Neighbours replace one example (N is public), so one step
is a Gaussian of sensitivity 2 C m_s (m_s: the example's copies in step
s); a round is the composition over its steps for the worst position,
one Gaussian of multiplier sigma / (2 sqrt(K)), K = max sum_s m_s^2
(`accounting.occurrence_energy`; K = 1 when N >= S B). Over the run the
worst client (largest K: the fewest examples, counts read at round 0) is
assumed in every round's cohort and to run all `local_steps` steps.
Steps masked past a client's budget are computed and thrown away: they
release nothing. Covered: what a client uploads (its update; as weights
its example count on each module it holds, `clip.example_count_weights`)
and so the server's models. Not covered: round metrics (train/loss...),
evaluation, and models that stay on the device (trained with DP-SGD too).
"""
import functools
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from fedxr_jax.core import transforms
from fedxr_jax.errors import ConfigError
from fedxr_jax.core import noise


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
    raise ConfigError(f'privacy.example_clip must be > 0, got {clip_norm}')
  if noise_multiplier < 0:
    raise ConfigError(f'privacy.noise_multiplier must be >= 0, got {noise_multiplier}')
  if noise_multiplier > 0 and math.isinf(clip_norm):
    raise ConfigError('privacy.noise_multiplier > 0 needs a finite privacy.example_clip')

  def grad_fn(params, batch, key, *args):
    clipped, _ = clipped_example_grads(loss_fn, params, batch, clip_norm, *args,
                                       mask_key=mask_key)
    summed = jax.tree.map(lambda g: jnp.sum(g, axis=0), clipped)
    if noise_multiplier > 0:
      summed = noise.add_gaussian_noise(summed, noise_multiplier * clip_norm, key)
    size = jax.tree.leaves(batch)[0].shape[0]
    return loss_fn(params, batch, *args), jax.tree.map(lambda g: g / size, summed)

  return grad_fn


def clipped_example_grads(loss_fn: Callable, params, batch, clip_norm, *args,
                          mask_key: str = 'example_mask') -> tuple:
  """(per-example gradients [B, ...] scaled to norm <= clip_norm, their norms before).

  Each is the gradient of loss_fn on a batch of that one example; a padded
  example's (batch[mask_key] False) is zero.
  """
  size = jax.tree.leaves(batch)[0].shape[0]

  def example_grad(example):
    one = jax.tree.map(lambda x: x[None], example)
    return jax.grad(lambda p: loss_fn(p, one, *args)[0])(params)

  grads = jax.vmap(example_grad)(batch)
  norms = jax.vmap(transforms.global_norm)(grads)
  scale = jnp.where(norms > clip_norm, clip_norm / jnp.where(norms > 0, norms, 1.0), 1.0)
  valid = (batch[mask_key].astype(bool) if isinstance(batch, dict) and mask_key in batch
           else jnp.ones((size,), bool))

  def clip(g):
    s = scale.reshape((size,) + (1,) * (g.ndim - 1))
    # where, not a product: a padded example's garbage (even NaN) must vanish.
    return jnp.where(valid.reshape(s.shape), g * s.astype(g.dtype), 0)

  return jax.tree.map(clip, grads), norms


def local_grads(*, clip_norm: float, noise_multiplier: float) -> Callable:
  """The `private_grads` hook of `core.local.make_local_update`.

  hook(data_loss, regularizer) -> grad_fn(params, batch, key) -> ((loss, aux), grads):
  the private gradient of data_loss(params, batch) -> (loss, aux) plus the
  exact gradient of regularizer(params) (None: none), which reads no data;
  loss includes the regularizer, as without DP.
  """
  private = functools.partial(private_value_and_grad, clip_norm=clip_norm,
                              noise_multiplier=noise_multiplier)
  private(lambda p, b: (0.0, {}))   # the checks, now rather than at trace time

  def hook(data_loss: Callable, regularizer: Optional[Callable]) -> Callable:
    data_grad = private(data_loss)

    def grad_fn(params, batch, key):
      (loss, aux), grads = data_grad(params, batch, key)
      if regularizer is not None:
        reg, reg_grads = jax.value_and_grad(regularizer)(params)
        loss, grads = loss + reg, jax.tree.map(jnp.add, grads, reg_grads)
      return (loss, aux), grads

    return grad_fn

  return hook
