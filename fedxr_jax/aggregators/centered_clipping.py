"""Centered clipping (Karimireddy, He and Jaggi 2021).

  v <- v + sum_i w_i clip(x_i - c - v, tau) / sum_i w_i,   L times,

over the sent models x_i, clip(z, tau) = z min(1, tau / ||z||). The norm of
client i is over everything it holds (one factor per client, as the paper
clips whole vectors); each module (per slice for [C, E] weights) then means
over its holders with their module weights. The center c + v starts at the
current global (center='global': v = 0) or at the global plus the previous
round's aggregated update (center='momentum': v = m, the server momentum
kept in the aggregator state, as the paper restarts from the last
aggregate). With a large tau the first step is the weighted mean. A module
nobody holds keeps its value (and its momentum).
"""
import jax
import jax.numpy as jnp

from fedxr_jax.core import aggregation
from fedxr_jax.core import held
from fedxr_jax.core import trees
from fedxr_jax.errors import ConfigError

CENTERS = ('global', 'momentum')


def _clipped_mean(w, scale, z):
  """(sum_i w_i s_i z_i / sum_i w_i, whether anyone holds) for one leaf z [C, ...]."""
  s = scale.reshape(scale.shape + (1,) * (w.ndim - 1))
  total = jnp.sum(jnp.broadcast_to(trees.expand_weight(w, z), z.shape), axis=0)
  num = jnp.sum(trees.expand_weight(w * s, z) * z, axis=0)
  return jnp.where(total > 0, num / jnp.where(total > 0, total, 1.0), 0.0), total > 0


def clip_steps(stacked: aggregation.ClientUpdate, shared: dict, v0: dict, tau: float,
               iterations: int):
  """(v after L steps, {role: bool tree} whether anyone holds each coordinate)."""
  weights = stacked.weights
  models = {r: jax.tree.map(lambda x: x.astype(jnp.float32), stacked.model[r])
            for r in shared}

  def step(_, v):
    diff = held.map_modules(lambda w, x, g, c: x - g - c, weights, models, shared, v)
    norm = jnp.sqrt(held.sq_norm(weights, diff, lead=1))
    scale = jnp.minimum(1.0, tau / jnp.where(norm > 0, norm, 1.0))
    return held.map_modules(lambda w, z, c: c + _clipped_mean(w, scale, z)[0],
                            weights, diff, v)

  v = jax.lax.fori_loop(0, iterations, step, v0)
  ones = jnp.ones(stacked.client_id.shape, jnp.float32)
  covered = held.map_modules(lambda w, x: _clipped_mean(w, ones, x)[1], weights, models)
  return v, covered


def centered_clipping(tau: float = 1.0, iterations: int = 3,
                      center: str = 'global') -> aggregation.Aggregator:
  """L = `iterations` clipped steps of radius `tau` from `center`."""
  if tau <= 0:
    raise ConfigError(f'aggregator.centered_clipping.tau must be > 0, got {tau}')
  if iterations < 1:
    raise ConfigError(f'aggregator.centered_clipping.iterations must be >= 1, got {iterations}')
  if center not in CENTERS:
    raise ConfigError(f'aggregator.centered_clipping.center must be one of {CENTERS}, '
                      f'got {center!r}')
  momentum = center == 'momentum'

  def init(shared):
    zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, jnp.float32), shared)
    return {'momentum': zeros} if momentum else {}

  def aggregate(shared, state, stacked, key):
    del key
    v0 = state['momentum'] if momentum else jax.tree.map(
        lambda x: jnp.zeros(x.shape, jnp.float32), shared)
    v, covered = clip_steps(stacked, shared, v0, tau, iterations)
    target = jax.tree.map(lambda g, c, h: jnp.where(h, g + c, g).astype(g.dtype),
                          shared, v, covered)
    if momentum:
      state = {'momentum': jax.tree.map(jnp.where, covered, v, v0)}
    return target, state, {}

  return aggregation.Aggregator('centered_clipping', aggregate, init=init)
