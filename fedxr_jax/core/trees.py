"""Tree operations over stacked client pytrees (leading client axis)."""
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

PyTree = Any


def split_by_role(params: Mapping, role_of: Callable[[tuple], str]) -> dict:
  """Splits a nested param dict into {role: nested dict} by each leaf's path.

  Every role tree keeps the leaves' full paths, so `merge_roles` is a plain union.
  """
  roles: dict[str, dict] = {}
  for path, leaf in traverse_util.flatten_dict(params).items():
    roles.setdefault(role_of(path), {})[path] = leaf
  return {r: traverse_util.unflatten_dict(flat) for r, flat in roles.items()}


def merge_roles(*trees: Mapping) -> dict:
  """Inverse of `split_by_role`: the union of role trees."""
  flat = {}
  for tree in trees:
    flat.update(traverse_util.flatten_dict(tree))
  return traverse_util.unflatten_dict(flat)


def expand_weight(w, x):
  """A module weight over the leading axes of `x`, shaped to broadcast against it.

  A scalar weight (per client: [C]) covers a whole module; a weight with
  more axes ([C, E], e.g. tokens routed to each of E stacked experts, or one
  weight per LoRA rank) weighs each slice along `x`'s leading axes.
  """
  return w.reshape(w.shape + (1,) * (x.ndim - w.ndim))


def masked_weighted_mean(stacked: PyTree, weights: jax.Array,
                         fallback: PyTree) -> PyTree:
  """sum_i w_i x_i / sum_i w_i over the leading axis; `fallback` where sum w = 0."""
  total = jnp.sum(weights, axis=0)
  safe = jnp.where(total > 0, total, 1.0)

  def mean(x, old):
    avg = jnp.sum(expand_weight(weights, x) * x, axis=0) / expand_weight(safe, old)
    return jnp.where(expand_weight(total, old) > 0, avg, old).astype(old.dtype)

  return jax.tree.map(mean, stacked, fallback)


def aggregate_modules(stacked: PyTree, weights: PyTree, fallback: PyTree) -> PyTree:
  """Masked module averaging.

  `weights` is a prefix of `stacked` whose leaves are [C] weights: every
  subtree under a weight leaf is one module, averaged only over clients with
  positive weight, and kept at `fallback` when no client holds it.
  """
  return jax.tree.map(lambda w, x, old: masked_weighted_mean(x, w, old),
                      weights, stacked, fallback)


def tree_bytes(tree: PyTree) -> int:
  """Bytes of a (non-stacked) tree, from shapes and dtypes."""
  return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize
                 for x in jax.tree.leaves(tree)))


def broadcast_to_clients(tree: PyTree, num_clients: int) -> PyTree:
  return jax.tree.map(
      lambda x: jnp.broadcast_to(x, (num_clients,) + x.shape), tree)


def where_tree(pred, on_true: PyTree, on_false: PyTree) -> PyTree:
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def squared_distance(params: dict, anchor: dict) -> jax.Array:
  """sum ||params[r] - anchor[r]||^2 over the roles of `anchor`."""
  sq = [jnp.sum((p - a) ** 2) for p, a in zip(
      jax.tree.leaves({r: params[r] for r in anchor}), jax.tree.leaves(anchor))]
  return sum(sq, jnp.zeros(()))


def shapes(tree: PyTree):
  """(structure, ((shape, dtype), ...)) of a tree: equal for trees one program takes."""
  return (jax.tree.structure(tree),
          tuple((tuple(x.shape), str(x.dtype)) for x in jax.tree.leaves(tree)))
