"""Longitudinal behaviour drift: each client's change rounds, a pure function of it.

A client's behaviour changes at rounds r_1 < r_2 < ... (gaps ~ Geometric(rate),
mean 1 / rate rounds, at most `max_events` of them). Between changes its
data is fixed; at a change its style and class priors are drawn afresh (the
segment index keys them). `drift_event` at round r is the ground truth of a
drift detector: True exactly at the change rounds.
"""
import jax.numpy as jnp

_MAX_GAP = 1 << 26   # keeps the cumulative sum inside int32


def event_rounds(u, rate: float):
  """Change rounds [max_events] int32 from uniforms u [max_events] in (0, 1)."""
  gaps = 1.0 + jnp.floor(jnp.log(u) / jnp.log1p(-rate))
  return jnp.cumsum(jnp.minimum(gaps, _MAX_GAP).astype(jnp.int32))


def segment(events, round_idx):
  """Changes up to and including `round_idx` (int32)."""
  return jnp.sum(events <= jnp.asarray(round_idx, jnp.int32)).astype(jnp.int32)


def is_event(events, round_idx):
  return jnp.any(events == jnp.asarray(round_idx, jnp.int32))
