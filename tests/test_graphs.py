"""Topologies: graph builders, Metropolis-Hastings mixing, gossip, spanning forests."""
import chex
import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

from fedxr_jax.errors import ConfigError
from fedxr_jax.topology import graphs
from fedxr_jax.topology import mixing

# Two float32 roundings of the same sums in different orders.
FLOAT32 = dict(rtol=1e-6, atol=1e-6)


def _rgg(n=64, area=100.0, radius=30.0, seed=0):
  positions = graphs.random_positions(n, area, np.random.default_rng(seed))
  return graphs.random_geometric(positions, radius), positions


def _two_rings_and_a_loner():
  # Nodes 0..4: a 5-ring; 5..8: a 4-ring; 9: isolated.
  pairs = [(i, (i + 1) % 5) for i in range(5)]
  pairs += [(5 + i, 5 + (i + 1) % 4) for i in range(4)]
  return graphs.from_edge_list(10, pairs)


def _mh_matrix(graph):
  return graphs.dense_mixing_matrix(graph,
                                    *graphs.metropolis_hastings_weights(graph))


def _second_modulus(w):
  return np.sort(np.abs(np.linalg.eigvalsh(np.asarray(w, np.float64))))[-2]


# ------------------------------------------------------------------ builders


def test_builders_have_the_expected_degrees():
  np.testing.assert_array_equal(graphs.ring(7).degrees(), np.full(7, 2))
  np.testing.assert_array_equal(graphs.torus(4, 4).degrees(), np.full(16, 4))
  np.testing.assert_array_equal(graphs.complete(5).degrees(), np.full(5, 4))
  reg = graphs.k_regular(20, 3, seed=1)
  np.testing.assert_array_equal(reg.degrees(), np.full(20, 3))
  assert reg.num_edges == 20 * 3


def test_small_tori_and_rings_have_no_duplicate_edges():
  # torus(2, 2): 0-1, 2-3 across, 0-2, 1-3 down: the 4-cycle 0-1-3-2-0.
  np.testing.assert_array_equal(graphs.torus(2, 2).undirected_edges(),
                                [[0, 1], [0, 2], [1, 3], [2, 3]])
  np.testing.assert_array_equal(graphs.torus(2, 3).degrees(), np.full(6, 3))
  np.testing.assert_array_equal(graphs.torus(1, 5).undirected_edges(),
                                graphs.ring(5).undirected_edges())
  assert graphs.torus(1, 1).num_edges == 0
  np.testing.assert_array_equal(graphs.ring(2).undirected_edges(), [[0, 1]])
  assert graphs.ring(1).num_edges == 0


def test_edges_are_stored_both_ways_and_round_trip_through_networkx():
  graph = graphs.erdos_renyi(30, 0.2, seed=3)
  forward = set(zip(graph.senders.tolist(), graph.receivers.tolist()))
  assert forward == {(r, s) for s, r in forward}
  assert len(forward) == graph.num_edges == 2 * len(graph.undirected_edges())
  back = graphs.Graph.from_networkx(graph.to_networkx())
  np.testing.assert_array_equal(back.senders, graph.senders)
  np.testing.assert_array_equal(back.receivers, graph.receivers)


def test_erdos_renyi_extremes_and_seed():
  assert graphs.erdos_renyi(12, 0.0, seed=0).num_edges == 0
  np.testing.assert_array_equal(graphs.erdos_renyi(12, 1.0, seed=0).senders,
                                graphs.complete(12).senders)
  a, b = graphs.erdos_renyi(40, 0.3, seed=5), graphs.erdos_renyi(40, 0.3, seed=5)
  np.testing.assert_array_equal(a.receivers, b.receivers)


def test_random_geometric_matches_brute_force_distances():
  positions = np.random.default_rng(0).random((50, 2)) * 10.0
  radius = 2.5
  graph = graphs.random_geometric(positions, radius)
  dist = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
  i, j = np.nonzero(np.triu(dist <= radius, k=1))
  assert len(i) > 0
  np.testing.assert_array_equal(graph.undirected_edges(), np.stack([i, j], 1))
  np.testing.assert_allclose(graphs.edge_distances(graph, positions),
                             dist[graph.senders, graph.receivers])


def test_connected_components_are_labelled_by_lowest_node():
  graph = graphs.from_edge_list(7, [(5, 6), (0, 3), (2, 4)])
  np.testing.assert_array_equal(graphs.connected_components(graph),
                                [0, 1, 2, 0, 2, 3, 3])


