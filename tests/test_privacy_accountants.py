"""Accountants by name: each epsilon equals dp-accounting called directly on the sampler's event."""
import dp_accounting
import pytest
from dp_accounting import pld, rdp

from fedxr_jax.errors import ConfigError
from fedxr_jax.privacy import accountants, accounting

DELTA = 1e-5
NR = dp_accounting.NeighboringRelation
SMALL = dict(cohort_size=32, population=500)


def _direct(sampling, accountant, sigma, rounds, cohort=32, population=500):
  """dp-accounting by hand: the sampler's exact event, the relation its bound needs."""
  if sampling == 'fixed':
    # Replace-one: the clipped sum moves by 2C against noise sigma C, so sigma / 2.
    event = dp_accounting.SampledWithoutReplacementDpEvent(
        population, cohort, dp_accounting.GaussianDpEvent(sigma / 2))
    relation = NR.REPLACE_ONE
  else:
    event = dp_accounting.PoissonSampledDpEvent(cohort / population,
                                                dp_accounting.GaussianDpEvent(sigma))
    relation = NR.ADD_OR_REMOVE_ONE
  acc = (rdp.RdpAccountant(neighboring_relation=relation) if accountant == 'rdp'
         else pld.PLDAccountant(neighboring_relation=relation))
  return acc.compose(event, rounds).get_epsilon(DELTA)


@pytest.mark.parametrize('sampling,accountant', accountants.SUPPORTED)
def test_epsilon_equals_dp_accounting_called_directly(sampling, accountant):
  ours = accountants.epsilon(2.89, delta=DELTA, rounds=12, sampling=sampling,
                             accountant=accountant, **SMALL)
  assert ours == _direct(sampling, accountant, 2.89, 12)


@pytest.mark.parametrize('sampling,accountant', accountants.SUPPORTED)
def test_every_round_of_the_curve_equals_a_fresh_direct_composition(sampling, accountant):
  curve = accountants.epsilons(1.7, delta=DELTA, rounds=4, sampling=sampling,
                               accountant=accountant, **SMALL)
  assert curve == [_direct(sampling, accountant, 1.7, t) for t in range(1, 5)]
  assert curve == sorted(curve) and curve[0] > 0


def test_the_issue_reproduction():
  # sigma 2.89, 32 of 500, 60 rounds: the fixed sampler's RDP bound is 3.99,
  # and the same numbers as the landed accounting.epsilon.
  fixed = accountants.epsilon(2.89, delta=DELTA, rounds=60, sampling='fixed',
                              accountant='rdp', **SMALL)
  assert fixed == accounting.epsilon(2.89, delta=DELTA, rounds=60, **SMALL)
  assert round(fixed, 2) == 3.99


@pytest.mark.parametrize('sampling,accountant', [
    p if p == accountants.SUPPORTED[0] else pytest.param(*p, marks=pytest.mark.slow)
    for p in accountants.SUPPORTED])   # one pair by default: the calibration is shared
def test_calibrated_sigma_is_the_smallest_within_tol(sampling, accountant):
  tol = 1e-3
  kw = dict(delta=DELTA, rounds=10, sampling=sampling, accountant=accountant, **SMALL)
  sigma = accountants.noise_multiplier_for(2.0, tol=tol, **kw)
  assert accountants.epsilon(sigma, **kw) <= 2.0
  # dp-accounting returns within tol of the optimum: 2 tol less must miss the target.
  assert accountants.epsilon(sigma - 2 * tol, **kw) > 2.0


@pytest.mark.slow   # calibrates every pair; the per-pair tests above are default
def test_table_has_one_row_per_supported_pair_naming_its_accountant():
  tol = 0.05
  rows = accountants.table(2.0, 1.0, delta=DELTA, rounds=3, tol=tol, **SMALL)
  assert [(r.sampling, r.accountant) for r in rows] == list(accountants.SUPPORTED)
  for row in rows:
    assert row.relation == {'fixed': 'replace_one', 'poisson': 'add_remove'}[row.sampling]
    assert row.epsilon == _direct(row.sampling, row.accountant, 2.0, 3)
    assert _direct(row.sampling, row.accountant, row.sigma_for_target, 3) <= 1.0
    assert _direct(row.sampling, row.accountant, row.sigma_for_target - 2 * tol, 3) > 1.0


def test_pld_bound_is_below_rdp_for_poisson():
  # PLD is the tighter of the two on the same event.
  kw = dict(delta=DELTA, rounds=20, sampling='poisson', **SMALL)
  assert (accountants.epsilon(2.0, accountant='pld', **kw)
          < accountants.epsilon(2.0, accountant='rdp', **kw))


@pytest.mark.parametrize('sampling,accountant,words', [
    ('fixed', 'pld', 'sampling-without-replacement'),
    ('poisson', 'prv', 'dp-accounting has none'),
    ('fixed', 'prv', 'dp-accounting has none'),
    ('poisson', 'moments', 'must be one of'),
    ('shuffle', 'rdp', 'privacy.sampling'),
])
def test_unsupported_pairs_are_refused_in_one_line(sampling, accountant, words):
  for call in (accountants.epsilon, accountants.epsilons):
    with pytest.raises(ConfigError, match=words) as err:
      call(1.0, delta=DELTA, rounds=3, sampling=sampling, accountant=accountant, **SMALL)
    assert '\n' not in str(err.value)
  with pytest.raises(ConfigError, match=words):
    accountants.table(1.0, 1.0, delta=DELTA, rounds=3, pairs=[(sampling, accountant)], **SMALL)


def test_bad_settings_are_config_errors():
  kw = dict(delta=DELTA, rounds=3, sampling='poisson', accountant='pld')
  with pytest.raises(ConfigError, match='cohort size'):
    accountants.epsilon(1.0, cohort_size=600, population=500, **kw)
  with pytest.raises(ConfigError, match='noise_multiplier'):
    accountants.epsilons(-1.0, **kw, **SMALL)
  with pytest.raises(ConfigError, match='delta'):
    accountants.epsilons(1.0, delta=0.0, rounds=3, sampling='poisson', accountant='pld', **SMALL)
  assert accountants.epsilons(0.0, **kw, **SMALL) == [float('inf')] * 3
  assert accountants.epsilons(1.0, delta=DELTA, rounds=0, sampling='poisson',
                              accountant='pld', **SMALL) == []
