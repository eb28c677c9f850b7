"""DP-FTRL by tree aggregation (Kairouz et al. 2021), as per-round server noise.

DP-FTRL releases noisy prefix sums of the rounds' clipped update sums,
S_t + Z_t, where Z_t is the binary-tree mechanism's noise: one N(0,
(sigma C)^2 I) draw per dyadic node, Z_t the sum over the nodes of t's
binary decomposition (popcount(t) of them). The server applies the
increments (S_t + Z_t) - (S_{t-1} + Z_{t-1}), so `noise` returns
Z_t - Z_{t-1}: adding the round's sum and this noise every round
accumulates exactly the released prefix sums. Any server optimizer on the
increments is post-processing of the release (momentum included).

The tree restarts every `tree_rounds` rounds (as Kairouz et al. restart it
every epoch): the finished tree's noise stays in the model and a fresh
tree starts. No amplification by sampling is claimed: clients may be
picked in any way, and the privacy depends only on how often one client
takes part in one tree.

Accounting (Kairouz et al. 2021, App. D, as dp-accounting's
SingleEpochTreeAggregationDpEvent implements it). Neighbours differ by one
client's updates replaced with zeros (dp-accounting's REPLACE_SPECIAL:
add/remove of a client's contributions under a fixed schedule), so a participation
moves each node on its leaf-to-root path by <= C. The released node vector
of one tree is a Gaussian mechanism with L2 sensitivity C sqrt(W), W the
largest sum over nodes of (participations under the node)^2:
  one participation per tree   W = depth = ceil(log2(tree_rounds + 1)),
                               the paper's bound (App. D), in dp-accounting;
  p per tree                   W from `_worst_energy` (exact worst case over
                               placements on the released nodes); note
                               W > p depth when participations share nodes
                               (p = 2, tree_rounds = 2: W = 6, not 4).
Trees are independent, so the run is one Gaussian of multiplier
sigma / sqrt(sum over trees of W), accounted by dp-accounting. (Replacing
one client by another moves a node by up to 2C: that relation's epsilon
is this one's at sigma / 2.)

In a run (`privacy.mechanism=dp_ftrl`, `dp_ftrl_mean`): the cohorts are a
public, data-independent schedule (a pure function of the seed), so W is
computed exactly from it (`schedule_energy`: the largest over clients of
the sum over released nodes of its participations under the node,
squared), never below the paper's one-participation bound for a client that
takes part once per tree, and never above `sensitivity_energy` at the
schedule's most participations per tree.
"""
import dataclasses
import math
from typing import Callable, NamedTuple

import dp_accounting
import jax
import jax.numpy as jnp
import numpy as np
from dp_accounting import pld, rdp

from fedxr_jax.aggregators import dp_mean as dp_mean_lib
from fedxr_jax.core import aggregation
from fedxr_jax.errors import ConfigError
from fedxr_jax.privacy import accounting

ACCOUNTANTS = ('rdp', 'pld')


def depth(tree_rounds: int) -> int:
  """Levels of released nodes in a tree of `tree_rounds` leaves: ceil(log2(T + 1))."""
  if tree_rounds < 1:
    raise ConfigError(f'ftrl tree_rounds must be >= 1, got {tree_rounds}')
  return int(tree_rounds).bit_length()


class TreeState(NamedTuple):
  # Per leaf of the params tree: [depth, *leaf.shape] noise of the nodes in
  # the current prefix's binary decomposition (zeros on the others).
  nodes: object


class TreeNoise(NamedTuple):
  init: Callable   # (params_like) -> TreeState
  noise: Callable  # (state, round_idx, key) -> (noise tree, TreeState)


def node_noise(key: jax.Array, round_idx, params_like, stddev: float):
  """The noise of the node completed at `round_idx`: N(0, stddev^2) per coordinate, float32.

  One key per round (fold_in(key, round_idx)), split over the leaves.
  """
  leaves, treedef = jax.tree.flatten(params_like)
  keys = jax.random.split(jax.random.fold_in(key, round_idx), len(leaves))
  return jax.tree.unflatten(treedef, [
      stddev * jax.random.normal(k, jnp.shape(x), jnp.float32)
      for k, x in zip(keys, leaves)])


