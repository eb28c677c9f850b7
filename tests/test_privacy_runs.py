"""Issue 24 wired into runs: Poisson + PLD, DP-FTRL, SecAgg costs, the audited epsilon.

Known answers: each run's epsilon is dp-accounting's called directly on the
event the run's sampler and mechanism make; a Poisson run's cohorts are the
clients `poisson.included` draws (Binomial sizes, chi-square); the SecAgg
bits in a round's comm/ rows are the hand-computed protocol messages; the
audited epsilon on the device is `audit.audit` on the host and stays below
the accountant's. Fast ones use the tiny problem (tests/tiny.py); one run
goes through `fedxr-train`'s loop and `fedxr-report`.
"""
import math
import os
import sys

import dp_accounting
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import stats

sys.path.insert(0, os.path.dirname(__file__))
import tiny  # pylint: disable=wrong-import-position
from helpers import run_rounds  # pylint: disable=wrong-import-position

from fedxr_jax.compose import pipeline
from fedxr_jax.configs import blocks
from fedxr_jax.core import aggregation
from fedxr_jax.core import algorithm as algorithm_lib
from fedxr_jax.core import contribution as contribution_lib
from fedxr_jax.core import rng
from fedxr_jax.errors import ConfigError
from fedxr_jax.privacy import accountants
from fedxr_jax.privacy import audit
from fedxr_jax.privacy import feature
from fedxr_jax.privacy import ftrl
from fedxr_jax.privacy import poisson


def _block(**changes):
  p = ml_collections.ConfigDict(blocks.dataclass_block('fedxr_jax.privacy.feature', 'Settings'))
  for key, value in changes.items():
    *parents, leaf = key.split('__')
    node = p
    for part in parents:
      node = node[part]
    node[leaf] = value
  return p


def _run(population=500, cohort=32, rounds=6, seed=0, problem=None, source=None, plan=None):
  facts = algorithm_lib.RunFacts(seed=seed, population_size=population, cohort_size=cohort,
                                 plan=plan or {}, num_rounds=rounds)
  return pipeline.RunContext(facts, rounds, None, None, problem, source)


def _direct(event, relation, accountant, rounds, delta):
  new = {'rdp': dp_accounting.rdp.RdpAccountant, 'pld': dp_accounting.pld.PLDAccountant}
  return new[accountant](neighboring_relation=relation).compose(event, rounds).get_epsilon(delta)


@pytest.mark.parametrize('sampling, accountant', [('fixed', 'rdp'), ('poisson', 'rdp'),
                                                  ('poisson', 'pld')])
def test_each_rows_epsilon_is_dp_accounting_on_the_samplers_event(sampling, accountant):
  sigma, delta, rounds = 2.0, 1e-5, 2
  privacy = feature.make_privacy(_block(noise_multiplier=sigma, delta=delta, sampling=sampling,
                                        accountant=accountant), _run(rounds=rounds))
  if sampling == 'poisson':
    event = dp_accounting.PoissonSampledDpEvent(32 / 500, dp_accounting.GaussianDpEvent(sigma))
    relation = dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
  else:
    event = dp_accounting.SampledWithoutReplacementDpEvent(
        500, 32, dp_accounting.GaussianDpEvent(sigma / 2))
    relation = dp_accounting.NeighboringRelation.REPLACE_ONE
  for t in range(1, rounds + 1):
    row = privacy.host_metrics(t)
    assert row['privacy/epsilon'] == _direct(event, relation, accountant, t, delta)
    assert (row['privacy/accountant'], row['privacy/sampling']) == (accountant, sampling)
    assert row['privacy/mechanism'] == 'dp_fedavg'


def test_poisson_pld_is_tighter_than_the_fixed_samplers_rdp_at_the_issues_setting():
  # Issue 24: sigma 2.89, 32 of 500, 60 rounds: fixed-size RDP reports 3.99.
  sizes = dict(delta=1e-5, rounds=60, cohort_size=32, population=500)
  fixed = accountants.epsilon(2.89, sampling='fixed', accountant='rdp', **sizes)
  tight = accountants.epsilon(2.89, sampling='poisson', accountant='pld', **sizes)
  assert fixed == pytest.approx(3.99, abs=0.01) and tight < 0.5 * fixed


