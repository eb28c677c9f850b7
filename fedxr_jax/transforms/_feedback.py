"""Error feedback (Seide et al. 2014; Karimireddy et al. 2019) for biased compressors.

The residual (what compression dropped) is per-client state, added to the
next update before compressing. Only held coordinates take part: a module
the client does not send this round neither uses nor changes its residual.
"""
import jax
import jax.numpy as jnp

from fedxr_jax.core import held


def init(shared: dict) -> dict:
  return jax.tree.map(lambda x: jnp.zeros(x.shape, jnp.float32), shared)


def masks(weights: dict, update: dict) -> dict:
  """{role: tree of bool}: the coordinates the client holds."""
  return held.map_modules(held.mask, weights, update)


def corrected(update: dict, residual, mask: dict) -> dict:
  """update + residual on held coordinates, float32 (residual=None: no feedback)."""
  if residual is None:
    return jax.tree.map(lambda u: u.astype(jnp.float32), update)
  return jax.tree.map(lambda u, e, m: u.astype(jnp.float32) + jnp.where(m, e, 0.0),
                      update, residual, mask)


def residual(full: dict, sent: dict, old, mask: dict) -> dict:
  """full - sent on held coordinates, the old residual elsewhere."""
  return jax.tree.map(lambda c, s, e, m: jnp.where(m, c - s, e), full, sent, old, mask)


def outgoing(sent: dict, update: dict, mask: dict) -> dict:
  """The update to upload: `sent` on held coordinates; the rest as it was (never sent)."""
  return jax.tree.map(lambda s, u, m: jnp.where(m, s, u).astype(u.dtype), sent, update, mask)