# ------------------------------------------------------- Metropolis-Hastings


def test_mh_weights_on_a_three_node_path():
  graph = graphs.from_edge_list(3, [(0, 1), (1, 2)])  # degrees 1, 2, 1
  np.testing.assert_allclose(_mh_matrix(graph),
                             [[2 / 3, 1 / 3, 0], [1 / 3, 1 / 3, 1 / 3],
                              [0, 1 / 3, 2 / 3]], **FLOAT32)


@pytest.mark.parametrize('name', ['ring', 'torus', 'er', 'k_regular', 'rgg',
                                  'disconnected'])
def test_mh_matrix_is_symmetric_and_doubly_stochastic(name):
  graph = {
      'ring': lambda: graphs.ring(9),
      'torus': lambda: graphs.torus(3, 5),
      'er': lambda: graphs.erdos_renyi(40, 0.15, seed=2),
      'k_regular': lambda: graphs.k_regular(16, 5, seed=0),
      'rgg': lambda: _rgg()[0],
      'disconnected': _two_rings_and_a_loner,
  }[name]()
  w = _mh_matrix(graph)
  np.testing.assert_array_equal(w, w.T)
  np.testing.assert_allclose(w.sum(axis=0), 1.0, **FLOAT32)
  np.testing.assert_allclose(w.sum(axis=1), 1.0, **FLOAT32)
  assert np.all(w >= 0)


def test_spectral_gap_of_a_ring_matches_its_closed_form():
  # MH on a ring: W = (I + shift + shift^-1) / 3, eigenvalues (1 + 2 cos(2 pi k / n)) / 3.
  expected = 1 - (1 + 2 * np.cos(2 * np.pi / 16)) / 3
  assert graphs.spectral_gap(graphs.ring(16)) == pytest.approx(expected, rel=1e-9)
  assert graphs.spectral_gap(_mh_matrix(graphs.ring(16))) == pytest.approx(
      expected, rel=1e-5)


def test_spectral_gap_of_a_disconnected_graph_is_its_slowest_component():
  gap_ring5 = 1 - (1 + 2 * np.cos(2 * np.pi / 5)) / 3
  gap_ring4 = 1 - 1 / 3  # eigenvalues of the 4-ring: 1, 1/3, 1/3, -1/3
  gap = graphs.spectral_gap(_two_rings_and_a_loner())
  assert gap == pytest.approx(min(gap_ring5, gap_ring4), rel=1e-9)
  assert graphs.spectral_gap(graphs.from_edge_list(3, [])) == 1.0


# ------------------------------------------------------------------- mixing


def _tree(n, seed=0):
  rng = np.random.default_rng(seed)
  return {'w': jnp.asarray(rng.normal(size=(n, 3, 2)), jnp.float32),
          'b': jnp.asarray(rng.normal(size=(n,)), jnp.float32)}


def _assert_trees_close(a, b, **tol):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


def test_edge_mixing_equals_dense_mixing():
  graph, _ = _rgg(n=40, radius=35.0)
  edge_w, self_w = graphs.metropolis_hastings_weights(graph)
  tree = _tree(graph.num_nodes)
  out = jax.jit(mixing.mix_edges)(tree, graph.senders, graph.receivers,
                                  edge_w, self_w)
  _assert_trees_close(out, mixing.mix_dense(tree, _mh_matrix(graph)), **FLOAT32)


def test_masked_padded_mixing_equals_dense_mixing_of_the_surviving_graph():
  graph = graphs.erdos_renyi(24, 0.3, seed=7)
  kept = graphs.drop_links(graph, 0.4, np.random.default_rng(1))
  assert 0 < kept.num_edges < graph.num_edges
  # The full graph's padded edges with a mask selecting the surviving links.
  senders, receivers, _ = graphs.pad_edges(graph, graph.num_edges + 6)
  survivors = set(zip(kept.senders.tolist(), kept.receivers.tolist()))
  mask = np.array([(s, r) in survivors for s, r in zip(senders, receivers)])
  mask[graph.num_edges:] = False
  assert mask.sum() == kept.num_edges

  edge_w, self_w = mixing.mh_weights_from_edges(senders, receivers, mask, 24)
  tree = _tree(24, seed=1)
  out = mixing.mix_edges(tree, senders, receivers, edge_w, self_w, mask)
  _assert_trees_close(out, mixing.mix_dense(tree, _mh_matrix(kept)), **FLOAT32)
  # The mask also zeroes weights passed in unmasked.
  out_unmasked_w = mixing.mix_edges(tree, senders, receivers,
                                    edge_w + jnp.where(mask, 0.0, 5.0),
                                    self_w, mask)
  _assert_trees_close(out_unmasked_w, out, rtol=0, atol=0)


