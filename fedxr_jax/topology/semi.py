"""Semi-decentralized (TT-HF, Lin et al. 2021): gamma D2D consensus steps
inside clusters, then one representative per cluster uplinks.

Clusters: the nearest of num_clusters grid centres, the device class, or the
id modulo num_clusters. Each cluster's D2D graph is built on its own members
(geometric from positions, ring or complete); a cluster without any D2D
link is an error unless fallback='ring'. The server weighs representative
c by cluster size x its consensus weight, so gamma -> inf equals the
centralized average (tested with gamma = 200 on rings).
"""
import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.core import topology as topology_lib
from fedxr_jax.core import trees
from fedxr_jax.errors import ConfigError
from fedxr_jax.topology import channel as channel_lib
from fedxr_jax.topology import consensus
from fedxr_jax.topology import costs as costs_lib
from fedxr_jax.topology import graphs
from fedxr_jax.topology import layout as layout_lib

CLUSTER_BY = ('position', 'device', 'id')
FALLBACKS = ('none', 'ring')
GRAPHS = ('geometric', 'ring', 'complete')


def _check(facts, d2d, gamma, num_clusters, cluster_by, fallback):
  if gamma < 1:
    raise ConfigError(f'topology.semi.gamma must be >= 1, got {gamma}')
  if not 1 <= num_clusters <= facts.cohort_size:
    raise ConfigError(f'topology.semi.num_clusters={num_clusters} must be in [1, '
                      f'the {facts.cohort_size} clients of a round]')
  if cluster_by not in CLUSTER_BY:
    raise ConfigError(f'topology.semi.cluster_by={cluster_by!r} is not one of {CLUSTER_BY}')
  if fallback not in FALLBACKS:
    raise ConfigError(f'topology.semi.fallback={fallback!r} is not one of {FALLBACKS}')
  d2d.validate(facts.cohort_size, allowed=GRAPHS, kind='semi')


def make(*, facts, geography, channel: channel_lib.Channel, d2d: layout_lib.D2D,
         gamma: int = 2, num_clusters: int = 4, cluster_by: str = 'position',
         fallback: str = 'none') -> topology_lib.Topology:
  _check(facts, d2d, gamma, num_clusters, cluster_by, fallback)
  centers = layout_lib.grid_points(num_clusters, geography.area_m)
  capacity = layout_lib.CohortGraphs(d2d, facts.cohort_size, facts.seed).capacity

  def clusters(cohort, pos):
    if cluster_by == 'position':
      return layout_lib.nearest_center(pos, centers)
    if cluster_by == 'device':
      return (geography.devices(cohort) % num_clusters).astype(np.int32)
    return (cohort % num_clusters).astype(np.int32)

  def intra_cluster(pos, cluster, round_idx):
    """The D2D graph of each cluster on its own members, joined."""
    pairs = []
    for c in range(num_clusters):
      members = np.flatnonzero(cluster == c)
      m = len(members)
      if m < 2:
        continue
      if d2d.graph == 'geometric':
        local = layout_lib.nearest_peer_graph(pos[members], d2d.range_m, d2d.max_neighbors)
        if local.num_edges == 0:
          if fallback == 'none':
            raise ConfigError(
                f'round {round_idx}: cluster {c} has {m} clients and no D2D link '
                f'within {d2d.range_m} m; raise topology.d2d.range_m or '
                "set topology.semi.fallback='ring'")
          local = layout_lib.small_ring(m)
      elif d2d.graph == 'ring':
        local = layout_lib.small_ring(m)
      else:
        local = graphs.complete(m)
      pairs.extend(members[local.undirected_edges()].tolist())
    return graphs.from_edge_list(len(cluster), [tuple(p) for p in pairs])

  def layout(round_idx, cohort):
    rng = layout_lib.round_rng(facts.seed, round_idx)
    pos = geography.positions(cohort, round_idx)
    cluster = clusters(cohort, pos)
    graph = intra_cluster(pos, cluster, round_idx)
    if d2d.link_failure_prob > 0:
      graph = graphs.drop_links(graph, d2d.link_failure_prob, rng)
    _, stats = layout_lib.graph_stats(graph)
    senders, receivers, mask = graphs.pad_edges(graph, capacity)
    size = np.bincount(cluster, minlength=num_clusters)
    reps = np.zeros(num_clusters, np.int32)
    for c in np.flatnonzero(size):
      reps[c] = rng.choice(np.flatnonzero(cluster == c))
    return {'positions': pos, 'senders': senders, 'receivers': receivers,
            'edge_mask': mask, 'cluster': cluster, 'representatives': reps,
            'cluster_size': size.astype(np.int32), 'cluster_live': size > 0}, stats

  def aggregate(shared, state, uploads, topo, round_idx, aggregator, aggregator_state, key):
    del round_idx, aggregator, key
    clients = uploads.stacked
    mixed, den = consensus.consensus_per_role(shared, clients.model, clients.weights, topo,
                                              gamma)
    reps, live = topo['representatives'], topo['cluster_live']
    size = topo['cluster_size'].astype(jnp.float32) * live
    target = {}
    for r in shared:
      rep_models = jax.tree.map(lambda x: x[reps], mixed[r])
      rep_weights = jax.tree.map(
          lambda d: d[reps] * trees.expand_weight(size, d[reps]), den[r])
      target[r] = trees.aggregate_modules(rep_models, rep_weights, shared[r])
    live_edges = topo['edge_mask']
    bits = {'d2d_edge': jnp.where(live_edges, uploads.upload_bits[topo['senders']], 0.0),
            'uplink': jnp.where(live, uploads.upload_bits[reps], 0.0),
            'downlink': uploads.download_bits}
    return topology_lib.Aggregated(target, state, jnp.array(True), bits, {},
                                   aggregator_state)

  def costs(devices, bits, topo, key, sync):
    del sync
    radio, latency, energy = costs_lib.gossip(channel, devices, bits['d2d_edge'], topo, key,
                                              gamma, geography.area_m)
    reps, rep_live = topo['representatives'], topo['cluster_live']
    t_up = jnp.where(rep_live, channel_lib.airtime(bits['uplink'], radio.up_rate[reps]), 0.0)
    energy = energy.at[reps].add(channel_lib.dbm_to_watts(radio.tx_power_dbm[reps]) * t_up)
    t_down = channel_lib.airtime(bits['downlink'], radio.down_rate)
    latency = latency + jnp.max(t_up) + jnp.max(t_down)
    totals = {'d2d': gamma * jnp.sum(bits['d2d_edge']), 'uplink': jnp.sum(bits['uplink']),
              'downlink': jnp.sum(bits['downlink'])}
    return costs_lib.summary(totals, latency, energy, radio.compute_s)

  return topology_lib.Topology(
      kind='semi', layout=layout, init=lambda shared, template: {},
      client_start=lambda shared, state, topo: None, aggregate=aggregate,
      after_server=lambda shared, state, sync: state, costs=costs)
