"""Hierarchical (HierFAVG): edge servers average their clients every round,
the cloud averages edge models every k2 rounds.

Edge servers sit on a grid over the area; a client joins the nearest one
each round. The cloud weighs each edge by the module weight it gathered
since the last cloud round, so with k2 = 1 the cloud model is the
centralized average (tested); the server optimizer steps on cloud rounds only.
"""
import jax
import jax.numpy as jnp

from fedxr_jax.core import topology as topology_lib
from fedxr_jax.core import trees
from fedxr_jax.errors import ConfigError
from fedxr_jax.topology import channel as channel_lib
from fedxr_jax.topology import consensus
from fedxr_jax.topology import costs as costs_lib
from fedxr_jax.topology import layout as layout_lib
from fedxr_jax.topology.centralized import star_costs


def make(*, facts, geography, channel: channel_lib.Channel, num_edges: int = 4,
         k2: int = 2) -> topology_lib.Topology:
  if num_edges < 1:
    raise ConfigError(f'topology.hierarchical.num_edges must be >= 1, got {num_edges}')
  if num_edges > facts.cohort_size:
    raise ConfigError(f'topology.hierarchical.num_edges={num_edges} is more than the '
                      f'{facts.cohort_size} clients of a round')
  if k2 < 1:
    raise ConfigError(f'topology.hierarchical.k2 must be >= 1, got {k2}')
  centers = layout_lib.grid_points(num_edges, geography.area_m)

  def layout(round_idx, cohort):
    pos = geography.positions(cohort, round_idx)
    return {'positions': pos, 'cluster': layout_lib.nearest_center(pos, centers),
            'edge_positions': centers}, {}

  def init(shared, weight_template):
    return {'edges': trees.broadcast_to_clients(shared, num_edges),
            'pending': {r: jax.tree.map(
                lambda w: jnp.zeros((num_edges,) + w.shape, jnp.float32),
                weight_template[r]) for r in shared}}

  def client_start(shared, state, topo):
    del shared
    return jax.tree.map(lambda x: x[topo['cluster']], state['edges'])

  def aggregate(shared, state, uploads, topo, round_idx, aggregator, aggregator_state, key):
    del aggregator, key
    clients = uploads.stacked
    edges, gathered = {}, {}
    for r in shared:
      edges[r], gathered[r] = consensus.segment_average(
          clients.model[r], clients.weights[r], topo['cluster'], num_edges,
          state['edges'][r])
    pending = jax.tree.map(jnp.add, state['pending'], gathered)
    sync = (round_idx + 1) % k2 == 0
    target = {r: trees.aggregate_modules(edges[r], pending[r], shared[r]) for r in shared}
    model_bits = costs_lib.model_bits(shared)
    bits = {'uplink': uploads.upload_bits, 'downlink': uploads.download_bits,
            'backhaul': jnp.where(sync, 2.0 * num_edges * model_bits, 0.0),
            'model': model_bits}
    return topology_lib.Aggregated(target, {'edges': edges, 'pending': pending}, sync,
                                   bits, {}, aggregator_state)

  def after_server(shared, state, sync):
    # After a cloud round every edge restarts from the new cloud model.
    cloud = trees.broadcast_to_clients(shared, num_edges)
    return {'edges': trees.where_tree(sync, cloud, state['edges']),
            'pending': jax.tree.map(lambda p: jnp.where(sync, 0.0, p), state['pending'])}

  def costs(devices, bits, topo, key, sync):
    station = topo['edge_positions'][topo['cluster']]
    _, latency, energy = star_costs(channel, devices, bits, topo['positions'], station, key)
    latency = latency + jnp.where(sync, 2.0 * bits['model'] / channel.backhaul_bps, 0.0)
    totals = {'uplink': jnp.sum(bits['uplink']), 'downlink': jnp.sum(bits['downlink']),
              'backhaul': bits['backhaul']}
    return costs_lib.summary(totals, latency, energy, devices['compute_s'])

  return topology_lib.Topology(
      kind='hierarchical', layout=layout, init=init, client_start=client_start,
      aggregate=aggregate, after_server=after_server, costs=costs)