def test_jax_mh_weights_equal_host_weights():
  # Uneven degrees (so max(d_i, d_j) matters) plus an isolated node 20.
  er = graphs.erdos_renyi(20, 0.2, seed=6)
  graph = graphs.from_edge_list(21, er.undirected_edges())
  assert len(np.unique(graph.degrees())) > 3
  senders, receivers, mask = graphs.pad_edges(graph, graph.num_edges + 3)
  edge_w, self_w = mixing.mh_weights_from_edges(senders, receivers, mask, 21)
  host_edge_w, host_self_w = graphs.metropolis_hastings_weights(graph)
  np.testing.assert_allclose(edge_w[:graph.num_edges], host_edge_w, **FLOAT32)
  np.testing.assert_array_equal(edge_w[graph.num_edges:], 0.0)
  np.testing.assert_allclose(self_w, host_self_w, **FLOAT32)
  assert self_w[20] == 1.0  # the isolated node keeps its value


@pytest.mark.parametrize('name', ['ring16', 'rgg'])
def test_gossip_contracts_by_the_second_eigenvalue_and_reaches_the_average(name):
  graph = graphs.ring(16) if name == 'ring16' else _rgg()[0]
  assert graphs.connected_components(graph).max() == 0
  n = graph.num_nodes
  lambda2 = 1 - graphs.spectral_gap(graph)
  np.testing.assert_allclose(lambda2, _second_modulus(_mh_matrix(graph)),
                             rtol=1e-5)
  x0 = _tree(n, seed=3)
  mean = jax.tree.map(lambda x: x.mean(axis=0), x0)
  spread = lambda t: np.sqrt(sum(float(jnp.sum((x - m) ** 2)) for x, m in
                                 zip(jax.tree.leaves(t), jax.tree.leaves(mean))))
  run = jax.jit(mixing.gossip, static_argnums=4)
  initial = spread(x0)
  for steps in (1, 2, 5, 10, 20, 40):
    xt = run(x0, graph.senders, graph.receivers, None, n, steps)
    # Slack: float32 rounding of the mixed values, far below the bound here.
    assert spread(xt) <= lambda2 ** steps * initial + 1e-5 * initial
  converged = run(x0, graph.senders, graph.receivers, None, n, 2000)
  _assert_trees_close(converged,
                      jax.tree.map(lambda m: jnp.broadcast_to(m, (n,) + m.shape),
                                   mean), rtol=0, atol=1e-5)


def test_gossip_bound_is_attained_by_the_slowest_ring_mode():
  # x0 = cos(2 pi i / n) is an eigenvector with eigenvalue lambda2 and mean 0:
  # gossip must scale it by exactly lambda2^t.
  n = 16
  graph = graphs.ring(n)
  lambda2 = (1 + 2 * np.cos(2 * np.pi / n)) / 3
  x0 = jnp.asarray(np.cos(2 * np.pi * np.arange(n) / n), jnp.float32)
  for steps in (1, 7, 30):
    xt = mixing.gossip(x0, graph.senders, graph.receivers, None, n, steps)
    np.testing.assert_allclose(xt, lambda2 ** steps * x0, rtol=1e-5, atol=1e-6)


def test_gossip_on_a_disconnected_graph_averages_each_component():
  graph = _two_rings_and_a_loner()
  x0 = jnp.arange(10.0)
  out = mixing.gossip(x0, graph.senders, graph.receivers, None, 10, 500)
  np.testing.assert_allclose(out, [2.0] * 5 + [6.5] * 4 + [9.0], rtol=0,
                             atol=1e-5)


def test_changing_the_edge_mask_or_steps_does_not_retrace():
  n = 12
  graph = graphs.complete(n)
  senders, receivers, _ = graphs.pad_edges(graph, graph.num_edges)
  rng = np.random.default_rng(0)
  fn = jax.jit(chex.assert_max_traces(
      lambda x, s, r, m, k: mixing.gossip(x, s, r, m, n, k), n=1))
  x0 = _tree(n)
  for steps in (1, 3, 2):
    kept = graphs.drop_links(graph, 0.5, rng)
    survivors = set(zip(kept.senders.tolist(), kept.receivers.tolist()))
    mask = np.array([(s, r) in survivors for s, r in zip(senders, receivers)])
    out = fn(x0, senders, receivers, mask, steps)
    expected = x0
    for _ in range(steps):
      expected = mixing.mix_dense(expected, _mh_matrix(kept))
    _assert_trees_close(out, expected, rtol=1e-5, atol=1e-5)


