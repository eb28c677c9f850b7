"""Coordination topologies: equivalences, exact bit counts, no retracing, bad input."""
import chex
import jax
import numpy as np
import pytest

from fedxr_jax.core import trees
from fedxr_jax.errors import ConfigError
from fedxr_jax.training import experiment
from helpers import assert_trees_close, run_rounds

REASSOCIATION = dict(rtol=1e-5, atol=1e-6)


def _config(config, kind, **topology):
  config.topology.kind = kind
  for key, value in topology.items():
    config.topology[key] = value
  return config


def _shared_after(config, rounds=2):
  server, _, metrics = run_rounds(experiment.build(config), rounds)
  return server.shared, metrics


@pytest.fixture
def centralized(config):
  return _shared_after(config.copy_and_resolve_references())[0]


def test_hierarchical_with_k2_one_equals_centralized(config, centralized):
  shared, metrics = _shared_after(_config(config, 'hierarchical', k2=1, num_clusters=3))
  assert_trees_close(shared, centralized, **REASSOCIATION)
  assert float(metrics[0]['comm/backhaul_bits']) > 0


def test_hierarchical_cloud_waits_k2_rounds(config):
  exp = experiment.build(_config(config, 'hierarchical', k2=2, num_clusters=2))
  server, _, _ = run_rounds(exp, 1)
  initial = jax.jit(exp.federation.init)(exp.world)[0]
  # Round 1 is an edge round: the cloud model has not moved, the edges have.
  chex.assert_trees_all_equal(server.shared, initial.shared)
  assert not np.allclose(server.topology['edges']['prompts']['prompts'][0],
                         initial.shared['prompts']['prompts'])


def test_semi_with_many_consensus_steps_equals_centralized(config, centralized):
  shared, metrics = _shared_after(_config(config, 'semi', graph='ring', gamma=200,
                                          num_clusters=2, cluster_by='id'))
  assert_trees_close(shared, centralized, **REASSOCIATION)
  assert float(metrics[0]['comm/d2d_bits']) > 0


def test_semi_with_one_step_differs_from_centralized(config, centralized):
  shared, _ = _shared_after(_config(config, 'semi', graph='ring', gamma=1,
                                    num_clusters=2, cluster_by='id'))
  assert not np.allclose(shared['prompts']['prompts'], centralized['prompts']['prompts'])


def test_tree_aggregation_is_exact(config, centralized):
  shared, metrics = _shared_after(_config(config, 'tree', d2d_range_m=60.0))
  assert_trees_close(shared, centralized, **REASSOCIATION)
  assert float(metrics[0]['comm/d2d_bits']) > 0


def test_decentralized_on_a_complete_graph_is_fedavg(config, centralized):
  # Metropolis-Hastings on the complete graph is W = 1/n everywhere: one
  # gossip step gives every client the weighted average.
  config.population_size = config.cohort_size
  shared_c = _shared_after(config.copy_and_resolve_references())[0]
  exp = experiment.build(_config(config, 'decentralized', graph='complete', gamma=1))
  server, _, metrics = run_rounds(exp, 2)
  assert_trees_close(server.shared, shared_c, **REASSOCIATION)
  models = server.topology['models']
  for leaf, mean in zip(jax.tree.leaves(models), jax.tree.leaves(server.shared)):
    np.testing.assert_allclose(leaf, np.broadcast_to(mean, leaf.shape), **REASSOCIATION)
  assert float(metrics[-1]['consensus/distance']) < 1e-8


def test_decentralized_gossip_reduces_consensus_distance(config):
  config.population_size = config.cohort_size
  distances = []
  for gamma in (1, 8):
    cfg = _config(config.copy_and_resolve_references(), 'decentralized',
                  graph='ring', gamma=gamma)
    distances.append(float(_shared_after(cfg, rounds=1)[1][0]['consensus/distance']))
  assert distances[1] < distances[0]