def tree_noise(stddev: float, tree_rounds: int) -> TreeNoise:
  """The binary-tree noise as an (init, noise) pair usable inside a compiled round.

  stddev: sigma C, in units of the round's sum of clipped updates (scale
  it like the sum, e.g. divide by the expected cohort size with it).
  round_idx: 0-based round of the run; the tree position is
  t = round_idx mod tree_rounds + 1. `key` is the run's DP-FTRL stream:
  pass the same key every round (node noises fold in the round).
  Memory: depth copies of the noised trees.
  """
  if stddev < 0:
    raise ConfigError(f'ftrl noise stddev must be >= 0, got {stddev}')
  levels = depth(tree_rounds)

  def init(params_like) -> TreeState:
    return TreeState(jax.tree.map(
        lambda x: jnp.zeros((levels,) + jnp.shape(x), jnp.float32), params_like))

  def noise(state: TreeState, round_idx, key):
    t = jnp.asarray(round_idx, jnp.int32) % tree_rounds + 1
    level = jax.lax.population_count((t & -t) - 1)   # trailing zeros of t
    fresh = node_noise(key, round_idx,
                       jax.tree.map(lambda n: n[0], state.nodes), stddev)
    ids = jnp.arange(levels)
    # Nodes below `level` merge into the new node; a restart (t = 1) drops
    # the finished tree from the state without subtracting its noise.
    below = ids < level
    keep = (ids > level) & (t > 1)
    mask = lambda m, z: m.reshape((levels,) + (1,) * z.ndim)

    def increment(nodes, z):
      return z - jnp.sum(jnp.where(mask(below, z), nodes, 0.0), axis=0)

    def update(nodes, z):
      kept = jnp.where(mask(keep, z), nodes, 0.0)
      return jnp.where(mask(ids == level, z), z[None], kept)

    return (jax.tree.map(increment, state.nodes, fresh),
            TreeState(jax.tree.map(update, state.nodes, fresh)))

  return TreeNoise(init, noise)


def _maxplus(a, b, cap):
  """c[j] = max_i a[i] + b[j - i], j <= cap (-inf where no split exists)."""
  size = min(len(a) + len(b) - 1, cap + 1)
  c = np.full(size, -np.inf)
  for i, ai in enumerate(a):
    if i >= size:
      break
    j = min(len(b), size - i)
    c[i:i + j] = np.maximum(c[i:i + j], ai + b[:j])
  return c


def _worst_energy(tree_rounds: int, participations: int) -> float:
  """max over placements of <= p leaves in 1..T of sum over released nodes of count^2.

  Released nodes: dyadic intervals of 2^l leaves ending at or before T.
  Max-plus dynamic programme over the virtual complete tree of 2^depth
  leaves: a full subtree's table depends only on its level. O(p^2 log T).
  """
  cap = participations
  full = [np.array([0.0, 1.0])[:cap + 1]]            # a leaf: 0 or 1 participation
  for _ in range(depth(tree_rounds)):
    g = _maxplus(full[-1], full[-1], cap)
    full.append(g + np.arange(len(g)) ** 2)

  def table(level, lo):   # the subtree of 2^level leaves starting at leaf lo (1-based)
    hi = lo + 2 ** level - 1
    if lo > tree_rounds:
      return np.array([0.0])
    if hi <= tree_rounds:
      return full[level]
    half = 2 ** (level - 1)
    return _maxplus(table(level - 1, lo), table(level - 1, lo + half), cap)

  return float(np.max(table(depth(tree_rounds), 1)))


