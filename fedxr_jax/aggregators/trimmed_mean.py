"""Coordinate-wise trimmed mean (Yin et al. 2018), over the holders of a module.

Per coordinate, of the n clients that hold it (weight > 0; per slice for
[C, E] weights), the floor(beta * n) largest and smallest values are
dropped and the rest averaged, each holder counting once (weights decide
only who holds a module, as in `median`). n changes with the module and the
round, so the trim is counted per coordinate; beta < 1/2 always leaves at
least one value. A coordinate nobody holds keeps its value.
"""
import jax.numpy as jnp

from fedxr_jax.aggregators import _sorted
from fedxr_jax.core import aggregation
from fedxr_jax.errors import ConfigError

# beta * n is rounded down; this keeps e.g. 0.42 * 150 = 62.999996 (float32) at 63.
_ROUNDING = 1e-4


def masked_trimmed_mean(x, w, old, beta):
  values, n = _sorted.sorted_holders(x, w)
  trim = jnp.floor(beta * n + _ROUNDING).astype(jnp.int32)
  rank = _sorted.ranks(values)
  keep = (rank >= trim) & (rank < n - trim)
  total = jnp.sum(jnp.where(keep, values, 0.0), axis=0)
  mean = total / jnp.maximum(n - 2 * trim, 1)
  return jnp.where(n > 0, mean, old).astype(old.dtype)


def trimmed_mean(beta: float = 0.1) -> aggregation.Aggregator:
  """Drops the beta fraction of largest and of smallest values per coordinate."""
  if not 0.0 <= beta < 0.5:
    raise ConfigError(f'aggregator.trimmed_mean.beta must be in [0, 0.5), got {beta}')

  def aggregate(shared, state, stacked, key):
    del key
    fn = lambda x, w, old: masked_trimmed_mean(x, w, old, beta)
    return aggregation.per_module(fn, stacked, shared), state, {}

  return aggregation.Aggregator('trimmed_mean', aggregate, robust=True)
