"""Norm bounding (Sun et al. 2019, "Can you really backdoor federated learning?").

The server scales each client's update to norm <= M (over the coordinates
the client holds), x_i' = x_i - (1 - s_i) u_i with s_i = min(1, M / ||u_i||),
and takes the masked example-weighted mean of the x_i'. Each client is
bounded alone, so this runs on the streamed path (no [C, ...] stack); a
client within the bound is sent exactly as it came.
"""
import jax
import jax.numpy as jnp

from fedxr_jax.core import aggregation
from fedxr_jax.core import held
from fedxr_jax.errors import ConfigError


def bounded_model(client: aggregation.ClientUpdate, max_norm: float) -> dict:
  """One client's sent model with its update scaled to norm <= max_norm."""
  norm = jnp.sqrt(held.sq_norm(client.weights, client.update, lead=0))
  shrink = 1.0 - jnp.minimum(1.0, max_norm / jnp.where(norm > 0, norm, 1.0))
  return jax.tree.map(lambda x, u: (x - shrink * u).astype(x.dtype),
                      client.model, client.update)


def norm_bounding(max_norm: float = 1.0) -> aggregation.Aggregator:
  """The weighted mean of the clients' models after bounding each update's norm."""
  if max_norm <= 0:
    raise ConfigError(f'aggregator.norm_bounding.max_norm must be > 0, got {max_norm}')

  def contribute(client):
    return aggregation.weighted_terms(bounded_model(client, max_norm), client.weights)

  def aggregate(shared, state, sums, key):
    del key
    target = {r: aggregation.ratio_modules(sums[r][0], sums[r][1], shared[r]) for r in shared}
    return target, state, {}

  return aggregation.Aggregator('norm_bounding', aggregate, contribute)