def sensitivity_energy(rounds: int, tree_rounds: int, participations_per_tree: int = 1) -> float:
  """W of the run in units of C^2: the Gaussian's squared L2 sensitivity over all trees.

  rounds: rounds of the run; the last tree may be partial. A client takes
  part at most `participations_per_tree` times in each tree.
  """
  if rounds < 1:
    raise ConfigError(f'ftrl needs rounds >= 1, got {rounds}')
  depth(tree_rounds)
  if participations_per_tree < 1:
    raise ConfigError('ftrl participations_per_tree must be >= 1, got '
                      f'{participations_per_tree}')
  full, last = divmod(int(rounds), int(tree_rounds))
  energy = full * _worst_energy(tree_rounds, min(participations_per_tree, tree_rounds))
  if last:
    energy += _worst_energy(last, min(participations_per_tree, last))
  return energy


def event(noise_multiplier: float, *, rounds: int, tree_rounds: int,
          participations_per_tree: int = 1) -> dp_accounting.GaussianDpEvent:
  """The run as one Gaussian: multiplier sigma / sqrt(W), sensitivity-1 add/remove."""
  if noise_multiplier < 0:
    raise ConfigError(f'privacy.noise_multiplier must be >= 0, got {noise_multiplier}')
  energy = sensitivity_energy(rounds, tree_rounds, participations_per_tree)
  return dp_accounting.GaussianDpEvent(noise_multiplier / math.sqrt(energy))


def _accountant(accountant):
  if accountant not in ACCOUNTANTS:
    raise ConfigError(f'privacy.accountant must be one of {ACCOUNTANTS}, got {accountant!r}')
  # Add/remove: dp-accounting reads a GaussianDpEvent as sensitivity 1.
  return rdp.RdpAccountant(accounting.RDP_ORDERS) if accountant == 'rdp' else pld.PLDAccountant()


def epsilon(noise_multiplier: float, *, delta: float, rounds: int, tree_rounds: int,
            participations_per_tree: int = 1, accountant: str = 'rdp') -> float:
  """Client-level epsilon at `delta` of DP-FTRL over `rounds` rounds (inf if sigma = 0)."""
  delta = accounting.check_delta(delta)
  ev = event(noise_multiplier, rounds=rounds, tree_rounds=tree_rounds,
             participations_per_tree=participations_per_tree)
  return float(_accountant(accountant).compose(ev).get_epsilon(delta))


def noise_multiplier_for(target_epsilon: float, *, delta: float, rounds: int,
                         tree_rounds: int, participations_per_tree: int = 1,
                         accountant: str = 'rdp', tol: float = 1e-3) -> float:
  """The smallest sigma (within `tol`) whose DP-FTRL epsilon is <= target."""
  delta = accounting.target_delta(target_epsilon, delta)
  _accountant(accountant)
  energy = sensitivity_energy(rounds, tree_rounds, participations_per_tree)
  return accounting.calibrate(
      lambda sigma: dp_accounting.GaussianDpEvent(sigma / math.sqrt(energy)),
      lambda: _accountant(accountant), target_epsilon, delta, tol)


# ---- in a run: the schedule's sensitivity and the server's aggregate ---------


@dataclasses.dataclass(frozen=True)
class Settings:
  """`privacy.ftrl` (privacy.mechanism=dp_ftrl): the binary tree restarts every
  tree_rounds rounds (0: one tree over the whole run)."""
  tree_rounds: int = 0


def participation(cohorts, population: int) -> np.ndarray:
  """[R, P] bool: client i took part in round r (cohorts: R arrays of ids)."""
  out = np.zeros((len(cohorts), int(population)), bool)
  for r, ids in enumerate(cohorts):
    out[r, np.asarray(ids, np.int64)] = True
  return out


