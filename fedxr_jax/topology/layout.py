"""Per-round topology arrays, built on the host from (seed, round).

The jitted round sees only fixed-shape arrays: positions, clusters, a padded
D2D edge list with a mask, representatives, spanning-forest parents. The
host rebuilds them every round (mobility, link failures), deterministically
from (seed, round), so a resumed run sees the same graphs.
"""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import spatial

from fedxr_jax.core import rng as rng_lib
from fedxr_jax.data import synthetic
from fedxr_jax.errors import ConfigError
from fedxr_jax.topology import coordination
from fedxr_jax.topology import graphs

GRAPHS = ('geometric', 'ring', 'torus', 'erdos_renyi', 'k_regular', 'complete')
CLUSTER_BY = ('position', 'device', 'id')
FALLBACKS = ('none', 'ring')


@dataclasses.dataclass(frozen=True)
class TopologySpec:
  kind: str = 'centralized'
  graph: str = 'geometric'      # D2D graph (semi, decentralized, tree)
  gamma: int = 2                # consensus / gossip steps per round
  k2: int = 2                   # hierarchical: cloud round every k2 rounds
  num_clusters: int = 4         # edge servers (hierarchical) / clusters (semi)
  cluster_by: str = 'position'  # semi: nearest cluster center | device type | id
  d2d_range_m: float = 30.0
  max_neighbors: int = 8        # a D2D radio keeps its nearest peers in range
  er_prob: float = 0.1
  degree: int = 4               # k_regular
  link_failure_prob: float = 0.0
  d2d_fallback: str = 'none'    # semi: a cluster without D2D links -> ring

  @classmethod
  def from_config(cls, cfg) -> 'TopologySpec':
    return cls(**{f.name: cfg[f.name] for f in dataclasses.fields(cls)
                  if f.name in cfg})


def validate(spec: TopologySpec, population: int, cohort: int) -> None:
  def need(ok, message):
    if not ok:
      raise ConfigError(message)
  need(spec.kind in coordination.KINDS,
       f'topology.kind={spec.kind!r} is not one of {coordination.KINDS}')
  need(spec.graph in GRAPHS, f'topology.graph={spec.graph!r} is not one of {GRAPHS}')
  need(spec.cluster_by in CLUSTER_BY,
       f'topology.cluster_by={spec.cluster_by!r} is not one of {CLUSTER_BY}')
  need(spec.d2d_fallback in FALLBACKS,
       f'topology.d2d_fallback={spec.d2d_fallback!r} is not one of {FALLBACKS}')
  need(spec.gamma >= 1, f'topology.gamma must be >= 1, got {spec.gamma}')
  need(spec.k2 >= 1, f'topology.k2 must be >= 1, got {spec.k2}')
  need(spec.num_clusters >= 1, f'topology.num_clusters must be >= 1, got {spec.num_clusters}')
  if spec.kind in ('hierarchical', 'semi'):
    need(spec.num_clusters <= cohort,
         f'topology.num_clusters={spec.num_clusters} is more than the '
         f'{cohort} clients of a round')
  need(spec.d2d_range_m > 0, f'topology.d2d_range_m must be > 0, got {spec.d2d_range_m}')
  need(spec.max_neighbors >= 1, 'topology.max_neighbors must be >= 1')
  need(0.0 <= spec.link_failure_prob <= 1.0, 'topology.link_failure_prob must be in [0, 1]')
  need(0.0 <= spec.er_prob <= 1.0, 'topology.er_prob must be in [0, 1]')
  if spec.kind == 'decentralized':
    need(cohort == population,
         'topology.kind=decentralized trains every device every round: set '
         f'cohort_size = population_size (got {cohort} of {population})')
  if spec.kind == 'semi':
    need(spec.graph in ('geometric', 'ring', 'complete'),
         f'not supported yet: topology.graph={spec.graph!r} inside semi-decentralized '
         "clusters (use 'geometric', 'ring' or 'complete')")
  if spec.graph == 'k_regular' and spec.kind in ('decentralized', 'tree'):
    need(spec.degree < cohort and (spec.degree * cohort) % 2 == 0,
         f'topology.degree={spec.degree} cannot make a regular graph on {cohort} clients')


def _torus_shape(n):
  rows = max(d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0)
  return rows, n // rows


