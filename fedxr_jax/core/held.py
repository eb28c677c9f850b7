"""Which coordinates of an update a client holds, from its module weights.

A module weight leaf covers the leaves under it in the weight prefix tree
(see `trees.expand_weight`): a scalar the whole module, extra axes one
slice each. A coordinate is held where its weight is > 0. Every helper
takes `lead`, the number of leading client axes of the arrays: 0 for one
client (inside a vmapped transform), 1 for a stack [C, ...] (an aggregator).
"""
from typing import Callable

import jax
import jax.numpy as jnp

from fedxr_jax.core import trees


def mask(w, x) -> jax.Array:
  """Bool shaped like `x`: True on the coordinates whose weight is > 0."""
  return jnp.broadcast_to(trees.expand_weight(w, x) > 0, x.shape)


def map_modules(fn: Callable, weights: dict, *role_trees: dict) -> dict:
  """fn(w, *leaves) on every leaf, with `w` the weight leaf of its module.

  `weights` is {role: prefix tree}; the result has the roles and structure
  of `role_trees[0]`.
  """
  return {r: jax.tree.map(lambda w, *subs: jax.tree.map(lambda *xs: fn(w, *xs), *subs),
                          weights[r], *(t[r] for t in role_trees))
          for r in role_trees[0]}


def _reduce(x, lead):
  return jnp.sum(x.reshape(x.shape[:lead] + (-1,)), axis=-1)


def sq_norm(weights: dict, tree: dict, lead: int) -> jax.Array:
  """Squared L2 norm over the held coordinates of `tree` (per client if lead=1)."""
  parts = map_modules(
      lambda w, x: _reduce(jnp.where(mask(w, x), jnp.square(x.astype(jnp.float32)), 0.0),
                           lead), weights, tree)
  return sum(jax.tree.leaves(parts), jnp.zeros((), jnp.float32))


def count(weights: dict, tree: dict, lead: int) -> jax.Array:
  """Held coordinates of `tree` (per client if lead=1), float32."""
  parts = map_modules(lambda w, x: _reduce(mask(w, x).astype(jnp.float32), lead),
                      weights, tree)
  return sum(jax.tree.leaves(parts), jnp.zeros((), jnp.float32))


def holds_any(weights: dict, lead: int) -> jax.Array:
  """Whether a client holds any module (or slice) at all (per client if lead=1)."""
  flags = [jnp.any((w > 0).reshape(w.shape[:lead] + (-1,)), axis=-1)
           for w in jax.tree.leaves(weights)]
  return jnp.any(jnp.stack(flags), axis=0) if flags else jnp.zeros((), bool)


def payload_bits(weights: dict, tree: dict) -> jax.Array:
  """Bits of one client's held coordinates of `tree` at their own dtype."""
  parts = map_modules(
      lambda w, x: jnp.sum(mask(w, x)).astype(jnp.float32) * 8 * x.dtype.itemsize,
      weights, tree)
  return sum(jax.tree.leaves(parts), jnp.zeros((), jnp.float32))
