"""DP accounting: epsilons against direct dp_accounting and closed-form Gaussian answers."""
import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting import pld, rdp
from scipy import stats

from fedxr_jax.errors import ConfigError
from fedxr_jax.privacy import accounting

DELTA = 1e-5
REPLACE = dp_accounting.NeighboringRelation.REPLACE_ONE


def test_fixed_cohort_epsilon_is_rdp_sampling_without_replacement_at_half_sigma():
  # Replace-one neighbours: the clipped sum moves by 2C, so sigma / 2.
  direct = rdp.RdpAccountant(neighboring_relation=REPLACE).compose(
      dp_accounting.SampledWithoutReplacementDpEvent(
          1000, 50, dp_accounting.GaussianDpEvent(0.6)), 40).get_epsilon(DELTA)
  ours = accounting.epsilon(1.2, delta=DELTA, rounds=40, cohort_size=50, population=1000)
  assert ours == pytest.approx(direct, rel=1e-12)


@pytest.mark.parametrize('name', ['rdp', 'pld'])
def test_poisson_epsilon_matches_direct_accountant(name):
  make = rdp.RdpAccountant if name == 'rdp' else pld.PLDAccountant
  direct = make().compose(dp_accounting.PoissonSampledDpEvent(
      0.05, dp_accounting.GaussianDpEvent(1.1)), 30).get_epsilon(DELTA)
  ours = accounting.epsilon(1.1, delta=DELTA, rounds=30, cohort_size=50, population=1000,
                            sampling='poisson', accountant=name)
  assert ours == pytest.approx(direct, rel=1e-12)


def _gaussian_delta(eps, sigma):
  """Exact delta(eps) of one Gaussian mechanism, sensitivity 1 (Balle & Wang 2018)."""
  return (stats.norm.cdf(-eps * sigma + 1 / (2 * sigma))
          - math.exp(eps) * stats.norm.cdf(-eps * sigma - 1 / (2 * sigma)))


def test_full_participation_pld_is_the_exact_gaussian_curve():
  # Everyone every round: T Gaussians at sigma = one Gaussian at sigma / sqrt(T).
  sigma, rounds = 2.0, 16
  eps = accounting.epsilon(sigma, delta=DELTA, rounds=rounds, cohort_size=10, population=10,
                           sampling='poisson', accountant='pld')
  exact = _gaussian_delta(eps, sigma / math.sqrt(rounds))
  assert exact <= DELTA          # PLD is pessimistic...
  assert exact > 0.9 * DELTA     # ...and tight.


def test_full_participation_fixed_equals_poisson_at_half_sigma():
  fixed = accounting.epsilon(3.0, delta=DELTA, rounds=8, cohort_size=20, population=20)
  plain = accounting.epsilon(1.5, delta=DELTA, rounds=8, cohort_size=20, population=20,
                             sampling='poisson')
  assert fixed == pytest.approx(plain, rel=1e-9)


def test_no_noise_is_infinite_and_no_rounds_is_zero():
  kw = dict(delta=DELTA, cohort_size=5, population=50)
  assert accounting.epsilon(0.0, rounds=3, **kw) == math.inf
  assert accounting.epsilon(1.0, rounds=0, **kw) == 0.0
  assert accounting.epsilon_per_round(0.0, rounds=2, **kw) == [math.inf, math.inf]


def test_epsilon_per_round_equals_epsilon_after_each_prefix():
  kw = dict(delta=DELTA, cohort_size=20, population=500)
  per_round = accounting.epsilon_per_round(1.0, rounds=25, **kw)
  assert len(per_round) == 25
  assert np.all(np.diff(per_round) > 0)
  for t in (1, 7, 25):
    assert per_round[t - 1] == pytest.approx(accounting.epsilon(1.0, rounds=t, **kw),
                                             rel=1e-12)


def test_epsilon_per_round_with_pld_composes_round_by_round():
  kw = dict(delta=DELTA, cohort_size=100, population=1000, sampling='poisson',
            accountant='pld')
  per_round = accounting.epsilon_per_round(1.5, rounds=3, **kw)
  for t in (1, 3):
    # Composing 1 + 1 + 1 and 3 at once discretize differently (1e-4 grid).
    assert per_round[t - 1] == pytest.approx(accounting.epsilon(1.5, rounds=t, **kw),
                                             rel=1e-3)


@pytest.mark.parametrize('sampling', ['poisson', 'fixed'])
def test_calibrated_sigma_is_the_smallest_within_tolerance(sampling):
  kw = dict(delta=DELTA, rounds=50, cohort_size=40, population=2000, sampling=sampling)
  tol = 1e-3
  sigma = accounting.calibrate_noise_multiplier(2.0, tol=tol, **kw)
  assert accounting.epsilon(sigma, **kw) <= 2.0
  assert accounting.epsilon(sigma - tol, **kw) > 2.0


def test_example_epsilon_reports_the_worst_client():
  out = accounting.example_epsilon(1.0, delta=DELTA, batch_size=8,
                                   num_examples=[200, 40, 40, 10], steps=[100, 100, 50, 0])
  direct = rdp.RdpAccountant().compose(dp_accounting.PoissonSampledDpEvent(
      8 / 40, dp_accounting.GaussianDpEvent(1.0)), 100).get_epsilon(DELTA)
  assert out.worst_client == 1
  assert out.worst == pytest.approx(direct, rel=1e-12)
  assert out.per_client[3] == 0.0           # no steps, no release
  assert out.per_client[0] < out.per_client[2] < out.per_client[1]


def test_adaptive_clipping_budget_split_known_answer():
  z_u = accounting.update_noise_multiplier(1.0, 10.0)
  assert z_u == pytest.approx((1 - 1 / 400) ** -0.5, rel=1e-12)
  assert z_u ** -2 + (2 * 10.0) ** -2 == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize('call, message', [
    (lambda: accounting.epsilon(1.0, delta=None, rounds=1, cohort_size=1, population=2),
     'privacy.delta is required'),
    (lambda: accounting.epsilon(1.0, delta=1.5, rounds=1, cohort_size=1, population=2),
     'privacy.delta must be in (0, 1)'),
    (lambda: accounting.epsilon(-1.0, delta=DELTA, rounds=1, cohort_size=1, population=2),
     'privacy.noise_multiplier must be >= 0'),
    (lambda: accounting.epsilon(1.0, delta=DELTA, rounds=1, cohort_size=1, population=2,
                                accountant='pld'),
     "privacy.sampling='fixed' needs privacy.accountant='rdp'"),
    (lambda: accounting.epsilon(1.0, delta=DELTA, rounds=1, cohort_size=5, population=2),
     'sample size must be in [1, the population]'),
    (lambda: accounting.calibrate_noise_multiplier(1.0, delta=None, rounds=1, cohort_size=1,
                                                   population=2),
     'privacy.target_epsilon needs privacy.delta'),
    (lambda: accounting.calibrate_noise_multiplier(0.0, delta=DELTA, rounds=1,
                                                   cohort_size=1, population=2),
     'privacy.target_epsilon must be > 0'),
    (lambda: accounting.update_noise_multiplier(1.0, 0.4),
     'count_stddev must exceed noise_multiplier / 2'),
    (lambda: accounting.example_epsilon(1.0, delta=DELTA, batch_size=4, num_examples=[3],
                                        steps=[1, 2]),
     'must be equal-length'),
])
def test_bad_input_is_one_line_config_error(call, message):
  with pytest.raises(ConfigError) as err:
    call()
  assert message in str(err.value)
  assert '\n' not in str(err.value)