def grid_points(k: int, area_m: float) -> np.ndarray:
  """k points on a near-square grid over the area: edge servers, cluster centers."""
  cols = math.ceil(math.sqrt(k))
  rows = math.ceil(k / cols)
  idx = np.arange(k)
  return np.stack([(idx % cols + 0.5) * area_m / cols,
                   (idx // cols + 0.5) * area_m / rows], axis=-1).astype(np.float32)


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


class RoundLayout:
  """Builds the `topo` arrays of every round for one run."""

  def __init__(self, spec: TopologySpec, xr_spec: synthetic.XRSpec, world, *,
               seed: int, population: int, cohort: int):
    validate(spec, population, cohort)
    self.spec, self.xr_spec, self.seed = spec, xr_spec, seed
    self.cohort = cohort
    seed_key = jax.random.key(seed)
    self._cohort_fn = jax.jit(lambda r: rng_lib.sample_cohort(seed_key, r, population, cohort))
    self._positions_fn = jax.jit(lambda ids, r: jax.vmap(
        lambda c: synthetic.client_position(world, c, r, xr_spec))(ids))
    self._devices_fn = jax.jit(lambda ids: jax.vmap(
        lambda c: synthetic.client_profile(world, c, xr_spec)['device'])(ids))
    self.centers = grid_points(spec.num_clusters, xr_spec.area_m)
    self.capacity = self._edge_capacity()
    self._static_graph = None

  def _edge_capacity(self) -> int:
    c, s = self.cohort, self.spec
    per_node = {'geometric': s.max_neighbors, 'ring': 2, 'torus': 4,
                'k_regular': s.degree, 'complete': c - 1,
                'erdos_renyi': None}[s.graph]
    if per_node is None:   # ER is drawn once; its size is known exactly.
      return max(1, self._logical_graph().num_edges + 2 * c)
    return max(1, c * min(per_node, c - 1) + 2 * c)  # + room for ring fallbacks

  def _logical_graph(self) -> graphs.Graph:
    """A position-free graph over the cohort, drawn once per run."""
    if self._static_graph is None:
      c, s = self.cohort, self.spec
      if s.graph == 'ring':
        g = graphs.ring(c)
      elif s.graph == 'torus':
        g = graphs.torus(*_torus_shape(c))
      elif s.graph == 'complete':
        g = graphs.complete(c)
      elif s.graph == 'erdos_renyi':
        g = graphs.erdos_renyi(c, s.er_prob, self.seed)
      else:
        g = graphs.k_regular(c, s.degree, self.seed)
      self._static_graph = g
    return self._static_graph

  def _d2d_graph(self, pos: np.ndarray) -> graphs.Graph:
    if self.spec.graph == 'geometric':
      return nearest_peer_graph(pos, self.spec.d2d_range_m, self.spec.max_neighbors)
    return self._logical_graph()

  def _padded(self, graph: graphs.Graph) -> dict:
    senders, receivers, mask = graphs.pad_edges(graph, self.capacity)
    return {'senders': senders, 'receivers': receivers, 'edge_mask': mask}

  def __call__(self, round_idx: int):
    """(topo arrays for the jitted round, host-side graph statistics)."""
    spec = self.spec
    rng = np.random.default_rng([self.seed, 0x7090, round_idx])
    cohort = np.asarray(self._cohort_fn(round_idx))
    pos = np.asarray(self._positions_fn(jnp.asarray(cohort), round_idx), np.float32)
    topo, stats = {'positions': pos}, {}
    if spec.kind == 'centralized':
      return topo, stats
    if spec.kind == 'hierarchical':
      topo['cluster'] = self._nearest_center(pos)
      topo['edge_positions'] = self.centers
      return topo, stats
    if spec.kind == 'semi':
      cluster = self._clusters(cohort, pos)
      graph = self._intra_cluster(pos, cluster, round_idx)
    else:
      graph = self._d2d_graph(pos)
    if spec.link_failure_prob > 0:
      graph = graphs.drop_links(graph, spec.link_failure_prob, rng)
    labels = graphs.connected_components(graph)
    stats['graph/d2d_links'] = graph.num_edges // 2
    stats['graph/components'] = int(labels.max()) + 1 if len(labels) else 0
    if spec.kind == 'tree':
      station = np.full(2, self.xr_spec.area_m / 2, np.float32)
      roots = [int(np.flatnonzero(labels == c)[np.argmin(np.linalg.norm(
          pos[labels == c] - station, axis=-1))]) for c in range(labels.max() + 1)]
      _, parent, depth = graphs.minimum_spanning_forest(
          graph, graphs.edge_distances(graph, pos), roots=roots)
      topo.update(parent=parent, depth=depth)
      stats['graph/tree_depth'] = int(depth.max())
      return topo, stats
    topo.update(self._padded(graph))
    if spec.kind == 'semi':
      k = spec.num_clusters
      size = np.bincount(cluster, minlength=k)
      reps = np.zeros(k, np.int32)
      for c in np.flatnonzero(size):
        reps[c] = rng.choice(np.flatnonzero(cluster == c))
      topo.update(cluster=cluster, representatives=reps,
                  cluster_size=size.astype(np.int32), cluster_live=size > 0)
    return topo, stats

  def _nearest_center(self, pos):
    d = np.linalg.norm(pos[:, None, :] - self.centers[None], axis=-1)
    return np.argmin(d, axis=1).astype(np.int32)

  def _clusters(self, cohort, pos):
    k = self.spec.num_clusters
    if self.spec.cluster_by == 'position':
      return self._nearest_center(pos)
    if self.spec.cluster_by == 'device':
      return (np.asarray(self._devices_fn(jnp.asarray(cohort))) % k).astype(np.int32)
    return (cohort % k).astype(np.int32)

  def _intra_cluster(self, pos, cluster, round_idx):
    """The D2D graph of each cluster on its own members, joined."""
    pairs = []
    for c in range(self.spec.num_clusters):
      members = np.flatnonzero(cluster == c)
      m = len(members)
      if m < 2:
        continue
      if self.spec.graph == 'geometric':
        local = nearest_peer_graph(pos[members], self.spec.d2d_range_m,
                                   self.spec.max_neighbors)
        if local.num_edges == 0:
          if self.spec.d2d_fallback == 'none':
            raise ConfigError(
                f'round {round_idx}: cluster {c} has {m} clients and no D2D link '
                f'within {self.spec.d2d_range_m} m; raise topology.d2d_range_m or '
                "set topology.d2d_fallback='ring'")
          local = graphs.ring(m) if m > 2 else graphs.from_edge_list(2, [(0, 1)])
      elif self.spec.graph == 'ring':
        local = graphs.ring(m) if m > 2 else graphs.from_edge_list(2, [(0, 1)])
      else:
        local = graphs.complete(m)
      pairs.extend(members[local.undirected_edges()].tolist())
    return graphs.from_edge_list(len(cluster), [tuple(p) for p in pairs])
