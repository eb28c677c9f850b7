"""Coordinate-wise median (Yin et al. 2018), over the clients that hold a module.

Each coordinate of a module is the median of the values of the clients
that give it positive weight; with per-slice weights [C, E] each slice has
its own holders. Weights only decide who holds a module: every holder
counts once, so a client cannot buy influence by claiming more examples.
An even number of holders takes the mean of the two middle values; a
coordinate nobody holds keeps its value.
"""
import jax.numpy as jnp

from fedxr_jax.aggregators import _sorted
from fedxr_jax.core import aggregation


def masked_median(x, w, old):
  """Median over holders of x [C, ...] (weight leaf w), `old` where none holds."""
  values, n = _sorted.sorted_holders(x, w)
  last = x.shape[0] - 1
  lo = jnp.take_along_axis(values, jnp.clip((n - 1) // 2, 0, last)[None], axis=0)[0]
  hi = jnp.take_along_axis(values, jnp.clip(n // 2, 0, last)[None], axis=0)[0]
  return jnp.where(n > 0, (lo + hi) / 2, old).astype(old.dtype)


def median() -> aggregation.Aggregator:
  """The coordinate-wise median of the sent models (stacked path)."""

  def aggregate(shared, state, stacked, key):
    del key
    return aggregation.per_module(masked_median, stacked, shared), state, {}

  return aggregation.Aggregator('median', aggregate, robust=True)
