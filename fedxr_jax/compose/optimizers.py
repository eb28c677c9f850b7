"""Client and server optimizers from their config blocks.

Server optimizers step on the pseudo-gradient (global - target), which is
FedOpt (Reddi et al. 2021): sgd (lr 1 = FedAvg; momentum = FedAvgM), adam,
yogi and adagrad. FedAdam and FedYogi are optax's, which bias-correct the
moments, unlike the paper's printed pseudo-code; FedAdagrad is the paper's
own: v_0 = tau^2, v <- v + g^2, x <- x - lr m / (sqrt(v) + tau), with
m <- b1 m + (1 - b1) g (b1 = 0: plain Adagrad).
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedxr_jax.errors import ConfigError

OPTIMIZERS = ('sgd', 'adam', 'yogi', 'adagrad')


class ReddiAdagradState(NamedTuple):
  momentum: optax.Updates
  accumulator: optax.Updates


def scale_by_reddi_adagrad(b1: float = 0.0, tau: float = 1e-3) -> optax.GradientTransformation:
  """FedAdagrad's preconditioner (Reddi et al. 2021, Algorithm 2)."""

  def init(params):
    return ReddiAdagradState(jax.tree.map(jnp.zeros_like, params),
                             jax.tree.map(lambda p: jnp.full_like(p, tau ** 2), params))

  def update(updates, state, params=None):
    del params
    momentum = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.momentum, updates)
    accumulator = jax.tree.map(lambda v, g: v + g * g, state.accumulator, updates)
    scaled = jax.tree.map(lambda m, v: m / (jnp.sqrt(v) + tau), momentum, accumulator)
    return scaled, ReddiAdagradState(momentum, accumulator)

  return optax.GradientTransformation(init, update)


def make(cfg, where: str) -> optax.GradientTransformation:
  """The optimizer of a `client_optimizer` / `server_optimizer` block.

  Its learning rate lives in its state (`optax.inject_hyperparams`:
  `state.hyperparams['learning_rate']`, float32), data rather than a
  constant of the compiled round, so another rate reuses the executable.
  The other settings (momentum, b1, b2, eps) stay constants.
  """
  lr = cfg.learning_rate
  if lr <= 0:
    raise ConfigError(f'{where}.learning_rate must be > 0, got {lr}')
  return optax.inject_hyperparams(_factory(cfg, where), hyperparam_dtype=jnp.float32)(
      learning_rate=lr)


def _factory(cfg, where: str):
  """learning_rate -> the block's optimizer."""
  name = cfg.name
  if name == 'sgd':
    momentum = cfg.get('momentum') or None
    return lambda learning_rate: optax.sgd(learning_rate, momentum=momentum)
  b1, b2, eps = cfg.get('b1', 0.9), cfg.get('b2', 0.99), cfg.get('eps', 1e-3)
  if name == 'adam':
    return lambda learning_rate: optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)
  if name == 'yogi':
    return lambda learning_rate: optax.yogi(learning_rate, b1=b1, b2=b2, eps=eps)
  if name == 'adagrad':
    if where == 'server_optimizer':
      b1 = cfg.get('b1', 0.0)
      return lambda learning_rate: optax.chain(scale_by_reddi_adagrad(b1=b1, tau=eps),
                                               optax.scale(-learning_rate))
    return lambda learning_rate: optax.adagrad(learning_rate, eps=eps)
  raise ConfigError(f'{where}.name={name!r} is not one of {OPTIMIZERS}')
