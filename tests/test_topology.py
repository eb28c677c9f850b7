"""Coordination topologies on the tiny problem: equivalences, exact bit counts,
no retracing, every graph combination, bad input."""
import itertools

import chex
import jax
import numpy as np
import pytest

from fedxr_jax.errors import ConfigError
from fedxr_jax.topology import layout
import tiny
from helpers import assert_trees_close, run_rounds

REASSOCIATION = dict(rtol=1e-5, atol=1e-6)
BODY_BITS, HEAD_BITS = 8 * 4 * 4 * 3, 8 * 4 * 3   # w [4, 3], b [3], float32


def _shared(rounds=2, **kw):
  server, _, metrics = run_rounds(tiny.setup(**kw), rounds)
  return server.shared, metrics


@pytest.fixture(scope='module')
def centralized():
  return _shared()[0]


def test_hierarchical_with_k2_one_equals_centralized(centralized):
  shared, metrics = _shared(kind='hierarchical', topology=dict(num_edges=3, k2=1))
  assert_trees_close(shared, centralized, **REASSOCIATION)
  assert float(metrics[0]['comm/backhaul_bits']) > 0


def test_hierarchical_cloud_waits_k2_rounds():
  setup = tiny.setup(kind='hierarchical', topology=dict(num_edges=2, k2=2))
  server, _, metrics = run_rounds(setup, 1)
  initial = jax.jit(setup.federation.init)(setup.world, setup.key)[0]
  # Round 1 is an edge round: the cloud model has not moved, the edges have,
  # and nothing crossed the backhaul.
  chex.assert_trees_all_equal(server.shared, initial.shared)
  assert not np.allclose(server.topology['edges']['body']['w'][0],
                         initial.shared['body']['w'])
  assert float(metrics[0]['comm/backhaul_bits']) == 0.0


def test_semi_with_many_consensus_steps_equals_centralized(centralized):
  shared, metrics = _shared(kind='semi', d2d=dict(graph='ring'),
                            topology=dict(gamma=200, num_clusters=2, cluster_by='id'))
  assert_trees_close(shared, centralized, **REASSOCIATION)
  assert float(metrics[0]['comm/d2d_bits']) > 0


def test_semi_with_one_step_differs_from_centralized(centralized):
  shared, _ = _shared(kind='semi', d2d=dict(graph='ring'),
                      topology=dict(gamma=1, num_clusters=2, cluster_by='id'))
  assert not np.allclose(shared['body']['w'], centralized['body']['w'])


def test_tree_aggregation_is_exact(centralized):
  shared, metrics = _shared(kind='tree', d2d=dict(range_m=60.0))
  assert_trees_close(shared, centralized, **REASSOCIATION)
  assert float(metrics[0]['comm/d2d_bits']) > 0


def test_decentralized_on_a_complete_graph_is_fedavg(centralized):
  # Metropolis-Hastings on the complete graph is W = 1/n everywhere: one
  # gossip step gives every client the weighted average.
  server, _, metrics = run_rounds(tiny.setup(kind='decentralized', d2d=dict(graph='complete'),
                                             topology=dict(gamma=1)), 2)
  assert_trees_close(server.shared, centralized, **REASSOCIATION)
  for leaf, mean in zip(jax.tree.leaves(server.topology['models']),
                        jax.tree.leaves(server.shared)):
    np.testing.assert_allclose(leaf, np.broadcast_to(mean, leaf.shape), **REASSOCIATION)
  assert float(metrics[-1]['consensus/distance']) < 1e-8


def test_gossip_at_population_scale_trains_and_mixes_only_the_cohort():
  setup = tiny.setup(kind='decentralized', population=24, cohort=8, d2d=dict(graph='ring'))
  server, _, _ = run_rounds(setup, 1)
  before = jax.jit(setup.federation.init)(setup.world, setup.key)[0].topology['models']
  after = server.topology['models']
  cohort = np.asarray(setup.plan(0)[0].cohort)
  moved = np.flatnonzero(np.any(np.asarray(after['body']['w'] != before['body']['w']),
                                axis=(1, 2)))
  assert moved.tolist() == sorted(cohort.tolist())
  # The reported model is the mean over the whole population.
  np.testing.assert_allclose(server.shared['body']['w'],
                             np.asarray(after['body']['w']).mean(0), rtol=1e-6)


