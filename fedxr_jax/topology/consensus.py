"""Weighted-average consensus over D2D links and per-group averages.

Masked modules under consensus: each module mixes `w x` and `w` with the same
weights and takes their ratio (weighted average consensus), so a module
converges to the example-weighted average of its holders, and a node that
does not hold a module takes its neighbours' consensus (or keeps its own).
"""
import jax

from fedxr_jax.core import aggregation
from fedxr_jax.topology import mixing

scale = aggregation.scale_modules
ratio = aggregation.ratio_modules


def weighted_consensus(models, weights, topo, steps):
  """`steps` MH gossip steps of (w x, w); returns (x, w) after mixing."""
  num, den = mixing.gossip((scale(weights, models), weights), topo['senders'],
                           topo['receivers'], topo['edge_mask'],
                           jax.tree.leaves(weights)[0].shape[0], steps)
  return ratio(num, den, models), den


def segment_average(models, weights, segments, num_segments, fallback):
  """Per-segment weighted module average [K, ...] and total weights [K]."""
  seg = lambda x: jax.ops.segment_sum(x, segments, num_segments=num_segments)
  num = jax.tree.map(seg, scale(weights, models))
  den = jax.tree.map(seg, weights)
  return ratio(num, den, fallback), den


def consensus_per_role(shared, models, weights, topo, steps):
  """weighted_consensus of every shared role: ({role: x}, {role: w})."""
  mixed, den = {}, {}
  for r in shared:
    mixed[r], den[r] = weighted_consensus(models[r], weights[r], topo, steps)
  return mixed, den
