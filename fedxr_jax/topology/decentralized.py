"""Fully decentralized (D-PSGD gossip): no server; each client trains its own
model, then gamma Metropolis-Hastings gossip steps over the live D2D links.

Every device of the population keeps its own model (stacked over the
population: memory = population x one model; 10^5 users of the default
model's shared trees are ~3 GB). A round's cohort (every device when cohort
= population) gathers its members' models, trains them, and gossips over
the live links among its ACTIVE members only (a device that trained nothing
this round, e.g. unavailable, neither sends nor mixes: it keeps its model);
the mixed models go back to their owners. The reported global model is the
plain mean over the population; `consensus/distance` is the mean squared
distance to it; evaluation uses each client's own model.
"""
import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.core import held
from fedxr_jax.core import topology as topology_lib
from fedxr_jax.core import trees
from fedxr_jax.errors import ConfigError
from fedxr_jax.topology import channel as channel_lib
from fedxr_jax.topology import consensus
from fedxr_jax.topology import costs as costs_lib
from fedxr_jax.topology import layout as layout_lib


def make(*, facts, geography, channel: channel_lib.Channel, d2d: layout_lib.D2D,
         gamma: int = 2) -> topology_lib.Topology:
  if gamma < 1:
    raise ConfigError(f'topology.decentralized.gamma must be >= 1, got {gamma}')
  d2d.validate(facts.cohort_size, kind='decentralized')
  graphs = layout_lib.CohortGraphs(d2d, facts.cohort_size, facts.seed)
  num_clients = facts.population_size

  def layout(round_idx, cohort):
    rng = layout_lib.round_rng(facts.seed, round_idx)
    pos = geography.positions(cohort, round_idx)
    graph = graphs.fail_links(graphs.graph(pos), rng)
    _, stats = layout_lib.graph_stats(graph)
    return {'positions': pos, 'cohort': cohort.astype(np.int32), **graphs.padded(graph)}, stats

  def client_start(shared, state, topo):
    del shared
    return jax.tree.map(lambda x: x[topo['cohort']], state['models'])

  def aggregate(shared, state, uploads, topo, round_idx, aggregator, aggregator_state, key):
    del round_idx, aggregator, key
    clients = uploads.stacked
    active = held.holds_any(clients.weights, 1)
    s, r = topo['senders'], topo['receivers']
    topo = {**topo, 'edge_mask': topo['edge_mask'] & active[s] & active[r]}
    mixed = consensus.consensus_per_role(shared, clients.model, clients.weights, topo,
                                         gamma)[0]
    models = jax.tree.map(lambda all_, new: all_.at[topo['cohort']].set(new),
                          state['models'], mixed)
    mean = jax.tree.map(lambda x: jnp.mean(x, axis=0), models)
    distance = sum(jnp.sum((x - m) ** 2) for x, m in zip(
        jax.tree.leaves(models), jax.tree.leaves(mean))) / num_clients
    bits = {'d2d_edge': jnp.where(topo['edge_mask'], uploads.upload_bits[s], 0.0)}
    return topology_lib.Aggregated(mean, {'models': models}, jnp.array(True), bits,
                                   {'consensus/distance': distance}, aggregator_state)

  def costs(devices, bits, topo, key, sync):
    del sync
    radio, latency, energy = costs_lib.gossip(channel, devices, bits['d2d_edge'], topo, key,
                                              gamma, geography.area_m)
    return costs_lib.summary({'d2d': gamma * jnp.sum(bits['d2d_edge'])}, latency, energy,
                             radio.compute_s)

  return topology_lib.Topology(
      kind='decentralized', layout=layout,
      init=lambda shared, template: {'models': trees.broadcast_to_clients(shared,
                                                                          num_clients)},
      client_start=client_start, aggregate=aggregate,
      after_server=lambda shared, state, sync: state, costs=costs,
      uses_server_optimizer=False,
      own_models=lambda state, client_ids: jax.tree.map(lambda x: x[client_ids],
                                                        state['models']))
