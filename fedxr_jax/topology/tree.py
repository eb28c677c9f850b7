"""Spanning-tree relaying (Fed-Span / HF-FM module relaying).

The cohort's D2D graph is covered by a minimum spanning forest (by
distance), rooted at each component's node nearest the base station.
(w x, w) flow child -> parent level by level from the deepest; each root
then holds its component's sums and uplinks them, and the server adds the
roots: exact, equal to the centralized average (tested). The model comes
back down the same hops.
"""
import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.core import topology as topology_lib
from fedxr_jax.topology import channel as channel_lib
from fedxr_jax.topology import consensus
from fedxr_jax.topology import costs as costs_lib
from fedxr_jax.topology import graphs
from fedxr_jax.topology import layout as layout_lib


def up_the_forest(sums, parent, depth):
  """Adds every node's sums into its parent, deepest level first."""
  num_nodes = parent.shape[0]
  up = jnp.where(parent >= 0, parent, jnp.arange(num_nodes))

  def level(i, sums):
    d = jnp.max(depth) - i
    moving = (depth == d) & (parent >= 0)
    def push(x):
      m = moving.reshape(moving.shape + (1,) * (x.ndim - 1))
      sent = jnp.where(m, x, 0.0)
      return x - sent + jax.ops.segment_sum(sent, up, num_segments=num_nodes)
    return jax.tree.map(push, sums)

  return jax.lax.fori_loop(0, jnp.max(depth), level, sums)


def make(*, facts, geography, channel: channel_lib.Channel,
         d2d: layout_lib.D2D) -> topology_lib.Topology:
  d2d.validate(facts.cohort_size, kind='tree')
  cohort_graphs = layout_lib.CohortGraphs(d2d, facts.cohort_size, facts.seed)
  station = np.full(2, geography.area_m / 2, np.float32)

  def layout(round_idx, cohort):
    rng = layout_lib.round_rng(facts.seed, round_idx)
    pos = geography.positions(cohort, round_idx)
    graph = cohort_graphs.fail_links(cohort_graphs.graph(pos), rng)
    labels, stats = layout_lib.graph_stats(graph)
    roots = [int(np.flatnonzero(labels == c)[np.argmin(np.linalg.norm(
        pos[labels == c] - station, axis=-1))]) for c in range(labels.max() + 1)]
    _, parent, depth = graphs.minimum_spanning_forest(
        graph, graphs.edge_distances(graph, pos), roots=roots)
    stats['graph/tree_depth'] = int(depth.max())
    return {'positions': pos, 'parent': parent, 'depth': depth}, stats

  def aggregate(shared, state, uploads, topo, round_idx, aggregator, aggregator_state, key):
    del round_idx, aggregator, key
    clients = uploads.stacked
    parent, depth = topo['parent'], topo['depth']
    roots = (parent < 0).astype(jnp.float32)
    target = {}
    for r in shared:
      sums = (consensus.scale(clients.weights[r], clients.model[r]), clients.weights[r])
      num, den = up_the_forest(sums, parent, depth)
      total_num = jax.tree.map(lambda x: jnp.tensordot(roots, x, axes=1), num)
      total_den = jax.tree.map(lambda d: jnp.tensordot(roots, d, axes=1), den)
      target[r] = consensus.ratio(total_num, total_den, shared[r])
    model_bits = costs_lib.model_bits(shared)
    child = parent >= 0
    bits = {'hop': jnp.where(child, model_bits, 0.0), 'root': jnp.where(child, 0.0, model_bits)}
    return topology_lib.Aggregated(target, state, jnp.array(True), bits, {}, aggregator_state)

  def costs(devices, bits, topo, key, sync):
    del sync
    pos, parent, depth = topo['positions'], topo['parent'], topo['depth']
    num = pos.shape[0]
    radio = costs_lib.cellular(channel, devices, pos, jnp.broadcast_to(station, pos.shape), key)
    child = parent >= 0
    par = jnp.where(child, parent, jnp.arange(num))
    hop_rate = channel_lib.shannon_rate(
        channel, jnp.linalg.norm(pos - pos[par], axis=-1), channel.d2d_bandwidth_hz,
        radio.tx_power_dbm, channel_lib.rayleigh_power_gain(radio.d2d_key, (num,)))
    t_hop = channel_lib.airtime(bits['hop'], hop_rate)   # same rate both ways
    t_root_up = channel_lib.airtime(bits['root'], radio.up_rate)
    t_root_down = channel_lib.airtime(bits['root'], radio.down_rate)
    watts = channel_lib.dbm_to_watts(radio.tx_power_dbm)
    energy = radio.energy + watts * (t_hop + t_root_up)
    energy = energy + jax.ops.segment_sum(watts[par] * t_hop, par, num_segments=num)
    hops = jnp.max(depth).astype(jnp.float32)
    latency = (jnp.max(radio.compute_s) + 2 * hops * jnp.max(t_hop) + jnp.max(t_root_up)
               + jnp.max(t_root_down))
    totals = {'d2d': 2.0 * jnp.sum(bits['hop']), 'uplink': jnp.sum(bits['root']),
              'downlink': jnp.sum(bits['root'])}
    return costs_lib.summary(totals, latency, energy, radio.compute_s)

  return topology_lib.Topology(
      kind='tree', layout=layout, init=lambda shared, template: {},
      client_start=lambda shared, state, topo: None, aggregate=aggregate,
      after_server=lambda shared, state, sync: state, costs=costs)