def schedule_energy(participates, tree_rounds: int) -> np.ndarray:
  """[R] W after each round: max over clients of sum over released nodes of count^2.

  participates [R, P] bool (`participation`); a node (2^l leaves of a tree)
  counts from the round it completes. Units of C^2, as `sensitivity_energy`.
  """
  x = np.asarray(participates, np.int64)
  if x.ndim != 2 or x.shape[0] < 1:
    raise ConfigError(f'ftrl needs a [rounds, population] schedule, got shape {x.shape}')
  levels = depth(tree_rounds)
  gain = np.zeros(x.shape, np.float64)
  for start in range(0, x.shape[0], int(tree_rounds)):
    tree = x[start:start + int(tree_rounds)]
    below = np.concatenate([np.zeros((1, x.shape[1]), np.int64), np.cumsum(tree, 0)])
    for level in range(levels):
      size = 2 ** level
      for end in range(size, tree.shape[0] + 1, size):   # 1-based leaf that completes it
        gain[start + end - 1] += (below[end] - below[end - size]) ** 2
  return np.max(np.cumsum(gain, axis=0), axis=1)


def epsilon_for_energy(noise_multiplier: float, energy: float, *, delta: float,
                       accountant: str = 'rdp') -> float:
  """Epsilon of one Gaussian of multiplier sigma / sqrt(energy) (0: nobody took part)."""
  delta = accounting.check_delta(delta)
  acc = _accountant(accountant)
  if energy <= 0:
    return 0.0
  if noise_multiplier == 0:
    return math.inf
  ev = dp_accounting.GaussianDpEvent(noise_multiplier / math.sqrt(energy))
  return float(acc.compose(ev).get_epsilon(delta))


def noise_for_energy(target_epsilon: float, energy: float, *, delta: float,
                     accountant: str = 'rdp', tol: float = 1e-3) -> float:
  """The smallest sigma (within `tol`) with epsilon_for_energy(sigma, energy) <= target."""
  delta = accounting.target_delta(target_epsilon, delta)
  _accountant(accountant)
  if not energy > 0:
    raise ConfigError('ftrl: no client takes part in the run, nothing to calibrate')
  return accounting.calibrate(
      lambda sigma: dp_accounting.GaussianDpEvent(sigma / math.sqrt(energy)),
      lambda: _accountant(accountant), target_epsilon, delta, tol)


def dp_ftrl_mean(*, noise_multiplier: float, expected_cohort_size: float, clip_norm: float,
                 tree_rounds: int) -> aggregation.Aggregator:
  """DP-FTRL's server aggregate: the DP mean's sum, tree noise instead of fresh noise.

  target = shared + (sum of clipped updates + Z_t - Z_{t-1}) / m, Z_t the
  tree noise of the round's position (`tree_noise`, stddev sigma C per
  node), m the expected cohort size: applied round after round, the model
  moves by the released noisy prefix sums. The tree's nodes and the round
  counter are this aggregator's state.
  """
  inner = dp_mean_lib.dp_mean(noise_multiplier=0.0, expected_cohort_size=expected_cohort_size,
                              clip_norm=clip_norm)
  if noise_multiplier < 0:
    raise ConfigError(f'privacy.noise_multiplier must be >= 0, got {noise_multiplier}')
  tree = tree_noise(noise_multiplier * clip_norm, tree_rounds)

  def init(shared):
    return {'ftrl_nodes': tree.init(shared).nodes, 'ftrl_round': jnp.zeros((), jnp.int32)}

  def aggregate(shared, state, sums, key):
    target, _, metrics = inner.aggregate(shared, {}, sums, key)
    increment, nodes = tree.noise(TreeState(state['ftrl_nodes']), state['ftrl_round'],
                                  jax.random.fold_in(key, 2))
    target = jax.tree.map(lambda t, z: (t + z / expected_cohort_size).astype(t.dtype),
                          target, increment)
    metrics = {**metrics, 'dp/noise_stddev': jnp.asarray(
        noise_multiplier * clip_norm / expected_cohort_size, jnp.float32)}
    return target, {'ftrl_nodes': nodes.nodes, 'ftrl_round': state['ftrl_round'] + 1}, metrics

  return aggregation.Aggregator('dp_ftrl', aggregate, inner.contribute, init)