def test_dp_ftrl_epsilon_is_one_gaussian_at_the_schedules_exact_sensitivity():
  sigma, delta, rounds, tree = 4.0, 1e-5, 5, 4
  run = _run(population=12, cohort=6, rounds=rounds)
  privacy = feature.make_privacy(_block(noise_multiplier=sigma, delta=delta,
                                        mechanism='dp_ftrl', ftrl__tree_rounds=tree), run)
  cohorts = feature.cohort_schedule(run.facts, rounds)
  # By hand: every released node's participations, squared, summed, per client.
  worst = 0.0
  for client in range(12):
    took = [client in c for c in cohorts]
    energy = 0.0
    for start in range(0, rounds, tree):
      leaves = took[start:start + tree]
      for size in (1, 2, 4):
        for end in range(size, len(leaves) + 1, size):
          energy += sum(leaves[end - size:end]) ** 2
    worst = max(worst, energy)
  expected = dp_accounting.rdp.RdpAccountant().compose(
      dp_accounting.GaussianDpEvent(sigma / math.sqrt(worst))).get_epsilon(delta)
  assert privacy.host_metrics(rounds)['privacy/epsilon'] == expected
  assert privacy.host_metrics(rounds)['privacy/mechanism'] == 'dp_ftrl'
  # A client in every round of one tree is the library's worst placement.
  assert ftrl.schedule_energy(np.ones((tree, 1), bool), tree)[-1] == ftrl.sensitivity_energy(
      tree, tree, tree)


def test_dp_ftrl_aggregate_moves_the_model_by_the_trees_prefix_noise():
  sigma, clip, m = 0.5, 2.0, 4.0
  agg = ftrl.dp_ftrl_mean(noise_multiplier=sigma, expected_cohort_size=m, clip_norm=clip,
                          tree_rounds=4)
  shared = {'a': {'w': jnp.zeros((3,))}}
  zero = agg.contribute(aggregation.ClientUpdate(
      model=shared, update=shared, weights={'a': jnp.float32(1.0)}, client_id=0))
  step = jax.jit(agg.aggregate)
  state, model, keys = agg.init(shared), shared, jax.random.split(jax.random.key(9), 6)
  models = []
  for r in range(6):
    model, state, _ = step(model, state, zero, keys[r])
    models.append(model['a']['w'])
  fresh = [ftrl.node_noise(jax.random.fold_in(keys[r], 2), r, shared, sigma * clip)['a']['w']
           for r in range(6)]
  # Round t's model holds the noise of t's binary decomposition's nodes (their
  # completion rounds); a new tree (t = 5) keeps the finished tree's noise.
  for t, nodes in ((1, [0]), (2, [1]), (3, [1, 2]), (4, [3]), (5, [3, 4]), (6, [3, 5])):
    np.testing.assert_allclose(models[t - 1], sum(fresh[i] for i in nodes) / m, rtol=1e-5,
                               atol=1e-7)


def test_poisson_run_cohorts_are_the_drawn_clients_and_sizes_are_binomial():
  population, expected, rounds = 60, 6, 600
  p = _block(sampling='poisson')
  size = feature.compiled_cohort_size(p, population=population, cohort_size=expected,
                                      rounds=rounds)
  assert poisson.run_overflow_probability(population, 0.1, size, rounds) <= 1e-6
  sample = feature.cohort_sampler(p, seed=3, population=population, cohort_size=expected,
                                  rounds=rounds)
  key = rng.run_key(rng.key_data(3))
  drawn = jax.jit(jax.vmap(lambda r: poisson.included(key, r, jnp.arange(population), 0.1)))(
      jnp.arange(rounds))
  counts = np.asarray(drawn).sum(1)
  for r in range(5):   # the padded cohort holds every drawn client, then non-drawn ones
    ids = sample(r)
    assert ids.shape == (size,) and np.all(np.diff(ids) > 0)
    assert set(np.flatnonzero(np.asarray(drawn[r]))) <= set(ids.tolist())
  # Chi-square of the round sizes against Binomial(P, q), tails pooled to expected >= 5.
  lo, hi = int(stats.binom.ppf(5 / rounds, population, 0.1)), int(
      stats.binom.isf(5 / rounds, population, 0.1))
  observed = [np.sum(counts <= lo)] + [np.sum(counts == k) for k in range(lo + 1, hi)] + [
      np.sum(counts >= hi)]
  probs = np.array([stats.binom.cdf(lo, population, 0.1)] + [
      stats.binom.pmf(k, population, 0.1) for k in range(lo + 1, hi)] + [
          stats.binom.sf(hi - 1, population, 0.1)])
  chi2 = float(np.sum((np.array(observed) - rounds * probs) ** 2 / (rounds * probs)))
  assert stats.chi2.sf(chi2, len(observed) - 1) > 1e-3


