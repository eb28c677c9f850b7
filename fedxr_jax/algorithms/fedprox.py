"""FedProx (Li et al. 2020): local loss + mu/2 ||x - w||^2 over the shared trees.

mu lives in the algorithm's server state: data, not a constant of the
compiled round, so another mu reuses the compiled executable.
"""
import jax.numpy as jnp

from fedxr_jax.core import algorithm as algorithm_lib
from fedxr_jax.core import trees
from fedxr_jax.errors import ConfigError


def fedprox(facts, *, mu: float = 0.0) -> algorithm_lib.Algorithm:
  del facts
  if mu < 0:
    raise ConfigError(f'algorithm.fedprox.mu must be >= 0, got {mu}')

  def init_server_state(shared):
    del shared
    return {'mu': jnp.float32(mu)}

  def regularizer(params, anchor, client_state, server_state):
    del client_state
    return 0.5 * server_state['mu'] * trees.squared_distance(params, anchor)

  return algorithm_lib.plain('fedprox', init_server_state=init_server_state,
                             regularizer=regularizer)
