"""FedProx (Li et al. 2020): local loss + mu/2 ||x - w||^2 over the shared trees."""
from fedxr_jax.algorithms import base
from fedxr_jax.errors import ConfigError


def fedprox(config) -> base.Algorithm:
  mu = float(config.algorithm.prox_mu)
  if mu < 0:
    raise ConfigError(f'algorithm.prox_mu must be >= 0, got {mu}')

  def regularizer(params, anchor, client_state, server_state):
    del client_state, server_state
    return 0.5 * mu * base.squared_distance(params, anchor)

  return base.plain('fedprox')._replace(regularizer=regularizer)