def test_a_poisson_round_is_the_round_of_exactly_the_drawn_clients():
  # The padded cohort's extra clients sit the round out: the model, the uplink bits and
  # the participation are those of a round over the drawn clients alone.
  population, expected, seed = 40, 8, 1
  p = _block(sampling='poisson')
  size = feature.compiled_cohort_size(p, population=population, cohort_size=expected,
                                      rounds=1)
  rate = expected / population
  padded = tiny.setup(population=population, cohort=size, seed=seed,
                      problem_fn=lambda w: poisson.wrap_problem(tiny.problem(w), rate))
  padded = padded._replace(
      world={**padded.world, **jax.tree.map(jnp.asarray, poisson.source_arrays(seed))},
      sample_cohort=feature.cohort_sampler(p, seed=seed, population=population,
                                           cohort_size=expected, rounds=1))
  drawn = np.flatnonzero(np.asarray(poisson.included(
      rng.run_key(rng.key_data(seed)), 0, jnp.arange(population), rate)))
  assert 0 < len(drawn) < size < population
  exact = tiny.setup(population=population, cohort=len(drawn), seed=seed)
  exact = exact._replace(sample_cohort=lambda r: drawn.astype(np.int32))
  (s1, _, [m1]), (s2, _, [m2]) = run_rounds(padded, 1), run_rounds(exact, 1)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               s1.shared, s2.shared)
  assert float(m1['comm/uplink_bits']) == float(m2['comm/uplink_bits'])
  assert float(m1['train/participation']) == np.float32(len(drawn) / size)


@pytest.mark.parametrize('changes, words', [
    (dict(noise_multiplier=1.0, delta=1e-5, accountant='prv'), 'not supported yet: prv'),
    (dict(noise_multiplier=1.0, delta=1e-5, accountant='pld'),
     'no sampling-without-replacement event'),
    (dict(noise_multiplier=1.0, accountant='moments'), 'privacy.accountant must be one of'),
    (dict(sampling='bernoulli'), 'privacy.sampling must be one of'),
    (dict(mechanism='dp_ftrl'), 'needs client-level DP'),
    (dict(noise_multiplier=1.0, mechanism='dp_ftrl', sampling='poisson'), 'Poisson buys nothing'),
    (dict(noise_multiplier=1.0, mechanism='tree'), 'privacy.mechanism must be one of'),
    (dict(secure_aggregation='secagg', sampling='poisson'), 'not supported yet'),
    (dict(secure_aggregation='secagg+'), 'privacy.secure_aggregation must be one of'),
    (dict(audit__canaries=8), 'needs client-level DP'),
    (dict(noise_multiplier=1.0, audit__canaries=8, adaptive_clip__enabled=True),
     'not supported yet: privacy.audit.canaries > 0 with privacy.adaptive_clip'),
    (dict(mode='example', noise_multiplier=1.0, mechanism='dp_ftrl'), 'needs client-level DP'),
    (dict(mode='example', noise_multiplier=1.0, sampling='poisson'),
     'not supported yet: privacy.sampling=poisson with privacy.mode=example'),
])
def test_settings_that_cannot_be_honoured_are_refused_in_one_line(changes, words):
  with pytest.raises(ConfigError, match=words) as err:
    feature.make_privacy(_block(**changes), _run())
  assert '\n' not in str(err.value)


def test_a_poisson_runs_rows_state_its_compiled_size_and_overflow_chance():
  rows = feature.contribute(_block(sampling='poisson'), _run(rounds=20)).host_metrics(3)
  size, q = rows['poisson/compiled_cohort'], 32 / 500
  # By hand: the smallest M with 1 - (1 - P(Binomial(500, q) > M))^20 <= 1e-6.
  chance = lambda m: 1 - (1 - stats.binom.sf(m, 500, q)) ** 20
  assert chance(size) <= 1e-6 < chance(size - 1)
  assert rows['poisson/run_overflow_probability'] == pytest.approx(chance(size), rel=1e-6)


def test_a_padded_size_above_the_overflow_bound_is_refused_in_one_line():
  p = _block(sampling='poisson', poisson__max_cohort=40)
  with pytest.raises(ConfigError, match='overflows it with probability') as err:
    feature.compiled_cohort_size(p, population=500, cohort_size=32, rounds=20)
  assert '\n' not in str(err.value)
  p.poisson.max_cohort = 80
  assert feature.compiled_cohort_size(p, population=500, cohort_size=32, rounds=20) == 80


# ---- the tiny federation: SecAgg's bits and the audit, through the contributions ----

def _tiny(p, population=8, rounds=3, **kw):
  """A tiny federation whose transforms and aggregator are the privacy block's."""
  plan = {'body': 'shared', 'head': 'shared'}
  base = tiny.setup(population=population, cohort=population, plan=plan)
  run = _run(population=population, cohort=population, rounds=rounds, problem=base.problem,
             source=base.world, plan=plan)
  c = feature.contribute(p, run)
  setup = tiny.setup(population=population, cohort=population, plan=plan,
                     transforms=contribution_lib.chain([c]), aggregator=c.aggregator, **kw)
  return setup, c