def test_gossip_preserves_the_average_in_every_step():
  graph = graphs.erdos_renyi(30, 0.1, seed=4)
  x0 = _tree(30, seed=5)
  out = mixing.gossip(x0, graph.senders, graph.receivers, None, 30, 3)
  _assert_trees_close(jax.tree.map(lambda x: x.mean(0), out),
                      jax.tree.map(lambda x: x.mean(0), x0), rtol=0, atol=1e-6)


# ------------------------------------------------------------ spanning forest


def _check_rooted_forest(graph, forest, parent, depth, roots):
  n = graph.num_nodes
  assert set(map(tuple, forest.undirected_edges().tolist())) <= set(
      map(tuple, graph.undirected_edges().tolist()))
  k = graphs.connected_components(graph).max() + 1
  assert len(forest.undirected_edges()) == n - k
  np.testing.assert_array_equal(graphs.connected_components(forest),
                                graphs.connected_components(graph))
  np.testing.assert_array_equal(np.flatnonzero(parent < 0), np.sort(roots))
  assert np.all(depth[roots] == 0)
  child = np.flatnonzero(parent >= 0)
  np.testing.assert_array_equal(depth[parent[child]], depth[child] - 1)
  tree_edges = set(zip(forest.senders.tolist(), forest.receivers.tolist()))
  assert all((int(c), int(parent[c])) in tree_edges for c in child)


def test_spanning_tree_of_a_connected_graph():
  graph = graphs.torus(4, 5)
  forest, parent, depth = graphs.minimum_spanning_forest(graph)
  _check_rooted_forest(graph, forest, parent, depth, roots=[0])
  assert len(forest.undirected_edges()) == 19


def test_spanning_forest_roots_each_component():
  graph = _two_rings_and_a_loner()
  forest, parent, depth = graphs.minimum_spanning_forest(graph)
  _check_rooted_forest(graph, forest, parent, depth, roots=[0, 5, 9])
  assert len(forest.undirected_edges()) == 10 - 3
  # The 4-ring 5-6-7-8-5 with link 5-8 longest: the tree is the path 5-6-7-8;
  # rooted at 7, nodes 6 and 8 sit at depth 1 and node 5 at depth 2.
  lengths = np.ones(graph.num_edges)
  lengths[(np.minimum(graph.senders, graph.receivers) == 5)
          & (np.maximum(graph.senders, graph.receivers) == 8)] = 2.0
  forest, parent, depth = graphs.minimum_spanning_forest(graph, lengths,
                                                         roots=[7, 2])
  _check_rooted_forest(graph, forest, parent, depth, roots=[2, 7, 9])
  np.testing.assert_array_equal(depth[5:9], [2, 1, 0, 1])
  np.testing.assert_array_equal(parent[5:9], [6, 7, -1, 7])


def test_spanning_tree_length_matches_networkx_on_a_geometric_graph():
  graph, positions = _rgg(n=80, radius=25.0, seed=4)
  lengths = graphs.edge_distances(graph, positions)
  forest, parent, depth = graphs.minimum_spanning_forest(graph, lengths)
  roots = np.unique(graphs.connected_components(graph), return_index=True)[1]
  _check_rooted_forest(graph, forest, parent, depth, roots)
  ours = graphs.edge_distances(forest, positions).sum() / 2
  g = nx.Graph()
  g.add_weighted_edges_from(
      (i, j, np.linalg.norm(positions[i] - positions[j]))
      for i, j in graph.undirected_edges().tolist())
  reference = nx.minimum_spanning_tree(g).size(weight='weight')
  assert ours == pytest.approx(reference, rel=1e-12)
  # Unit lengths would give a different, longer tree on a random geometric graph.
  unit, _, _ = graphs.minimum_spanning_forest(graph)
  assert graphs.edge_distances(unit, positions).sum() / 2 > ours


# ----------------------------------------------------- time-varying helpers


def test_pad_edges_layout():
  graph = graphs.ring(4)
  senders, receivers, mask = graphs.pad_edges(graph, 11)
  assert senders.shape == receivers.shape == mask.shape == (11,)
  assert senders.dtype == receivers.dtype == np.int32
  np.testing.assert_array_equal(senders[:8], graph.senders)
  np.testing.assert_array_equal(receivers[:8], graph.receivers)
  np.testing.assert_array_equal(mask, [True] * 8 + [False] * 3)
  np.testing.assert_array_equal(senders[8:], 0)
  np.testing.assert_array_equal(receivers[8:], 0)


