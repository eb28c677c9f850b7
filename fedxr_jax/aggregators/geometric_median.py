"""Geometric median by smoothed Weiszfeld (RFA, Pillutla et al. 2022).

Minimizes sum_i alpha_i max(nu, ||H_i (v - x_i)||) over the sent models
x_i, where H_i keeps the coordinates client i holds and alpha_i is its
module weight. One Weiszfeld step sets every module to the weighted mean of
its holders with weights w_i / max(nu, d_i), d_i the client's distance over
all it holds. With one scalar weight per client this is exactly RFA; with
per-module or per-slice ([C, E]) weights each module (slice) uses its own
w_i, i.e. the step of the objective whose alpha_i varies per module. A fixed
number of steps keeps it jittable; it starts from the weighted mean, and a
module nobody holds keeps its value.
"""
import jax
import jax.numpy as jnp

from fedxr_jax.core import aggregation
from fedxr_jax.core import held
from fedxr_jax.core import trees
from fedxr_jax.errors import ConfigError


def weiszfeld(stacked: aggregation.ClientUpdate, shared: dict, iterations: int,
              smoothing: float) -> dict:
  models, weights = stacked.model, stacked.weights

  def mean_with(scale):   # [C] client factors times module weights
    def one(w, sub, old):
      factor = scale.reshape(scale.shape + (1,) * (w.ndim - 1))
      return trees.masked_weighted_mean(sub, w * factor, old)
    return {r: jax.tree.map(one, weights[r], models[r], shared[r]) for r in shared}

  def step(_, v):
    diff = {r: jax.tree.map(lambda x, c: x.astype(jnp.float32) - c, models[r], v[r])
            for r in shared}
    dist = jnp.sqrt(held.sq_norm(weights, diff, lead=1))
    return mean_with(1.0 / jnp.maximum(dist, smoothing))

  size = stacked.client_id.shape[0]
  return jax.lax.fori_loop(0, iterations, step, mean_with(jnp.ones((size,), jnp.float32)))


def geometric_median(iterations: int = 8, smoothing: float = 1e-6) -> aggregation.Aggregator:
  """`iterations` smoothed Weiszfeld steps; `smoothing` is nu, a distance floor."""
  if iterations < 1:
    raise ConfigError(f'aggregator.geometric_median.iterations must be >= 1, got {iterations}')
  if smoothing <= 0:
    raise ConfigError(f'aggregator.geometric_median.smoothing must be > 0, got {smoothing}')

  def aggregate(shared, state, stacked, key):
    del key
    return weiszfeld(stacked, shared, iterations, smoothing), state, {}

  return aggregation.Aggregator('geometric_median', aggregate, robust=True)

