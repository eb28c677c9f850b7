"""Audited epsilon: a statistical lower bound from one training run with canaries.

Steinke, Nasr and Jagielski 2023, "Privacy Auditing with One (1) Training
Run". m canaries are each included independently with probability 1/2
(S_i in {-1, +1}); after training, an attack scores each canary (higher =
more likely included, e.g. `membership.lira_score`). The auditor guesses
"in" for the k+ highest scores and "out" for the k- lowest, abstaining on
the rest: r = k+ + k- guesses, v of them correct.

Their main theorem, in the approximate-DP form their appendix's code
computes: if the training run is (eps, delta)-DP with respect to each
canary's inclusion, then for every v
  P[correct >= v] <= f(v) + 2 m delta max_{1 <= i <= v} (f(v - i) - f(v)) / i,
f(v) = P[Binomial(r, e^eps / (1 + e^eps)) >= v]. With delta = 0 this is
randomized response's accuracy: no (eps, 0)-DP run lets a guesser beat
coin flips of bias e^eps / (1 + e^eps). The right side is the p-value of
the hypothesis "the run is (eps, delta)-DP"; the audited epsilon is the
largest eps that hypothesis is rejected for at level 1 - confidence
(0 when none is). It holds with probability >= confidence over the
canaries' coins and the run's randomness, so it is below the true epsilon
(and any valid upper bound) except with probability <= 1 - confidence.

Choosing (k+, k-) after seeing the scores is a multiple test: `audit`
takes a grid of choices fixed before the scores (by default from m only)
and splits the level over it (Bonferroni), so reporting the best choice
stays valid; one pre-declared choice pays no split.

The upper bound to compare with must be the accountant's epsilon for the
same unit and relation: add/remove of one canary (client-level DP: a
canary client). Under the fixed-size sampler (replace-one) an excluded
canary must stay in the population as a client that uploads zeros, so that
flipping S_i is a replacement and the accountant's bound applies.
"""
import math
from typing import NamedTuple, Optional, Sequence

import numpy as np
from scipy import special, stats

from fedxr_jax.errors import ConfigError

_EPS_TOL = 1e-6   # bisection width on epsilon


def _check_counts(canaries, guesses, correct):
  if not 0 <= correct <= guesses <= canaries:
    raise ConfigError(f'need 0 <= correct <= guesses <= canaries, got {correct}, {guesses}, '
                      f'{canaries}')


def _check_level(delta, confidence):
  if not 0.0 <= delta < 1.0:
    raise ConfigError(f'audit delta must be in [0, 1), got {delta}')
  if not 0.0 < confidence < 1.0:
    raise ConfigError(f'audit confidence must be in (0, 1), got {confidence}')


def p_value(canaries: int, guesses: int, correct: int, epsilon: float, delta: float) -> float:
  """P[>= `correct` right of `guesses`] under an (epsilon, delta)-DP run: the bound above, <= 1."""
  _check_counts(canaries, guesses, correct)
  _check_level(delta, 0.5)
  if epsilon < 0:
    raise ConfigError(f'audit epsilon must be >= 0, got {epsilon}')
  q = float(special.expit(epsilon))   # e^eps / (1 + e^eps)
  beta = float(stats.binom.sf(correct - 1, guesses, q))   # f(v)
  if delta == 0 or correct == 0:
    return min(beta, 1.0)
  i = np.arange(1, correct + 1)
  # f(v - i) - f(v) = P[v - i <= X < v], summed from the pmf (no cancellation).
  between = np.cumsum(stats.binom.pmf(correct - i, guesses, q))
  return min(beta + 2 * canaries * delta * float(np.max(between / i)), 1.0)


def epsilon_lower_bound(canaries: int, guesses: int, correct: int, *, delta: float,
                        confidence: float = 0.95) -> float:
  """The largest epsilon whose (epsilon, delta)-DP claim `correct` of `guesses` rejects.

  Bisection on the p-value (increasing in epsilon), keeping the lower end:
  the returned epsilon is rejected at level 1 - confidence; 0 if none is.
  """
  _check_counts(canaries, guesses, correct)
  _check_level(delta, confidence)
  level = 1.0 - confidence
  rejected = lambda eps: p_value(canaries, guesses, correct, eps, delta) <= level
  if not rejected(0.0):
    return 0.0
  lo, hi = 0.0, 1.0
  while rejected(hi):
    lo, hi = hi, 2 * hi
    if hi > 1e3:   # correct = guesses and tiny level: cap instead of looping
      return lo
  while hi - lo > _EPS_TOL:
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if rejected(mid) else (lo, mid)
  return lo


def guess_counts(scores, included, k_pos: int, k_neg: int) -> tuple:
  """(guesses, correct) of "in" for the k_pos highest scores, "out" for the k_neg lowest.

  Ties are broken by canary index (fixed before the coins), never by inclusion.
  """
  scores = np.asarray(scores, np.float64).ravel()
  included = np.asarray(included, bool).ravel()
  if scores.shape != included.shape:
    raise ConfigError(f'scores {scores.shape} and included {included.shape} must match')
  if k_pos < 0 or k_neg < 0 or k_pos + k_neg > scores.size:
    raise ConfigError(f'need k_pos, k_neg >= 0 and k_pos + k_neg <= {scores.size} canaries, '
                      f'got {k_pos}, {k_neg}')
  order = np.argsort(-scores, kind='stable')   # highest first
  top, bottom = order[:k_pos], order[scores.size - k_neg:]
  correct = int(np.sum(included[top]) + np.sum(~included[bottom]))
  return k_pos + k_neg, correct


def default_choices(canaries: int) -> tuple:
  """(k+, k-) grid from m alone: k+ = m/2, m/4, ..., >= 8; k- = 0 or k+.

  Few choices (2 log2 m) keep the Bonferroni split cheap.
  """
  if canaries < 2:
    raise ConfigError(f'an audit needs >= 2 canaries, got {canaries}')
  out, k = [], canaries // 2
  while k >= min(8, canaries // 2):
    out += [(k, 0), (k, k)]
    k //= 2
    if k == 0:
      break
  return tuple(out)


class Audit(NamedTuple):
  epsilon: float     # the lower bound (0: nothing rejected)
  k_pos: int         # the choice that gave it
  k_neg: int
  guesses: int
  correct: int
  choices: int       # the level was split over this many choices
  confidence: float
  delta: float


def audit(scores, included, *, delta: float, confidence: float = 0.95,
          choices: Optional[Sequence[tuple]] = None) -> Audit:
  """The audited epsilon at `delta`: the best lower bound over `choices`, valid at `confidence`.

  scores: [m] attack scores, higher = more likely in; included: [m] bools,
  the canaries' coins. choices: (k+, k-) pairs fixed before the scores
  (default `default_choices(m)`); each is tested at level (1 - confidence)
  / len(choices).
  """
  m = np.asarray(included).size
  choices = tuple(default_choices(m) if choices is None else choices)
  if not choices:
    raise ConfigError('audit needs at least one (k_pos, k_neg) choice')
  _check_level(delta, confidence)
  split = 1.0 - (1.0 - confidence) / len(choices)
  best = Audit(0.0, 0, 0, 0, 0, len(choices), confidence, delta)
  for k_pos, k_neg in choices:
    r, v = guess_counts(scores, included, k_pos, k_neg)
    eps = epsilon_lower_bound(m, r, v, delta=delta, confidence=split)
    if eps > best.epsilon:
      best = Audit(eps, k_pos, k_neg, r, v, len(choices), confidence, delta)
  return best
