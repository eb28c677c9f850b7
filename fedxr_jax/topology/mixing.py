"""Consensus mixing over an edge list, traceable inside jit and vmap.

Every leaf of a tree is stacked over nodes, [n, ...]. One mixing step is
x_i <- W_ii x_i + sum_{j->i} W_ij x_j: a gather over senders and a
segment_sum over receivers, so memory is O(E x params), never n x n. Edge
lists come from `graphs.pad_edges` (fixed capacity plus a mask), so a graph
that changes between rounds reuses the same compiled program.
"""
from typing import Any, Optional

import jax
import jax.numpy as jnp

from fedxr_jax.errors import ConfigError

PyTree = Any


def mix_edges(tree: PyTree, senders: jax.Array, receivers: jax.Array,
              edge_weights: jax.Array, self_weights: jax.Array,
              edge_mask: Optional[jax.Array] = None) -> PyTree:
  """One mixing step: self_weights * x + segment_sum(w_e * x[senders]).

  Masked edges (edge_mask False) contribute nothing. Leaves keep their dtype;
  the weighted sum runs in at least float32 so bfloat16 leaves lose no mass.
  """
  num_nodes = self_weights.shape[0]
  if edge_mask is not None:
    edge_weights = jnp.where(edge_mask, edge_weights, 0.0)

  def mix(x):
    if x.shape[:1] != (num_nodes,):
      raise ConfigError(f'every leaf must be stacked over {num_nodes} nodes, '
                        f'got a leaf of shape {x.shape}')
    compute = jnp.promote_types(x.dtype, jnp.float32)
    tail = (1,) * (x.ndim - 1)
    xc = x.astype(compute)
    incoming = edge_weights.astype(compute).reshape((-1,) + tail) * xc[senders]
    mixed = (self_weights.astype(compute).reshape((-1,) + tail) * xc
             + jax.ops.segment_sum(incoming, receivers, num_segments=num_nodes))
    return mixed.astype(x.dtype)

  return jax.tree.map(mix, tree)


def mh_weights_from_edges(senders: jax.Array, receivers: jax.Array,
                          edge_mask: Optional[jax.Array], num_nodes: int
                          ) -> tuple[jax.Array, jax.Array]:
  """(edge_weights [E], self_weights [n]) float32 Metropolis-Hastings weights.

  Computed in jax from a (possibly masked, padded) edge list whose live edges
  come in both directions, so the weights follow a changing graph without
  recompiling. Degrees count live edges only; a node with none keeps
  self weight 1.
  """
  live = (jnp.ones(senders.shape, jnp.float32) if edge_mask is None
          else edge_mask.astype(jnp.float32))
  degrees = jax.ops.segment_sum(live, senders, num_segments=num_nodes)
  edge_weights = live / (1.0 + jnp.maximum(degrees[senders], degrees[receivers]))
  self_weights = 1.0 - jax.ops.segment_sum(edge_weights, receivers,
                                           num_segments=num_nodes)
  return edge_weights, self_weights


def gossip(tree: PyTree, senders: jax.Array, receivers: jax.Array,
           edge_mask: Optional[jax.Array], num_nodes: int, steps) -> PyTree:
  """`steps` rounds of Metropolis-Hastings mixing (D-PSGD gossip, gamma = steps).

  steps may be a Python int or a traced integer: the loop is a
  `lax.fori_loop` either way, so changing it need not recompile.
  """
  edge_weights, self_weights = mh_weights_from_edges(senders, receivers,
                                                     edge_mask, num_nodes)
  step = lambda _, x: mix_edges(x, senders, receivers, edge_weights,
                                self_weights)
  return jax.lax.fori_loop(0, steps, step, tree)


def mix_dense(tree: PyTree, w: jax.Array) -> PyTree:
  """Reference mixing with a dense [n, n] matrix: x <- W x along axis 0."""

  def mix(x):
    compute = jnp.promote_types(x.dtype, jnp.float32)
    mixed = jnp.tensordot(w.astype(compute), x.astype(compute), axes=1,
                          precision=jax.lax.Precision.HIGHEST)
    return mixed.astype(x.dtype)

  return jax.tree.map(mix, tree)
