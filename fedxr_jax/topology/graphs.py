"""Communication graphs among clients, built on the host (numpy / networkx).

A `Graph` stores every undirected link in both directions as int32
sender/receiver arrays: the fixed-shape layout `mixing.mix_edges` consumes
inside jit. Everything here runs outside the compiled round: builders,
Metropolis-Hastings weights, spectral gap, spanning forests, and the
time-varying helpers (padding to a fixed capacity, link drops, mobility).
"""
import collections
import dataclasses
import numbers
from typing import Optional, Sequence, Union

import networkx as nx
import numpy as np
from scipy import sparse, spatial
from scipy.sparse import csgraph

from fedxr_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True, eq=False)
class Graph:
  """An undirected simple graph over nodes 0..num_nodes-1.

  Each undirected edge {i, j} is stored twice, as i->j and j->i; there are no
  self loops and no duplicates (checked here). Builders sort edges by
  (sender, receiver). The arrays are read-only copies.
  """
  num_nodes: int
  senders: np.ndarray    # int32 [E]
  receivers: np.ndarray  # int32 [E]

  def __post_init__(self):
    n = _check_int('num_nodes', self.num_nodes, minimum=1)
    s = _node_index_array('senders', self.senders, n)
    r = _node_index_array('receivers', self.receivers, n)
    if s.shape != r.shape:
      raise ConfigError(f'senders and receivers must have the same length, '
                        f'got {s.size} and {r.size}')
    loops = s == r
    if np.any(loops):
      raise ConfigError(f'a graph has no self loops, but node {s[loops][0]} '
                        f'links to itself')
    forward = s.astype(np.int64) * n + r
    if np.unique(forward).size != forward.size:
      raise ConfigError('graph edges must not repeat; each directed edge '
                        'appears once')
    if not np.array_equal(np.sort(forward), np.sort(r.astype(np.int64) * n + s)):
      raise ConfigError('every edge must be stored in both directions '
                        '(i->j and j->i)')
    object.__setattr__(self, 'num_nodes', n)
    object.__setattr__(self, 'senders', s)
    object.__setattr__(self, 'receivers', r)

  @property
  def num_edges(self) -> int:
    """Directed edges E: each undirected link counts twice."""
    return int(self.senders.size)

  def degrees(self) -> np.ndarray:
    """[n] int32 neighbour counts."""
    return np.bincount(self.senders, minlength=self.num_nodes).astype(np.int32)

  def undirected_edges(self) -> np.ndarray:
    """[E/2, 2] int32 pairs (i, j) with i < j, sorted."""
    keep = self.senders < self.receivers
    pairs = np.stack([self.senders[keep], self.receivers[keep]], axis=1)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]

  def to_networkx(self) -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from(range(self.num_nodes))
    g.add_edges_from(self.undirected_edges().tolist())
    return g

  @classmethod
  def from_networkx(cls, g: nx.Graph) -> 'Graph':
    """Graph of an undirected networkx graph whose nodes are 0..n-1."""
    if g.is_directed():
      raise ConfigError('mixing needs an undirected graph; convert it with '
                        'g.to_undirected() first')
    n = g.number_of_nodes()
    if set(g.nodes) != set(range(n)):
      raise ConfigError(f'graph nodes must be the integers 0..{n - 1}; relabel '
                        f'them with nx.convert_node_labels_to_integers')
    return from_edge_list(n, list(g.edges()))


# ----------------------------------------------------------------- builders


def ring(n: int) -> Graph:
  """Cycle 0-1-...-(n-1)-0 (a single edge for n = 2, none for n = 1)."""
  n = _check_int('n', n, minimum=1)
  nodes = np.arange(n)
  return _from_pairs(n, np.stack([nodes, (nodes + 1) % n], axis=1))


def torus(rows: int, cols: int) -> Graph:
  """2-D torus grid; node r * cols + c links to its wrap-around neighbours.

  Sides of length 1 or 2 would wrap onto the node itself or onto the same
  neighbour twice; those links appear once (or not at all), so torus(2, 2) is
  the 4-cycle and torus(1, n) is ring(n).
  """
  rows = _check_int('rows', rows, minimum=1)
  cols = _check_int('cols', cols, minimum=1)
  grid = np.arange(rows * cols).reshape(rows, cols)
  right = np.roll(grid, -1, axis=1)
  down = np.roll(grid, -1, axis=0)
  pairs = np.concatenate([np.stack([grid.ravel(), right.ravel()], axis=1),
                          np.stack([grid.ravel(), down.ravel()], axis=1)])
  return _from_pairs(rows * cols, pairs)


