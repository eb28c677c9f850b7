"""Client and server optimizers by (role, name), each entry with its own settings.

  client_optimizer = {name, learning_rate, sgd: {momentum}, adam: {b1, b2, eps}, ...}
  server_optimizer = {name, learning_rate, sgd: {momentum}, adam: {...}, adagrad: {...}}

Server optimizers step on the pseudo-gradient (global - target), which is
FedOpt (Reddi et al. 2021): sgd (lr 1 = FedAvg; momentum = FedAvgM), adam,
yogi and adagrad. FedAdam and FedYogi are optax's, which bias-correct the
moments, unlike the paper's printed pseudo-code; the server's adagrad is
FedAdagrad, the paper's own: v_0 = tau^2, v <- v + g^2, x <- x - lr m /
(sqrt(v) + tau), with m <- b1 m + (1 - b1) g (b1 = 0: plain Adagrad). A
client's adagrad is optax's. Each entry's defaults are its factory's
keyword defaults (the config blocks are read from them).

The learning rate lives in the optimizer's state (`optax.inject_hyperparams`:
`state.hyperparams['learning_rate']`, float32), data rather than a constant
of the compiled round, so another rate reuses the executable; the other
settings stay constants.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedxr_jax.core import lr_schedule
from fedxr_jax.core import registry
from fedxr_jax.errors import ConfigError

ROLES = {'client_optimizer': 'client', 'server_optimizer': 'server'}


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


def sgd(learning_rate, *, momentum: float = 0.0):
  return optax.sgd(learning_rate, momentum=momentum or None)


def adam(learning_rate, *, b1: float = 0.9, b2: float = 0.99, eps: float = 1e-3):
  return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)


def yogi(learning_rate, *, b1: float = 0.9, b2: float = 0.99, eps: float = 1e-3):
  return optax.yogi(learning_rate, b1=b1, b2=b2, eps=eps)


def adagrad(learning_rate, *, eps: float = 1e-3):
  return optax.adagrad(learning_rate, eps=eps)


def fed_adagrad(learning_rate, *, b1: float = 0.9, eps: float = 1e-3):
  """FedAdagrad with momentum b1 and tau = eps (Reddi et al. 2021)."""
  return optax.chain(scale_by_reddi_adagrad(b1=b1, tau=eps), optax.scale(-learning_rate))


OPTIMIZERS = {
    ('client', 'sgd'): sgd,
    ('client', 'adam'): adam,
    ('client', 'yogi'): yogi,
    ('client', 'adagrad'): adagrad,
    ('server', 'sgd'): sgd,
    ('server', 'adam'): adam,
    ('server', 'yogi'): yogi,
    ('server', 'adagrad'): fed_adagrad,
}


def names(role: str) -> tuple:
  return tuple(n for r, n in OPTIMIZERS if r == role)


def make(block, where: str) -> optax.GradientTransformation:
  """The optimizer of a `client_optimizer` / `server_optimizer` block."""
  role = ROLES[where]
  lr = block.learning_rate
  if not lr > 0:
    raise ConfigError(f'{where}.learning_rate must be > 0, got {lr}')
  factory = registry.pick({n: OPTIMIZERS[role, n] for n in names(role)}, block.name,
                          f'{where}.name')
  own = dict(block[block.name] or {})
  unknown = sorted(set(own) - set(registry.settings(factory)))
  if unknown:
    raise ConfigError(f'{where}.{block.name} has no setting(s) {unknown}')
  return optax.inject_hyperparams(lambda learning_rate: factory(learning_rate, **own),
                                  hyperparam_dtype=jnp.float32)(learning_rate=lr)


def schedule(config) -> lr_schedule.Schedule:
  """The client learning rate's schedule (`client_optimizer.schedule`; rounds 0: the
  run's num_rounds)."""
  block = config.client_optimizer.schedule
  return lr_schedule.make(block.kind, block.rounds or config.num_rounds,
                          block.final_fraction, 'client_optimizer.schedule')
