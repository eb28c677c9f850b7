"""Coordinate-wise order statistics over the holders of a module."""
import jax
import jax.numpy as jnp

from fedxr_jax.core import held


def sorted_holders(x, w):
  """(values sorted over clients with non-holders last, holders per coordinate).

  x: [C, ...] a module's leaf stacked over clients; w: its weight leaf [C]
  or [C, E] (then each slice has its own holders). Non-holders sort as
  +inf, so rank r < n is the r-th smallest held value.
  """
  mine = held.mask(w, x)
  values = jnp.sort(jnp.where(mine, x.astype(jnp.float32), jnp.inf), axis=0)
  return values, jnp.sum(mine, axis=0, dtype=jnp.int32)


def ranks(values):
  """The client-axis rank of every entry of `values`, broadcastable to it."""
  return jax.lax.broadcasted_iota(jnp.int32, values.shape, 0)