def complete(n: int) -> Graph:
  n = _check_int('n', n, minimum=1)
  return _from_pairs(n, np.stack(np.triu_indices(n, k=1), axis=1))


def erdos_renyi(n: int, p: float, seed: int) -> Graph:
  """G(n, p): each of the n(n-1)/2 links independently with probability p."""
  n = _check_int('n', n, minimum=1)
  p = _check_probability('p', p)
  rng = np.random.default_rng(seed)
  # Row by row: O(n) memory, not an n x n matrix of draws.
  pairs = []
  for i in range(n - 1):
    hits = np.flatnonzero(rng.random(n - 1 - i) < p) + i + 1
    pairs.append(np.stack([np.full_like(hits, i), hits], axis=1))
  return _from_pairs(n, np.concatenate(pairs) if pairs else np.zeros((0, 2)))


def k_regular(n: int, k: int, seed: int) -> Graph:
  """A uniformly random k-regular graph (networkx's pairing model)."""
  n = _check_int('n', n, minimum=1)
  k = _check_int('k', k, minimum=0)
  if k >= n:
    raise ConfigError(f'a k-regular graph on {n} nodes needs k < {n}, got k={k}')
  if (n * k) % 2:
    raise ConfigError(f'no {k}-regular graph on {n} nodes exists: n * k must '
                      f'be even')
  return Graph.from_networkx(nx.random_regular_graph(k, n, seed=seed))


def random_geometric(positions: np.ndarray, radius: float) -> Graph:
  """Links every pair of nodes at distance <= radius (same units, meters).

  A k-d tree finds the pairs in O(n log n + E), never an n x n matrix.
  """
  positions = _check_positions(positions)
  radius = _check_nonnegative('radius', radius)
  tree = spatial.KDTree(positions)
  pairs = tree.query_pairs(radius, output_type='ndarray')
  return _from_pairs(positions.shape[0], pairs)


def from_edge_list(n: int, pairs) -> Graph:
  """Graph of undirected pairs (i, j); a pair given twice or both ways counts once."""
  n = _check_int('n', n, minimum=1)
  pairs = np.asarray(pairs)
  if pairs.size == 0:
    pairs = np.zeros((0, 2), np.int64)
  if pairs.ndim != 2 or pairs.shape[1] != 2:
    raise ConfigError(f'an edge list must have shape [m, 2], got {pairs.shape}')
  _node_index_array('edge list', pairs.ravel(), n)
  loops = pairs[:, 0] == pairs[:, 1]
  if np.any(loops):
    raise ConfigError(f'an edge list must not contain self loops, but node '
                      f'{pairs[loops][0, 0]} links to itself')
  return _from_pairs(n, pairs)


def edge_distances(graph: Graph, positions: np.ndarray) -> np.ndarray:
  """[E] float64 Euclidean length of every directed edge (symmetric)."""
  positions = _check_positions(positions)
  if positions.shape[0] != graph.num_nodes:
    raise ConfigError(f'expected positions for {graph.num_nodes} nodes, got '
                      f'{positions.shape[0]}')
  return np.linalg.norm(positions[graph.senders] - positions[graph.receivers],
                        axis=1)


# ------------------------------------------------------------------ analysis


def connected_components(graph: Graph) -> np.ndarray:
  """[n] int32 component label per node: 0..K-1, ordered by lowest node."""
  _, labels = csgraph.connected_components(_adjacency(graph), directed=False)
  _, first = np.unique(labels, return_index=True)
  rank = np.empty(first.size, np.int32)
  rank[np.argsort(first)] = np.arange(first.size, dtype=np.int32)
  return rank[labels]


def metropolis_hastings_weights(graph: Graph) -> tuple[np.ndarray, np.ndarray]:
  """(edge_weights [E], self_weights [n]) float32 Metropolis-Hastings weights.

  W_ij = 1 / (1 + max(d_i, d_j)) on edges and W_ii = 1 - sum_j W_ij: a
  symmetric, doubly stochastic matrix; an isolated node keeps W_ii = 1.
  """
  edge_weights, self_weights = _mh_weights64(graph)
  return edge_weights.astype(np.float32), self_weights.astype(np.float32)


