"""DP-FTRL tree noise: exact per-round structure, prefix covariance, and its accounting."""
import itertools
import math

import dp_accounting
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dp_accounting import pld, rdp

from fedxr_jax.errors import ConfigError
from fedxr_jax.privacy import accounting, ftrl

DELTA = 1e-5
PARAMS = {'w': jnp.zeros((2, 3)), 'b': (jnp.zeros((4,)),)}


def _run(tree_rounds, rounds, key, stddev=1.0, params=PARAMS):
  """Per-round noises of rounds 0..rounds-1 from one jitted `noise`."""
  tree = ftrl.tree_noise(stddev, tree_rounds)
  step = jax.jit(tree.noise)
  state, out = tree.init(params), []
  for r in range(rounds):
    n, state = step(state, r, key)
    out.append(n)
  return out, state


@pytest.mark.fusion_emitters
def test_per_round_noise_on_a_hand_example():
  # Tree of 4 leaves, then a restart. node(r): the node completed at round r.
  key = jax.random.key(5)
  node = lambda r: ftrl.node_noise(key, r, PARAMS, 1.0)
  out, _ = _run(4, 7, key)
  expected = [
      node(0),                                   # t=1: Z_1 = [1]
      jax.tree.map(lambda a, b: a - b, node(1), node(0)),   # t=2: Z_2 = [1,2]
      node(2),                                   # t=3: Z_3 = [1,2] + [3]
      jax.tree.map(lambda a, b, c: a - (b + c), node(3), node(2), node(1)),   # t=4: [1,4]
      node(4),                                   # restart: the old tree's noise stays
      jax.tree.map(lambda a, b: a - b, node(5), node(4)),
      node(6),
  ]
  for got, want in zip(out, expected):
    jax.tree.map(np.testing.assert_array_equal, got, want)


@pytest.mark.fusion_emitters
def test_state_holds_the_nodes_of_the_binary_decomposition():
  key = jax.random.key(2)
  _, state = _run(8, 6, key)     # t = 6 = 110b: levels 1 ([5,6]) and 2 ([1,4])
  nodes = state.nodes['w']
  np.testing.assert_array_equal(nodes[0], 0.0)
  np.testing.assert_array_equal(nodes[1], ftrl.node_noise(key, 5, PARAMS, 1.0)['w'])
  np.testing.assert_array_equal(nodes[2], ftrl.node_noise(key, 3, PARAMS, 1.0)['w'])
  np.testing.assert_array_equal(nodes[3], 0.0)


def _nodes(t):
  """The dyadic nodes of prefix [1, t]: (level, t >> level) for each set bit."""
  return {(l, t >> l) for l in range(t.bit_length()) if t >> l & 1}


def test_prefix_noise_covariance_matches_the_tree_mechanism():
  # Cov(Z_s, Z_t) = (sigma C)^2 |nodes(s) & nodes(t)|; Var(Z_t) = (sigma C)^2 popcount(t).
  stddev, tree_rounds, keys, dim = 1.5, 7, 4000, 8
  tree = ftrl.tree_noise(stddev, tree_rounds)
  like = jnp.zeros((dim,))

  def run(key):
    def body(state, r):
      n, state = tree.noise(state, r, key)
      return state, n
    _, per_round = jax.lax.scan(body, tree.init(like), jnp.arange(tree_rounds))
    return jnp.cumsum(per_round, axis=0)                    # Z_1..Z_7: [7, dim]

  prefix = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(0), keys))
  samples = np.asarray(prefix, np.float64).transpose(0, 2, 1).reshape(-1, tree_rounds)
  n = samples.shape[0]                                      # 32000 draws per prefix
  cov = samples.T @ samples / n                             # the mean is 0 by construction
  want = stddev ** 2 * np.array([[len(_nodes(s) & _nodes(t)) for t in range(1, 8)]
                                 for s in range(1, 8)], np.float64)
  assert np.diag(want).tolist() == [stddev ** 2 * bin(t).count('1') for t in range(1, 8)]
  # Standard error of a Gaussian sample covariance: sqrt((v_s v_t + c_st^2) / n).
  v = np.diag(want)
  se = np.sqrt((np.outer(v, v) + want ** 2) / n)
  assert np.all(np.abs(cov - want) < 5 * se)                # a 5-sigma band per entry


