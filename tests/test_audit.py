"""One-run audit: the p-value by hand, and lower bounds against the accountant's upper bound.

Simulated mechanisms, in numpy: m canaries, each in with probability 1/2.
Gaussian: canary i adds 1 to its own coordinate of a sum, every coordinate
gets N(0, sigma^2); the attack's score is the observed coordinate (the
likelihood ratio is monotone in it). Flipping canary i changes only
coordinate i by 1, and the other coordinates do not depend on it, so by
parallel composition the run is, per canary, one sensitivity-1 Gaussian:
the upper bound is dp-accounting's GaussianDpEvent(sigma) once (add/remove),
not m compositions. Randomized response: each canary's bit is reported
truthfully with probability e^eps / (1 + e^eps): eps-DP per canary, where
the one-run bound is known to be tight.
"""
import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting import pld
from scipy import stats

from fedxr_jax.errors import ConfigError
from fedxr_jax.privacy import audit

DELTA = 1e-5


def _paper_p_value(m, r, v, eps, delta):
  """The theorem's right side, written out term by term."""
  q = math.exp(eps) / (1 + math.exp(eps))
  f = lambda w: stats.binom.sf(w - 1, r, q)       # P[Binomial(r, q) >= w]
  tail = max((f(v - i) - f(v)) / i for i in range(1, v + 1))
  return min(f(v) + 2 * m * delta * tail, 1.0)


def test_p_value_by_hand():
  # All 10 guesses right under eps = 0 (coin flips): 2^-10.
  assert audit.p_value(10, 10, 10, 0.0, 0.0) == pytest.approx(2.0 ** -10, rel=1e-12)
  for args in [(100, 20, 15, 0.5, 1e-3), (1000, 200, 170, 1.5, 1e-5), (50, 50, 30, 0.0, 0.01)]:
    assert audit.p_value(*args) == pytest.approx(_paper_p_value(*args), rel=1e-9)
  assert audit.p_value(10, 4, 0, 1.0, 0.1) == 1.0


def test_lower_bound_inverts_the_p_value():
  # delta = 0, 10 of 10 right at 95%: q^10 = 0.05, eps = logit(0.05^(1/10)) = 1.0517.
  q = 0.05 ** 0.1
  assert audit.epsilon_lower_bound(10, 10, 10, delta=0.0) == pytest.approx(
      math.log(q / (1 - q)), abs=2e-6)
  eps = audit.epsilon_lower_bound(1000, 200, 170, delta=DELTA, confidence=0.99)
  assert audit.p_value(1000, 200, 170, eps, DELTA) <= 0.01
  assert audit.p_value(1000, 200, 170, eps + 2e-6, DELTA) > 0.01
  assert audit.epsilon_lower_bound(1000, 200, 100, delta=DELTA) == 0.0   # chance level


def test_guesses_take_the_top_and_bottom_scores_ties_by_index():
  scores = [0.9, 0.1, 0.5, 0.5, 0.8, 0.0]
  included = [True, False, True, False, False, False]
  # top 2: canaries 0 (in) and 4 (out); bottom 2: canaries 1 and 5 (both out).
  assert audit.guess_counts(scores, included, 2, 2) == (4, 3)
  # The tie at 0.5: canary 2 ranks before canary 3.
  assert audit.guess_counts(scores, included, 4, 0) == (4, 2)
  assert audit.default_choices(64) == ((32, 0), (32, 32), (16, 0), (16, 16), (8, 0), (8, 8))


def _gaussian(sigma, m, seed):
  rng = np.random.default_rng(seed)
  included = rng.random(m) < 0.5
  return included + sigma * rng.standard_normal(m), included


