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

In a run (`privacy.audit.canaries=m`, client-level DP; white-box canaries
in the style of Andrew et al. 2024, "One-shot Empirical Privacy Estimation
for Federated Learning"): m clients of the population, drawn from
`privacy.audit.seed`, are canaries, each with a fair coin. Whenever an
included canary is in a cohort it uploads its canary direction u_i (a
random unit direction over the shared trees, from the same seed, times the
clip norm) on every module, in place of what it trained; an excluded canary
uploads nothing (it still counts as a client: the neighbouring relation is
the accountant's). The server scores each canary by <Delta, u_i>, Delta the
model's total change, accumulated round by round in the aggregator's state;
the guesses (`default_choices(m)`, fixed before any score) give the audited
epsilon after each round, 'privacy/audit_epsilon', from a table computed on
the host before training (`epsilon_table`), so the round never leaves the
device. It is a lower bound at `confidence`; the accountant's
'privacy/epsilon' is the upper bound.
"""
import dataclasses
import functools
import math
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special, stats

from fedxr_jax.core import aggregation
from fedxr_jax.core import transforms as transforms_lib
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


@functools.lru_cache(maxsize=None)
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


@functools.lru_cache(maxsize=None)
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


# ---- in a run: canaries, their scores and the audited epsilon on the device -------

# Folded into the audit seed's key: the canaries' directions.
DIRECTION_STREAM = 0xA0D1
MAX_CANARIES = 4096


@dataclasses.dataclass(frozen=True)
class Settings:
  """`privacy.audit`: m canary clients (0: no audit), the audit's confidence, and
  the seed of the canaries, their coins and directions (a constant of the
  program: lanes of one program share their canaries)."""
  canaries: int = 0
  confidence: float = 0.95
  seed: int = 0


class Canaries(NamedTuple):
  ids: np.ndarray        # int32 [m], ascending: the canary clients
  included: np.ndarray   # bool [m]: each canary's coin
  seed: int              # of their directions
  norm: float            # of each direction: the clip norm


def draw(s: Settings, population: int, norm: float) -> Canaries:
  """The run's canaries: m distinct clients and m fair coins from `s.seed` (host numpy)."""
  m = int(s.canaries)
  if not 2 <= m <= min(population, MAX_CANARIES):
    raise ConfigError(f'privacy.audit.canaries must be in [2, min(population, '
                      f'{MAX_CANARIES})], got {m}')
  if not 0.0 < s.confidence < 1.0:
    raise ConfigError(f'privacy.audit.confidence must be in (0, 1), got {s.confidence}')
  gen = np.random.default_rng([int(s.seed), DIRECTION_STREAM])
  ids = np.sort(gen.choice(population, size=m, replace=False)).astype(np.int32)
  return Canaries(ids, gen.integers(0, 2, size=m).astype(bool), int(s.seed), float(norm))


def direction(c: Canaries, index, like: dict) -> dict:
  """Canary `index`'s direction shaped like `like`: a uniform random direction of norm c.norm."""
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(c.seed), DIRECTION_STREAM), index)
  leaves, treedef = jax.tree.flatten(like)
  keys = jax.random.split(key, max(len(leaves), 1))
  raw = [jax.random.normal(k, jnp.shape(x), jnp.float32) for k, x in zip(keys, leaves)]
  norm = jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in raw))
  return jax.tree.unflatten(treedef, [c.norm * x / norm for x in raw])


def _lookup(c: Canaries, client_id):
  """(is a canary, its index, its coin) of a client id (traced)."""
  ids = jnp.asarray(c.ids)
  i = jnp.clip(jnp.searchsorted(ids, client_id), 0, ids.shape[0] - 1)
  return ids[i] == client_id, i, jnp.asarray(c.included)[i]


def canary_transform(c: Canaries) -> transforms_lib.UpdateTransform:
  """An included canary uploads its direction on every module; an excluded one nothing."""

  def update(update, key, weights, info):
    del key
    canary, i, coin = _lookup(c, info.client_id)
    u = direction(c, i, update)
    new_update = jax.tree.map(
        lambda x, d: jnp.where(canary, jnp.where(coin, d.astype(x.dtype), 0), x), update, u)
    new_weights = jax.tree.map(
        lambda w: jnp.where(canary, jnp.where(coin, jnp.ones_like(w), 0), w), weights)
    return new_update, new_weights, {}

  return transforms_lib.stateless(update)


def epsilon_table(m: int, *, delta: float, confidence: float,
                  choices: Optional[Sequence[tuple]] = None) -> tuple:
  """(choices, [len(choices), m + 1] table): `epsilon_lower_bound` of v correct guesses.

  Each choice is tested at confidence 1 - (1 - confidence) / len(choices),
  as `audit`, so the device's max over choices equals `audit(...).epsilon`.
  """
  choices = tuple(default_choices(m) if choices is None else choices)
  _check_level(delta, confidence)
  split = 1.0 - (1.0 - confidence) / len(choices)
  table = np.zeros((len(choices), m + 1), np.float64)
  for j, (k_pos, k_neg) in enumerate(choices):
    r = k_pos + k_neg
    for v in range(r + 1):
      table[j, v] = epsilon_lower_bound(m, r, v, delta=delta, confidence=split)
  return choices, table


def audited_epsilon(scores, included, choices, table) -> jax.Array:
  """`audit(scores, included, ...).epsilon` as a jnp function (same guesses and ties)."""
  ranked = jnp.asarray(included)[jnp.argsort(-scores, stable=True)]
  top = jnp.concatenate([jnp.zeros(1, jnp.int32), jnp.cumsum(ranked, dtype=jnp.int32)])
  bottom = jnp.concatenate([jnp.zeros(1, jnp.int32),
                            jnp.cumsum((~ranked)[::-1], dtype=jnp.int32)])
  table = jnp.asarray(table, jnp.float32)
  best = [table[j, top[k_pos] + bottom[k_neg]] for j, (k_pos, k_neg) in enumerate(choices)]
  return jnp.max(jnp.stack(best))


def scored(inner: aggregation.Aggregator, c: Canaries, *, delta: float,
           confidence: float) -> aggregation.Aggregator:
  """`inner` that also scores the canaries and reports 'privacy/audit_epsilon' each round."""
  choices, table = epsilon_table(len(c.ids), delta=delta, confidence=confidence)
  m = len(c.ids)

  def init(shared):
    return {**inner.init(shared), 'audit_scores': jnp.zeros((m,), jnp.float32)}

  def aggregate(shared, state, sums, key):
    own = {k: v for k, v in state.items() if k != 'audit_scores'}
    target, own, metrics = inner.aggregate(shared, own, sums, key)
    delta_tree = {r: jax.tree.map(lambda t, s: (t - s).astype(jnp.float32), target[r],
                                  shared[r]) for r in shared}

    def score(i):
      u = direction(c, i, delta_tree)
      return sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(u),
                                                jax.tree.leaves(delta_tree)))

    scores = state['audit_scores'] + jax.lax.map(score, jnp.arange(m))
    metrics = {**metrics, 'privacy/audit_epsilon': audited_epsilon(scores, c.included,
                                                                    choices, table)}
    return target, {**own, 'audit_scores': scores}, metrics

  return inner._replace(name=f'{inner.name}+audit', aggregate=aggregate, init=init)
