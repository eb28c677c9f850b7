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
  """The optimizer of a `client_optimizer` / `server_optimizer` block."""
  name, lr = cfg.name, cfg.learning_rate
  if lr <= 0:
    raise ConfigError(f'{where}.learning_rate must be > 0, got {lr}')
  if name == 'sgd':
    return optax.sgd(lr, momentum=cfg.get('momentum') or None)
  if name == 'adam':
    return optax.adam(lr, b1=cfg.get('b1', 0.9), b2=cfg.get('b2', 0.99),
                      eps=cfg.get('eps', 1e-3))
  if name == 'yogi':
    return optax.yogi(lr, b1=cfg.get('b1', 0.9), b2=cfg.get('b2', 0.99),
                      eps=cfg.get('eps', 1e-3))
  if name == 'adagrad':
    if where == 'server_optimizer':
      return optax.chain(scale_by_reddi_adagrad(b1=cfg.get('b1', 0.0),
                                                tau=cfg.get('eps', 1e-3)),
                         optax.scale(-lr))
    return optax.adagrad(lr, eps=cfg.get('eps', 1e-3))
  raise ConfigError(f'{where}.name={name!r} is not one of {OPTIMIZERS}')
