"""SCAFFOLD (Karimireddy et al. 2020), option II control variates.

Local step: x <- x - lr (g(x) - c_i + c). After K local steps:
c_i+ = c_i - c + (w - x) / (K lr); server: c <- c + |S|/P mean_i (c_i+ - c_i).
Needs plain local SGD (the update rule assumes it) and a central server.
"""
import jax
import jax.numpy as jnp

from fedxr_jax.core import algorithm as algorithm_lib
from fedxr_jax.errors import ConfigError


def scaffold(facts) -> algorithm_lib.Algorithm:
  if facts.client_optimizer != 'sgd' or facts.client_momentum:
    raise ConfigError('algorithm.name=scaffold needs client_optimizer.name=sgd '
                      'without momentum')
  lr = float(facts.client_learning_rate)
  zeros = lambda shared: jax.tree.map(jnp.zeros_like, shared)

  def correct_grads(grads, client_state, server_state):
    fix = jax.tree.map(jnp.subtract, server_state, client_state)
    return {**grads, **{r: jax.tree.map(jnp.add, grads[r], fix[r]) for r in fix}}

  def update_client_state(client_state, server_state, anchor, trained, steps):
    scale = 1.0 / (jnp.maximum(steps, 1) * lr)
    new = jax.tree.map(lambda ci, c, w, x: ci - c + (w - x) * scale,
                       client_state, server_state, anchor,
                       {r: trained[r] for r in anchor})
    # A client that ran no step learned nothing about its drift.
    return jax.tree.map(lambda n, o: jnp.where(steps > 0, n, o), new, client_state)

  def update_server_state(server_state, update):
    return jax.tree.map(lambda c, d: c + update.fraction * d, server_state,
                        update.mean_change)

  return algorithm_lib.Algorithm(
      'scaffold', zeros, zeros, algorithm_lib.no_regularizer, correct_grads,
      update_client_state, update_server_state, needs_server=True)