def test_drop_links_keeps_both_directions_and_respects_extremes():
  graph = graphs.complete(30)
  rng = np.random.default_rng(0)
  assert graphs.drop_links(graph, 1.0, rng).num_edges == 0
  np.testing.assert_array_equal(graphs.drop_links(graph, 0.0, rng).senders,
                                graph.senders)
  kept = graphs.drop_links(graph, 0.5, rng)  # Graph() checks both directions
  fraction = len(kept.undirected_edges()) / len(graph.undirected_edges())
  assert 0.4 < fraction < 0.6  # 435 links: 5 standard deviations either side


def test_positions_stay_in_the_area_and_move_by_the_speed():
  rng = np.random.default_rng(0)
  area = (50.0, 20.0)
  positions = graphs.random_positions(200, area, rng)
  assert positions.shape == (200, 2)
  assert np.all(positions >= 0) and np.all(positions <= area)
  moved = graphs.move_positions(positions, 1.5, area, rng)
  assert np.all(moved >= 0) and np.all(moved <= area)
  step = np.linalg.norm(moved - positions, axis=1)
  interior = np.all((positions > 1.5) & (positions < np.array(area) - 1.5), axis=1)
  np.testing.assert_allclose(step[interior], 1.5, rtol=1e-12)
  assert np.all(step <= 1.5 + 1e-12)


# --------------------------------------------------------------- bad inputs


@pytest.mark.parametrize('build, message', [
    (lambda: graphs.ring(0), 'n must be >= 1'),
    (lambda: graphs.ring(2.5), 'n must be an integer'),
    (lambda: graphs.torus(0, 3), 'rows must be >= 1'),
    (lambda: graphs.erdos_renyi(5, 1.5, seed=0), 'p must be a probability'),
    (lambda: graphs.erdos_renyi(5, float('nan'), seed=0), 'probability'),
    (lambda: graphs.k_regular(5, 3, seed=0), 'n \\* k must be even'),
    (lambda: graphs.k_regular(4, 4, seed=0), 'needs k < 4'),
    (lambda: graphs.random_geometric(np.zeros((3, 2)), -1.0), 'radius'),
    (lambda: graphs.random_geometric(np.zeros(3), 1.0), 'shape \\[n, dims\\]'),
    (lambda: graphs.from_edge_list(3, [(0, 3)]), 'node ids in 0..2'),
    (lambda: graphs.from_edge_list(3, [(1, 1)]), 'self loops'),
    (lambda: graphs.from_edge_list(3, [0, 1, 2]), 'shape \\[m, 2\\]'),
    (lambda: graphs.Graph(3, np.array([0]), np.array([1])), 'both directions'),
    (lambda: graphs.Graph(3, np.array([0, 0, 1]), np.array([1, 1, 0])),
     'must not repeat'),
    (lambda: graphs.Graph.from_networkx(nx.path_graph(['a', 'b'])),
     'integers 0..1'),
    (lambda: graphs.pad_edges(graphs.ring(5), 8),
     '10 directed edges, more than the padded capacity of 8'),
    (lambda: graphs.drop_links(graphs.ring(5), -0.1, np.random.default_rng()),
     'drop_prob'),
    (lambda: graphs.minimum_spanning_forest(graphs.ring(4), np.ones(3)),
     'one entry per directed edge \\(8\\)'),
    (lambda: graphs.minimum_spanning_forest(graphs.ring(4), np.arange(8.0)),
     'must be symmetric'),
    (lambda: graphs.minimum_spanning_forest(graphs.ring(4), roots=[0, 2]),
     'same connected component'),
    (lambda: graphs.random_positions(3, -1.0, np.random.default_rng()),
     'area_size'),
    (lambda: graphs.move_positions(np.zeros((3, 2)), -1.0, 5.0,
                                   np.random.default_rng()), 'speed'),
    (lambda: graphs.spectral_gap(np.zeros((2, 3))), 'square'),
    (lambda: mixing.mix_edges(jnp.zeros((4, 2)), jnp.zeros(0, jnp.int32),
                              jnp.zeros(0, jnp.int32), jnp.zeros(0),
                              jnp.ones(3)), 'stacked over 3 nodes'),
])
def test_bad_inputs_raise_config_error(build, message):
  with pytest.raises(ConfigError, match=message):
    build()