def test_noise_compiles_once_for_every_round():
  traces = []
  tree = ftrl.tree_noise(1.0, 5)

  @jax.jit
  def step(state, r, key):
    traces.append(1)
    return tree.noise(state, r, key)

  state = tree.init(PARAMS)
  for r in range(12):
    _, state = step(state, r, jax.random.key(0))
  assert len(traces) == 1


def _brute_energy(tree_rounds, participations):
  nodes = [(s, s + 2 ** l - 1) for l in range(tree_rounds.bit_length())
           for s in range(1, tree_rounds + 1, 2 ** l) if s + 2 ** l - 1 <= tree_rounds]
  return max(sum(sum(a <= x <= b for x in leaves) ** 2 for a, b in nodes)
             for k in range(1, participations + 1)
             for leaves in itertools.combinations(range(1, tree_rounds + 1), k))


def test_sensitivity_energy_by_hand_and_by_brute_force():
  # One participation: the paper's depth ceil(log2(T + 1)).
  assert [ftrl.sensitivity_energy(t, t) for t in (1, 2, 3, 4, 7, 8, 100)] == \
      [1, 2, 2, 3, 3, 4, 7]
  # Two participations in a tree of 2: leaves 1, 1 and the root 2^2 = 6 (not 2 x depth = 4).
  assert ftrl.sensitivity_energy(2, 2, 2) == 6
  # Everyone in all 4 rounds: 4 leaves + 2 nodes of 2^2 + the root 4^2 = 28.
  assert ftrl.sensitivity_energy(4, 4, 4) == 28
  for t in range(1, 9):
    for p in range(1, t + 1):
      assert ftrl.sensitivity_energy(t, t, p) == _brute_energy(t, p), (t, p)
  # Restarts: two full trees of 4 (3 each) and a partial tree of 2 rounds (2).
  assert ftrl.sensitivity_energy(10, 4) == 8


@pytest.mark.parametrize('sigma,tree_rounds,trees', [(2.0, 15, 1), (3.0, 16, 4), (1.5, 100, 3)])
def test_epsilon_matches_dp_accountings_tree_aggregation_event(sigma, tree_rounds, trees):
  ours = ftrl.epsilon(sigma, delta=DELTA, rounds=tree_rounds * trees, tree_rounds=tree_rounds)
  acc = rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_SPECIAL)
  tree = dp_accounting.SelfComposedDpEvent(
      dp_accounting.SingleEpochTreeAggregationDpEvent(sigma, tree_rounds), trees)
  assert ours == pytest.approx(acc.compose(tree).get_epsilon(DELTA), rel=1e-12)


@pytest.mark.parametrize('accountant', ftrl.ACCOUNTANTS)
def test_epsilon_is_dp_accountings_gaussian_at_sigma_over_root_energy(accountant):
  energy = 3 * 28.0            # 12 rounds, trees of 4, everyone every round
  direct = (rdp.RdpAccountant() if accountant == 'rdp' else pld.PLDAccountant()).compose(
      dp_accounting.GaussianDpEvent(20.0 / math.sqrt(energy))).get_epsilon(DELTA)
  assert ftrl.epsilon(20.0, delta=DELTA, rounds=12, tree_rounds=4, participations_per_tree=4,
                      accountant=accountant) == direct


def test_calibrated_sigma_meets_the_target_within_tol():
  kw = dict(delta=DELTA, rounds=60, tree_rounds=60)
  sigma = ftrl.noise_multiplier_for(4.0, tol=1e-3, **kw)
  assert ftrl.epsilon(sigma, **kw) <= 4.0 < ftrl.epsilon(sigma - 2e-3, **kw)


def test_bad_settings_are_one_line_config_errors():
  for call, words in [(lambda: ftrl.tree_noise(1.0, 0), 'tree_rounds'),
                      (lambda: ftrl.tree_noise(-1.0, 4), 'stddev'),
                      (lambda: ftrl.sensitivity_energy(4, 4, 0), 'participations'),
                      (lambda: ftrl.sensitivity_energy(0, 4), 'rounds'),
                      (lambda: ftrl.epsilon(1.0, delta=DELTA, rounds=4, tree_rounds=4,
                                            accountant='prv'), 'accountant'),
                      (lambda: ftrl.epsilon(1.0, delta=None, rounds=4, tree_rounds=4), 'delta')]:
    with pytest.raises(ConfigError, match=words) as err:
      call()
    assert '\n' not in str(err.value)
  assert ftrl.epsilon(0.0, delta=DELTA, rounds=4, tree_rounds=4) == math.inf
