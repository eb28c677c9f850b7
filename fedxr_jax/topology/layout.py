"""Host-side pieces of per-round topology arrays, built from (seed, round).

The jitted round sees only fixed-shape arrays: positions, clusters, a padded
D2D edge list with a mask, representatives, spanning-forest parents. Each
topology's `layout` rebuilds them every round (mobility, link failures)
deterministically from (seed, round), so a resumed run sees the same graphs.
Positions and device classes come from the problem (`core.problem.Geography`).
"""
import dataclasses
import math

import numpy as np
from scipy import spatial
from scipy import stats

from fedxr_jax.errors import ConfigError
from fedxr_jax.topology import graphs

GRAPHS = ('geometric', 'ring', 'torus', 'erdos_renyi', 'k_regular', 'complete')
ER_OVERFLOW = 1e-9   # chance an Erdos-Renyi draw exceeds its padded size (refused)


def round_rng(seed: int, round_idx: int) -> np.random.Generator:
  """The host random stream of a round's layout (link failures, representatives)."""
  return np.random.default_rng([seed, 0x7090, round_idx])


def grid_points(k: int, area_m: float) -> np.ndarray:
  """k points on a near-square grid over the area: edge servers, cluster centers."""
  cols = math.ceil(math.sqrt(k))
  rows = math.ceil(k / cols)
  idx = np.arange(k)
  return np.stack([(idx % cols + 0.5) * area_m / cols,
                   (idx // cols + 0.5) * area_m / rows], axis=-1).astype(np.float32)


def nearest_center(pos: np.ndarray, centers: np.ndarray) -> np.ndarray:
  d = np.linalg.norm(pos[:, None, :] - centers[None], axis=-1)
  return np.argmin(d, axis=1).astype(np.int32)


def nearest_peer_graph(pos: np.ndarray, radius: float, max_neighbors: int) -> graphs.Graph:
  """D2D links within `radius`, each radio keeping its `max_neighbors` nearest.

  A link exists when each end is among the other's nearest in range, so no
  degree exceeds `max_neighbors` and the edge list has a fixed capacity.
  """
  n = len(pos)
  if n < 2:
    return graphs.from_edge_list(n, [])
  k = min(max_neighbors, n - 1)
  dist, idx = spatial.cKDTree(pos).query(pos, k=k + 1, distance_upper_bound=radius)
  src = np.repeat(np.arange(n), k)
  dst, found = idx[:, 1:].ravel(), np.isfinite(dist[:, 1:]).ravel()
  src, dst = src[found], dst[found]
  # Keep i -> j only if j -> i was found too (each is among the other's nearest).
  mutual = np.isin(src * n + dst, dst * n + src)
  keep = mutual & (src < dst)
  return graphs.from_edge_list(n, np.stack([src[keep], dst[keep]], axis=-1))


def small_ring(m: int) -> graphs.Graph:
  """A ring on m >= 2 nodes (two nodes: one link)."""
  return graphs.ring(m) if m > 2 else graphs.from_edge_list(2, [(0, 1)])


def _torus_shape(n):
  rows = max(d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0)
  return rows, n // rows


@dataclasses.dataclass(frozen=True)
class D2D:
  """The device-to-device radio graph (`config.topology.d2d`).

  graph: geometric (links within range_m, each radio keeping its
  max_neighbors nearest mutual peers; rebuilt from positions every round),
  or a position-free ring | torus | erdos_renyi (er_prob) | k_regular
  (degree) | complete graph drawn once per run; every live link fails
  independently with link_failure_prob each round.
  """
  graph: str = 'geometric'
  range_m: float = 30.0
  max_neighbors: int = 8
  er_prob: float = 0.1
  degree: int = 4
  link_failure_prob: float = 0.0

  def validate(self, cohort: int, *, allowed=GRAPHS, kind: str = '') -> None:
    def need(ok, message):
      if not ok:
        raise ConfigError(message)
    need(self.graph in GRAPHS, f'topology.d2d.graph={self.graph!r} is not one of {GRAPHS}')
    need(self.graph in allowed, f'not supported yet: topology.d2d.graph={self.graph!r} with '
         f'topology.kind={kind} (use one of {allowed})')
    need(self.range_m > 0, f'topology.d2d.range_m must be > 0, got {self.range_m}')
    need(self.max_neighbors >= 1, 'topology.d2d.max_neighbors must be >= 1')
    need(0.0 <= self.link_failure_prob <= 1.0,
         'topology.d2d.link_failure_prob must be in [0, 1]')
    need(0.0 <= self.er_prob <= 1.0, 'topology.d2d.er_prob must be in [0, 1]')
    if self.graph == 'k_regular':
      need(self.degree < cohort and (self.degree * cohort) % 2 == 0,
           f'topology.d2d.degree={self.degree} cannot make a regular graph on '
           f'{cohort} clients')


class CohortGraphs:
  """The D2D graph over a round's cohort: from positions, or drawn once per run."""

  def __init__(self, d2d: D2D, cohort: int, seed: int):
    self.d2d, self.cohort, self.seed = d2d, cohort, seed
    self._static = None if d2d.graph == 'geometric' else self._logical_graph()
    per_node = {'geometric': d2d.max_neighbors, 'ring': 2, 'torus': 4,
                'k_regular': d2d.degree, 'complete': cohort - 1,
                'erdos_renyi': None}[d2d.graph]
    if per_node is None:
      # ER is drawn once per seed, but its padded size must not depend on the
      # seed (two seeds are one compiled program): the edge count's 1 - 1e-9
      # quantile; a draw above it (rarer than that) is refused.
      pairs = cohort * (cohort - 1) // 2
      bound = int(stats.binom.isf(ER_OVERFLOW, pairs, d2d.er_prob)) + 1
      if self._static.num_edges > 2 * bound:
        raise ConfigError(f'seed {seed}: its Erdos-Renyi D2D graph has '
                          f'{self._static.num_edges // 2} links, above the {bound} the '
                          f'compiled round holds (probability < {ER_OVERFLOW}); use another seed')
      self.capacity = max(1, 2 * bound + 2 * cohort)
    else:                  # + room for ring fallbacks
      self.capacity = max(1, cohort * min(per_node, cohort - 1) + 2 * cohort)

  def _logical_graph(self) -> graphs.Graph:
    c, s = self.cohort, self.d2d
    if s.graph == 'ring':
      return graphs.ring(c)
    if s.graph == 'torus':
      return graphs.torus(*_torus_shape(c))
    if s.graph == 'complete':
      return graphs.complete(c)
    if s.graph == 'erdos_renyi':
      return graphs.erdos_renyi(c, s.er_prob, self.seed)
    return graphs.k_regular(c, s.degree, self.seed)

  def graph(self, pos: np.ndarray) -> graphs.Graph:
    if self._static is None:
      return nearest_peer_graph(pos, self.d2d.range_m, self.d2d.max_neighbors)
    return self._static

  def fail_links(self, graph: graphs.Graph, rng: np.random.Generator) -> graphs.Graph:
    if self.d2d.link_failure_prob > 0:
      return graphs.drop_links(graph, self.d2d.link_failure_prob, rng)
    return graph

  def padded(self, graph: graphs.Graph) -> dict:
    senders, receivers, mask = graphs.pad_edges(graph, self.capacity)
    return {'senders': senders, 'receivers': receivers, 'edge_mask': mask}


def graph_stats(graph: graphs.Graph) -> tuple:
  """(component labels, {'graph/d2d_links', 'graph/components'})."""
  labels = graphs.connected_components(graph)
  return labels, {'graph/d2d_links': graph.num_edges // 2,
                  'graph/components': int(labels.max()) + 1 if len(labels) else 0}