def dense_mixing_matrix(graph: Graph, edge_weights: np.ndarray,
                        self_weights: np.ndarray) -> np.ndarray:
  """[n, n] matrix W with x_i <- sum_j W_ij x_j (tests and small n only)."""
  edge_weights = np.asarray(edge_weights)
  self_weights = np.asarray(self_weights)
  if edge_weights.shape != (graph.num_edges,):
    raise ConfigError(f'expected {graph.num_edges} edge weights, got shape '
                      f'{edge_weights.shape}')
  if self_weights.shape != (graph.num_nodes,):
    raise ConfigError(f'expected {graph.num_nodes} self weights, got shape '
                      f'{self_weights.shape}')
  w = np.diag(self_weights).astype(np.result_type(edge_weights, self_weights))
  w[graph.receivers, graph.senders] = edge_weights  # receiver i takes from j
  return w


def spectral_gap(graph_or_matrix: Union[Graph, np.ndarray]) -> float:
  """1 - (second largest eigenvalue modulus) of a mixing matrix.

  A Graph uses its Metropolis-Hastings matrix (in float64). Consensus error
  contracts by at least the modulus per step, so the gap sets the speed.
  A disconnected graph never reaches a global average (its whole-matrix gap
  is 0), so this reports the smallest gap over its components, each taken
  from the component's own block: the slowest within-component consensus.
  Single nodes have nothing to mix and are skipped (a graph of only single
  nodes has gap 1). Dense eigendecomposition per component, O(size^3):
  meant for analysis of graphs up to a few thousand nodes.
  """
  if isinstance(graph_or_matrix, Graph):
    graph = graph_or_matrix
    w = dense_mixing_matrix(graph, *_mh_weights64(graph))
    labels = connected_components(graph)
  else:
    w = np.asarray(graph_or_matrix, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != w.shape[1] or not np.all(np.isfinite(w)):
      raise ConfigError(f'a mixing matrix must be a finite square array, got '
                        f'shape {w.shape}')
    links = (w != 0) | (w.T != 0)
    np.fill_diagonal(links, False)
    _, labels = csgraph.connected_components(sparse.csr_matrix(links),
                                             directed=False)
  gap = 1.0
  for label in np.unique(labels):
    nodes = np.flatnonzero(labels == label)
    if nodes.size < 2:
      continue
    block = w[np.ix_(nodes, nodes)]
    symmetric = np.array_equal(block, block.T)
    eigenvalues = np.linalg.eigvalsh(block) if symmetric else np.linalg.eigvals(block)
    modulus = np.sort(np.abs(eigenvalues))[::-1]
    gap = min(gap, 1.0 - float(modulus[1]))
  return gap


def minimum_spanning_forest(
    graph: Graph, edge_lengths: Optional[np.ndarray] = None,
    roots: Optional[Sequence[int]] = None,
) -> tuple[Graph, np.ndarray, np.ndarray]:
  """Kruskal minimum spanning forest, rooted for aggregation (Fed-Span).

  Args:
    graph: the communication graph; one tree per connected component.
    edge_lengths: optional [E] length per directed edge (e.g. from
      `edge_distances`), equal in both directions; unit lengths if omitted.
    roots: optional nodes to root their components at (at most one per
      component); other components are rooted at their lowest-index node.

  Returns:
    (forest, parent, depth): the forest's edges as a Graph, parent [n] int32
    (-1 at roots) and depth [n] int32 (0 at roots), by BFS from the roots.
  """
  n = graph.num_nodes
  pairs = graph.undirected_edges()
  lengths = _undirected_lengths(graph, pairs, edge_lengths)
  g = nx.Graph()
  g.add_nodes_from(range(n))
  g.add_weighted_edges_from(zip(pairs[:, 0].tolist(), pairs[:, 1].tolist(),
                                lengths.tolist()))
  tree_pairs = list(nx.minimum_spanning_edges(g, algorithm='kruskal',
                                              data=False))
  forest = _from_pairs(n, np.array(tree_pairs, np.int64).reshape(-1, 2))
  root_nodes = _component_roots(connected_components(graph), roots, n)
  parent, depth = _bfs_tree(forest, root_nodes)
  return forest, parent, depth


# --------------------------------------------------------- time-varying graphs


def pad_edges(graph: Graph, capacity: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(senders, receivers, mask) of fixed length `capacity` for jit.

  Padding edges point node 0 -> node 0 with mask False, so graphs that change
  between rounds keep one compiled shape.
  """
  capacity = _check_int('capacity', capacity, minimum=0)
  if graph.num_edges > capacity:
    raise ConfigError(f'the graph has {graph.num_edges} directed edges, more '
                      f'than the padded capacity of {capacity}')
  senders = np.zeros(capacity, np.int32)
  receivers = np.zeros(capacity, np.int32)
  mask = np.zeros(capacity, bool)
  senders[:graph.num_edges] = graph.senders
  receivers[:graph.num_edges] = graph.receivers
  mask[:graph.num_edges] = True
  return senders, receivers, mask


def drop_links(graph: Graph, drop_prob: float,
               rng: np.random.Generator) -> Graph:
  """Drops each undirected link (both directions together) with drop_prob."""
  drop_prob = _check_probability('drop_prob', drop_prob)
  pairs = graph.undirected_edges()
  return _from_pairs(graph.num_nodes, pairs[rng.random(len(pairs)) >= drop_prob])


def random_positions(n: int, area_size, rng: np.random.Generator) -> np.ndarray:
  """[n, 2] float64 positions uniform in [0, width] x [0, height] meters.

  area_size: one side for a square area, or (width, height).
  """
  n = _check_int('n', n, minimum=1)
  area = _check_area(area_size, dims=2)
  return rng.random((n, 2)) * area


def move_positions(positions: np.ndarray, speed, area_size,
                   rng: np.random.Generator) -> np.ndarray:
  """One mobility step: each node moves `speed` meters in a random direction.

  A memoryless stand-in for random waypoint (no per-node destination state);
  positions are clipped to the area. speed: a scalar or one value per node.
  """
  positions = _check_positions(positions)
  area = _check_area(area_size, dims=positions.shape[1])
  speed = np.asarray(speed, dtype=np.float64)
  if speed.ndim > 1 or (speed.ndim == 1 and speed.size != positions.shape[0]):
    raise ConfigError(f'speed must be a scalar or one value per node '
                      f'({positions.shape[0]}), got shape {speed.shape}')
  if not np.all(np.isfinite(speed)) or np.any(speed < 0):
    raise ConfigError('speed must be finite and >= 0')
  direction = rng.normal(size=positions.shape)
  direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True),
                          np.finfo(np.float64).tiny)
  step = np.reshape(speed, (-1, 1)) * direction
  return np.clip(positions + step, 0.0, area)


# ------------------------------------------------------------------ internals


def _from_pairs(num_nodes: int, pairs: np.ndarray) -> Graph:
  """Graph of in-range pairs; drops self loops and repeats, stores both ways."""
  pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
  lo = np.minimum(pairs[:, 0], pairs[:, 1])
  hi = np.maximum(pairs[:, 0], pairs[:, 1])
  keys = np.unique((lo * num_nodes + hi)[lo != hi])
  lo, hi = keys // num_nodes, keys % num_nodes
  senders = np.concatenate([lo, hi])
  receivers = np.concatenate([hi, lo])
  order = np.lexsort((receivers, senders))
  return Graph(num_nodes, senders[order], receivers[order])


def _adjacency(graph: Graph) -> sparse.csr_matrix:
  ones = np.ones(graph.num_edges, np.int8)
  return sparse.csr_matrix((ones, (graph.senders, graph.receivers)),
                           shape=(graph.num_nodes, graph.num_nodes))


def _mh_weights64(graph: Graph) -> tuple[np.ndarray, np.ndarray]:
  degrees = graph.degrees().astype(np.float64)
  edge_weights = 1.0 / (1.0 + np.maximum(degrees[graph.senders],
                                         degrees[graph.receivers]))
  self_weights = 1.0 - np.bincount(graph.receivers, weights=edge_weights,
                                   minlength=graph.num_nodes)
  return edge_weights, self_weights


def _undirected_lengths(graph: Graph, pairs: np.ndarray,
                        edge_lengths: Optional[np.ndarray]) -> np.ndarray:
  """[E/2] length per undirected pair, checked equal in both directions."""
  if edge_lengths is None:
    return np.ones(len(pairs))
  lengths = np.asarray(edge_lengths, dtype=np.float64)
  if lengths.shape != (graph.num_edges,):
    raise ConfigError(f'edge_lengths must have one entry per directed edge '
                      f'({graph.num_edges}), got shape {lengths.shape}')
  if not np.all(np.isfinite(lengths)):
    raise ConfigError('edge_lengths must be finite')
  n = graph.num_nodes
  keys = graph.senders.astype(np.int64) * n + graph.receivers
  order = np.argsort(keys)

  def lookup(i, j):
    return lengths[order[np.searchsorted(keys[order], i.astype(np.int64) * n + j)]]

  forward = lookup(pairs[:, 0], pairs[:, 1])
  backward = lookup(pairs[:, 1], pairs[:, 0])
  if not np.array_equal(forward, backward):
    bad = np.flatnonzero(forward != backward)[0]
    i, j = pairs[bad]
    raise ConfigError(f'edge_lengths must be symmetric, but {i}->{j} has '
                      f'{forward[bad]} and {j}->{i} has {backward[bad]}')
  return forward


def _component_roots(labels: np.ndarray, roots, n: int) -> np.ndarray:
  """One root per component: the given one, else its lowest-index node."""
  _, lowest = np.unique(labels, return_index=True)  # labels ranked by lowest
  chosen = lowest.copy()
  if roots is not None:
    given = _node_index_array('roots', np.asarray(roots).reshape(-1), n)
    seen = {}
    for root in given.tolist():
      label = labels[root]
      if seen.setdefault(label, root) != root:
        raise ConfigError(f'roots {seen[label]} and {root} lie in the same '
                          f'connected component; give at most one per component')
      chosen[label] = root
  return chosen


def _bfs_tree(forest: Graph, roots: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
  """parent and depth of every node by BFS over the forest from the roots."""
  n = forest.num_nodes
  # Forest edges are sorted by sender, so CSR offsets are cumulative degrees.
  offsets = np.concatenate([[0], np.cumsum(forest.degrees())]).tolist()
  neighbours = forest.receivers.tolist()
  parent = np.full(n, -1, np.int32)
  depth = np.full(n, -1, np.int32)
  depth[roots] = 0
  queue = collections.deque(roots.tolist())
  while queue:
    node = queue.popleft()
    for other in neighbours[offsets[node]:offsets[node + 1]]:
      if depth[other] < 0:
        parent[other] = node
        depth[other] = depth[node] + 1
        queue.append(other)
  return parent, depth


def _check_int(name: str, value, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise ConfigError(f'{name} must be an integer, got {value!r}')
  if value < minimum:
    raise ConfigError(f'{name} must be >= {minimum}, got {value}')
  return int(value)


def _check_probability(name: str, value) -> float:
  if not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
    raise ConfigError(f'{name} must be a probability in [0, 1], got {value!r}')
  return float(value)


def _check_nonnegative(name: str, value) -> float:
  if not isinstance(value, numbers.Real) or not 0.0 <= value < np.inf:
    raise ConfigError(f'{name} must be a finite number >= 0, got {value!r}')
  return float(value)


def _check_area(area_size, dims: int) -> np.ndarray:
  area = np.asarray(area_size, dtype=np.float64)
  if area.ndim == 0:
    area = np.full(dims, area)
  if area.shape != (dims,) or not np.all(np.isfinite(area)) or np.any(area <= 0):
    raise ConfigError(f'area_size must be one positive side or {dims} positive '
                      f'sides, got {area_size!r}')
  return area


def _check_positions(positions) -> np.ndarray:
  positions = np.asarray(positions, dtype=np.float64)
  if positions.ndim != 2 or positions.shape[0] < 1 or positions.shape[1] < 1:
    raise ConfigError(f'positions must have shape [n, dims] with n >= 1, got '
                      f'{positions.shape}')
  if not np.all(np.isfinite(positions)):
    raise ConfigError('positions must be finite')
  return positions


def _node_index_array(name: str, values, num_nodes: int) -> np.ndarray:
  """Read-only int32 copy of node ids, checked to lie in 0..num_nodes-1."""
  array = np.asarray(values)
  if array.size == 0:
    array = array.astype(np.int32)
  if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
    raise ConfigError(f'{name} must be a 1-D array of integer node ids, got '
                      f'dtype {array.dtype} and shape {array.shape}')
  if array.size and (array.min() < 0 or array.max() >= num_nodes):
    raise ConfigError(f'{name} must hold node ids in 0..{num_nodes - 1}, got '
                      f'values from {array.min()} to {array.max()}')
  array = array.astype(np.int32)
  array.setflags(write=False)
  return array
