"""FedProx (Li et al. 2020): local loss + mu/2 ||x - w||^2 over the shared trees."""
import jax
import jax.numpy as jnp

from fedxr_jax.algorithms import base
from fedxr_jax.errors import ConfigError


def fedprox(config) -> base.Algorithm:
  mu = float(config.algorithm.prox_mu)
  if mu < 0:
    raise ConfigError(f'algorithm.prox_mu must be >= 0, got {mu}')

  def regularizer(params, anchor):
    sq = [jnp.sum((p - a) ** 2) for p, a in zip(
        jax.tree.leaves({r: params[r] for r in anchor}), jax.tree.leaves(anchor))]
    return 0.5 * mu * sum(sq, jnp.zeros(()))

  return base.Algorithm('fedprox', base.no_state, base.no_state, regularizer,
                        base.keep_grads, base.keep_client_state, base.keep_server_state)