def test_a_device_that_trains_nothing_neither_sends_nor_mixes():
  # Budget 0 sits a client out (available=False is the same: no step, weight 0).
  setup = tiny.setup(kind='decentralized', population=6, cohort=6, budgets=[2, 2, 2, 2, 2, 2],
                     d2d=dict(graph='complete'))
  fed = setup.federation
  server, clients, frozen = jax.jit(fed.init)(setup.world, setup.key)
  world = dict(setup.world, num_examples=setup.world['num_examples'].at[2].set(0))
  plan = setup.plan(0)[0]
  new, _, metrics = jax.jit(fed.round)(server, clients, frozen, world, plan)
  for leaf_new, leaf_old in zip(jax.tree.leaves(new.topology['models']),
                                jax.tree.leaves(server.topology['models'])):
    np.testing.assert_array_equal(np.asarray(leaf_new)[2], np.asarray(leaf_old)[2])
  # A complete graph on the 5 others: 5 * 4 directed links, gamma = 2 steps.
  per_client = BODY_BITS + HEAD_BITS * (np.asarray(world['device'])[:6] == 0)
  expected = 2 * sum(4 * per_client[i] for i in range(6) if i != 2)
  assert float(metrics['comm/d2d_bits']) == expected


def test_decentralized_gossip_reduces_consensus_distance():
  distances = [float(_shared(rounds=1, kind='decentralized', d2d=dict(graph='ring'),
                             topology=dict(gamma=gamma))[1][0]['consensus/distance'])
               for gamma in (1, 8)]
  assert distances[1] < distances[0]


def _held_bits(setup, round_idx=0):
  """Per cohort client: bits of the modules it holds (body always, head on device 0)."""
  plan, _ = setup.plan(round_idx)
  device = np.asarray(setup.world['device'])[plan.cohort]
  return BODY_BITS + HEAD_BITS * (device == 0), plan


def test_bit_counts_are_tree_sizes_times_links():
  setup = tiny.setup()
  per_client, _ = _held_bits(setup)
  metrics = run_rounds(setup, 1)[2][0]
  assert float(metrics['comm/uplink_bits']) == per_client.sum()
  assert float(metrics['comm/downlink_bits']) == per_client.sum()

  semi = tiny.setup(kind='semi', d2d=dict(graph='ring'),
                    topology=dict(gamma=3, num_clusters=1, cluster_by='id'))
  per_client, plan = _held_bits(semi)
  metrics = run_rounds(semi, 1)[2][0]
  # One ring over the whole cohort: each client sends to its 2 neighbours, 3 times.
  assert float(metrics['comm/d2d_bits']) == 3 * 2 * per_client.sum()
  rep = plan.topo['representatives'][0]
  assert float(metrics['comm/uplink_bits']) == per_client[rep]   # one representative
  assert float(metrics['comm/downlink_bits']) == per_client.sum()


def test_downlink_counts_modules_a_budget_never_updated():
  # FedRep trains the personal head for 2 steps, then the shared body: the
  # clients with budgets 1 and 2 never reach the body, so they upload no
  # body, but they downloaded it to train their heads.
  setup = tiny.setup(population=4, cohort=4, local_steps=4, budgets=[4, 1, 2, 4],
                     plan={'body': 'shared', 'head': 'personal'}, algorithm='fedrep',
                     algorithm_settings=dict(head_steps=2, head_roles=('head',)))
  metrics = run_rounds(setup, 1)[2][0]
  assert float(metrics['comm/uplink_bits']) == 2 * BODY_BITS
  assert float(metrics['comm/downlink_bits']) == 4 * BODY_BITS