def test_secagg_bits_in_the_rows_are_the_hand_computed_protocol():
  rounds = 1
  plain = run_rounds(tiny.setup(plan={'body': 'shared', 'head': 'shared'}), rounds)[2][0]
  for protocol, k in (('secagg', 7), ('secagg_plus', 7)):   # n = 8 <= 169: SecAgg+ is complete
    setup, c = _tiny(_block(secure_aggregation=protocol), rounds=rounds)
    row = run_rounds(setup, rounds)[2][0]
    n, d = 8, 4 * 3 + 3 + 2   # body w, head b, and the two module weights (weighted mean)
    field = math.ceil(math.log2(n * (2 ** 16 - 1) + 1))   # 16-bit quantization, no wrap
    up = d * field + 2 * 256 + k * (3 * 256 + 3 * 32 + 224)
    down = k * (2 * 256 + 2 * 256 + 4 * 32 + 224)
    assert float(row['comm/uplink_bits']) == n * up
    assert float(row['comm/downlink_bits']) == float(plain['comm/downlink_bits']) + n * down
    assert c.host_metrics(1)['secagg/extra_round_trips'] == 3
    assert float(row['cost/energy_j']) > float(plain['cost/energy_j'])


@pytest.mark.parametrize('aggregator', ['median', 'krum'])
def test_secagg_refuses_what_needs_individual_updates_in_one_line(aggregator):
  from fedxr_jax.aggregators import registry
  block = ml_collections.ConfigDict({'name': aggregator, **blocks.registry_block(
      'fedxr_jax.aggregators.registry', 'AGGREGATORS')})
  caps = contribution_lib.Capabilities(None, registry.make(block, 8), aggregator, None, ())
  _, c = _tiny(_block(secure_aggregation='secagg'), rounds=1)
  with pytest.raises(ConfigError, match='excludes the aggregators that need') as err:
    c.check(caps)
  assert '\n' not in str(err.value) and aggregator in str(err.value)


def test_audited_epsilon_on_the_device_is_the_hosts_and_below_the_accountants():
  population, rounds, sigma, delta = 48, 3, 1.0, 1e-5
  p = _block(noise_multiplier=sigma, delta=delta, audit__canaries=40)
  setup, c = _tiny(p, population=population, rounds=rounds)
  server, _, metrics = run_rounds(setup, rounds)
  canaries = audit.draw(p.audit, population, 1.0)
  host = audit.audit(np.asarray(server.aggregator['audit_scores']), canaries.included,
                     delta=delta, confidence=0.95)
  lower = float(metrics[-1]['privacy/audit_epsilon'])
  upper = c.info.host_metrics(rounds)['privacy/epsilon']
  assert lower == np.float32(host.epsilon)
  assert 0 < lower <= upper   # the canaries are seen, and never beyond the bound


@pytest.mark.slow   # covered by default: the tests above (each piece) and test_poisson.py
def test_private_run_through_fedxr_train_and_fedxr_report(config, tmp_path):
  from fedxr_jax.metrics import report
  from fedxr_jax.training import loop
  config.privacy.noise_multiplier, config.privacy.delta = 1.0, 1e-5
  config.privacy.sampling, config.privacy.accountant = 'poisson', 'pld'
  config.privacy.audit.canaries = 8
  rows = loop.run(config, str(tmp_path), progress=False)
  for row in rows:
    assert row['privacy/accountant'] == 'pld' and row['privacy/sampling'] == 'poisson'
    assert 0.0 <= row['privacy/audit_epsilon'] <= row['privacy/epsilon']
  text = report.markdown(report.load_runs([str(tmp_path)]))
  assert 'audited epsilon (lower bound)' in text and '| pld |' in text


@pytest.mark.slow   # covered by default: the DP-FTRL epsilon and SecAgg bits tests above
def test_dp_ftrl_with_secagg_costs_through_fedxr_train(config, tmp_path):
  from fedxr_jax.training import loop
  config.privacy.noise_multiplier, config.privacy.delta = 2.0, 1e-5
  config.privacy.mechanism, config.privacy.ftrl.tree_rounds = 'dp_ftrl', 2
  plain = loop.run(config.copy_and_resolve_references(), str(tmp_path / 'plain'),
                   progress=False)
  config.privacy.secure_aggregation = 'secagg_plus'
  rows = loop.run(config, str(tmp_path / 'secagg'), progress=False)
  eps = [r['privacy/epsilon'] for r in rows]
  assert all(r['privacy/mechanism'] == 'dp_ftrl' for r in rows)
  assert all(a <= b for a, b in zip(eps, eps[1:])) and np.isfinite(eps[-1])
  for p, s in zip(plain, rows):
    assert s['comm/downlink_bits'] > p['comm/downlink_bits']
    assert s['secagg/extra_round_trips'] == 3