@pytest.mark.parametrize('sigma', [0.5, 1.0, 2.0])
def test_gaussian_lower_bound_is_below_the_accountants_upper_bound(sigma):
  upper = pld.PLDAccountant().compose(dp_accounting.GaussianDpEvent(sigma)).get_epsilon(DELTA)
  for seed in range(3):
    lower = audit.audit(*_gaussian(sigma, 10 ** 4, seed), delta=DELTA).epsilon
    assert lower <= upper
    # The one-run (eps, delta) bound certifies only part of a Gaussian's
    # epsilon at m = 10^4 (randomized response below has no such gap), but
    # a good part of it: a weaker audit would fail here.
    assert lower >= 0.3 * upper


@pytest.mark.parametrize('eps', [1.0, 2.0])
def test_randomized_response_lower_bound_is_close_to_its_epsilon(eps):
  keep = math.exp(eps) / (1 + math.exp(eps))
  # dp-accounting's event: report a uniform bit with probability 2 (1 - keep).
  upper = pld.PLDAccountant(dp_accounting.NeighboringRelation.REPLACE_ONE).compose(
      dp_accounting.RandomizedResponseDpEvent(2 * (1 - keep), 2)).get_epsilon(DELTA)
  assert upper == pytest.approx(eps, abs=1e-3)
  rng = np.random.default_rng(0)
  included = rng.random(10 ** 4) < 0.5
  reported = included ^ (rng.random(10 ** 4) >= keep)
  lower = audit.audit(reported.astype(float), included, delta=DELTA).epsilon
  assert 0.85 * upper <= lower <= upper


def test_no_signal_gives_no_epsilon_beyond_the_level():
  # Scores independent of the coins: the run is 0-DP for the auditor, so a
  # positive bound is a false rejection, at rate <= 1 - confidence = 5%.
  seeds, m = 400, 1000
  single, grid = [], []
  for seed in range(seeds):
    rng = np.random.default_rng(seed)
    included, scores = rng.random(m) < 0.5, rng.standard_normal(m)
    single.append(audit.audit(scores, included, delta=DELTA, choices=[(250, 250)]).epsilon)
    if seed < 40:
      grid.append(audit.audit(scores, included, delta=DELTA).epsilon)
  # 0.999 quantile of Binomial(400, 0.05): more false rejections would be a bug.
  assert sum(e > 0 for e in single) <= stats.binom.ppf(0.999, seeds, 0.05)
  assert max(single) < 0.1 and max(grid) < 0.1


def test_the_grid_splits_the_level_bonferroni():
  scores, included = _gaussian(1.0, 2000, 0)
  one = audit.audit(scores, included, delta=DELTA, choices=[(250, 250)])
  both = audit.audit(scores, included, delta=DELTA, choices=[(250, 250), (100, 0)])
  assert both.choices == 2
  split = audit.epsilon_lower_bound(2000, one.guesses, one.correct, delta=DELTA,
                                    confidence=1 - 0.05 / 2)
  assert split < one.epsilon
  assert both.epsilon == max(split, audit.epsilon_lower_bound(
      2000, *audit.guess_counts(scores, included, 100, 0), delta=DELTA, confidence=0.975))


@pytest.mark.parametrize('call,words', [
    (lambda: audit.p_value(10, 11, 3, 1.0, 0.0), 'guesses'),
    (lambda: audit.p_value(10, 5, 3, -1.0, 0.0), 'epsilon'),
    (lambda: audit.epsilon_lower_bound(10, 5, 3, delta=1.0), 'delta'),
    (lambda: audit.epsilon_lower_bound(10, 5, 3, delta=0.0, confidence=1.0), 'confidence'),
    (lambda: audit.guess_counts([1, 2], [True], 1, 0), 'match'),
    (lambda: audit.guess_counts([1, 2], [True, False], 2, 1), 'k_pos'),
    (lambda: audit.audit([1.0, 2.0], [True, False], delta=DELTA, choices=[]), 'choice'),
])
def test_bad_inputs_are_one_line_config_errors(call, words):
  with pytest.raises(ConfigError, match=words) as err:
    call()
  assert '\n' not in str(err.value)