def test_round_traces_once_while_the_graph_changes():
  setup = tiny.setup(kind='semi', walk_m_per_round=15.0,
                     d2d=dict(range_m=40.0, link_failure_prob=0.3),
                     topology=dict(num_clusters=2, fallback='ring'))
  fed = setup.federation
  server, clients, frozen = fed.init(setup.world, setup.key)
  round_fn = jax.jit(chex.assert_max_traces(fed.round, n=1))
  masks = []
  for r in range(4):
    plan, _ = setup.plan(r)
    masks.append(np.asarray(plan.topo['edge_mask']).copy())
    server, clients, _ = round_fn(server, clients, frozen, setup.world, plan)
  assert any(not np.array_equal(masks[0], m) for m in masks[1:])


def test_layout_is_a_pure_function_of_seed_and_round():
  kw = dict(kind='decentralized', walk_m_per_round=5.0,
            d2d=dict(link_failure_prob=0.2, range_m=50.0))
  a, b = tiny.setup(**kw), tiny.setup(**kw)
  for r in (3, 0, 3):
    chex.assert_trees_all_equal(a.plan(r)[0], b.plan(r)[0])
  assert not np.array_equal(a.plan(0)[0].topo['positions'], a.plan(3)[0].topo['positions'])


@pytest.mark.parametrize('kw, message', [
    (dict(kind='semi', topology=dict(num_clusters=9)), r'in \[1, the 8 clients'),
    (dict(kind='semi', topology=dict(gamma=0)), 'gamma must be >= 1'),
    (dict(kind='hierarchical', topology=dict(k2=0)), 'k2 must be >= 1'),
    (dict(kind='gossip'), 'is not one of'),
    (dict(kind='semi', d2d=dict(graph='torus')), 'not supported yet'),
    (dict(kind='tree', d2d=dict(graph='k_regular', degree=8)), 'cannot make a regular'),
    (dict(kind='semi', topology=dict(wrong=1)), r"has no setting\(s\) \['wrong'\]"),
    (dict(kind='semi', d2d=dict(range_m=0.01), topology=dict(num_clusters=1)),
     'no D2D link within 0.01 m'),
])
def test_impossible_topologies_fail_clearly(kw, message):
  with pytest.raises(ConfigError, match=message):
    tiny.setup(**{'cohort': 8, **kw}).plan(0)


GRAPHS = ('geometric', 'ring', 'torus', 'erdos_renyi', 'k_regular', 'complete')


@pytest.mark.parametrize('kind, graph', list(itertools.product(
    ('semi', 'decentralized', 'tree'), GRAPHS)))
def test_every_topology_and_graph_runs_or_is_refused_up_front(kind, graph):
  try:
    setup = tiny.setup(kind=kind, d2d=dict(graph=graph, range_m=60.0),
                       topology=dict(fallback='ring', num_clusters=2) if kind == 'semi'
                       else None)
  except ConfigError as e:
    assert 'not supported yet' in str(e), e
    return
  server, _, metrics = run_rounds(setup, 1)
  assert np.isfinite(float(metrics[0]['train/loss']))
  assert int(server.round) == 1


def test_semi_with_chunked_clients_and_personal_heads():
  # Mixing works on chunked client axes and never touches personal trees.
  kw = dict(kind='semi', d2d=dict(graph='ring'), plan={'body': 'shared', 'head': 'personal'},
            topology=dict(gamma=2, num_clusters=2, cluster_by='id'))
  a, clients_a, _ = run_rounds(tiny.setup(**kw), 2)
  b, clients_b, _ = run_rounds(tiny.setup(chunk_size=4, **kw), 2)
  assert 'head' not in a.shared
  assert_trees_close(a.shared, b.shared, **REASSOCIATION)
  assert_trees_close(clients_a.personal, clients_b.personal, **REASSOCIATION)


def test_nearest_peer_graph_matches_brute_force():
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