def test_bit_counts_are_tree_sizes_times_links(config):
  # Every client has every sensor and no dropout: each holds every module
  # except the absent tokens (never used), and uplinks exactly those bytes.
  config.data.devices = ('apple_vision_pro',)
  config.data.modality_dropout = 0.0
  exp = experiment.build(config)
  server, _, metrics = run_rounds(exp, 1)
  shared = server.shared
  absent = shared['encoders']['encoders']['absent']
  per_client = 8 * (sum(trees.tree_bytes(t) for t in shared.values())
                    - trees.tree_bytes(absent))
  assert float(metrics[0]['comm/uplink_bits']) == config.cohort_size * per_client
  assert float(metrics[0]['comm/downlink_bits']) == config.cohort_size * per_client

  semi = experiment.build(_config(config, 'semi', graph='ring', gamma=3,
                                  num_clusters=1, cluster_by='id'))
  _, _, metrics = run_rounds(semi, 1)
  links = config.cohort_size   # one ring over the whole cohort: n links, 2n directions
  assert float(metrics[0]['comm/d2d_bits']) == 3 * 2 * links * per_client
  assert float(metrics[0]['comm/uplink_bits']) == per_client   # one representative


def test_round_traces_once_while_the_graph_changes(config):
  config.data.walk_m_per_round = 20.0
  exp = experiment.build(_config(config, 'semi', d2d_range_m=40.0, num_clusters=2,
                                 d2d_fallback='ring', link_failure_prob=0.3))
  fed = exp.federation
  server, clients, frozen = fed.init(exp.world)
  round_fn = jax.jit(chex.assert_max_traces(fed.round, n=1))
  graphs = []
  for r in range(4):
    topo, _ = exp.layout(r)
    graphs.append(np.asarray(topo['edge_mask']).copy())
    server, clients, _ = round_fn(server, clients, frozen, exp.world, topo)
  assert any(not np.array_equal(graphs[0], g) for g in graphs[1:])


def test_layout_is_a_pure_function_of_seed_and_round(config):
  config.data.walk_m_per_round = 5.0
  config.population_size = config.cohort_size
  cfg = _config(config, 'decentralized', link_failure_prob=0.2, d2d_range_m=50.0)
  a, b = experiment.build(cfg).layout, experiment.build(cfg).layout
  for r in (3, 0, 3):
    chex.assert_trees_all_equal(a(r)[0], b(r)[0])
  assert not np.array_equal(a(0)[0]['positions'], a(3)[0]['positions'])


@pytest.mark.parametrize('change, message', [
    (dict(kind='semi', num_clusters=9), 'more than the 8 clients'),
    (dict(kind='semi', gamma=0), 'gamma must be >= 1'),
    (dict(kind='hierarchical', k2=0), 'k2 must be >= 1'),
    (dict(kind='decentralized'), 'set cohort_size = population_size'),
    (dict(kind='gossip'), 'is not one of'),
    (dict(kind='semi', graph='geometric', d2d_range_m=0.01, num_clusters=1),
     'no D2D link within 0.01 m'),
])
def test_impossible_topologies_fail_clearly(config, change, message):
  with pytest.raises(ConfigError, match=message):
    exp = experiment.build(_config(config, **change))
    exp.layout(0)


def test_semi_with_chunked_clients_and_personal_heads(config):
  # Mixing works on chunked client axes and never touches personal trees.
  config.plan.heads = 'personal'
  cfg = _config(config, 'semi', graph='ring', gamma=2, num_clusters=2, cluster_by='id')
  a, clients_a, _ = run_rounds(experiment.build(cfg), 2)
  cfg.chunk_size = 4
  b, clients_b, _ = run_rounds(experiment.build(cfg), 2)
  assert 'heads' not in a.shared
  assert_trees_close(a.shared, b.shared, **REASSOCIATION)
  assert_trees_close(clients_a.personal, clients_b.personal, **REASSOCIATION)


def test_nearest_peer_graph_matches_brute_force():
  from fedxr_jax.topology import layout
  pos = np.random.default_rng(0).uniform(0, 100, (120, 2))
  k, radius = 5, 20.0
  d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
  np.fill_diagonal(d, np.inf)
  near = [{j for j in np.argsort(d[i])[:k] if d[i, j] <= radius} for i in range(len(pos))]
  expected = sorted((i, j) for i in range(len(pos)) for j in near[i]
                    if i < j and i in near[j])
  graph = layout.nearest_peer_graph(pos, radius, k)
  assert sorted(map(tuple, graph.undirected_edges().tolist())) == expected
  assert graph.degrees().max() <= k
