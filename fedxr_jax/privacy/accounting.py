"""Differential-privacy accounting with Google's `dp_accounting` (host-side, numpy).

Client level (DP-FedAvg, McMahan et al. 2018): each round releases the sum
of the cohort's clipped updates (norm <= C) plus N(0, (sigma C)^2) noise.
Two cohort samplers, each with the neighbouring relation its bound needs:
  fixed    `cohort_size` distinct clients out of `population` (as
           `core.rng.sample_cohort`): sampling without replacement, neighbours
           differ by replacing one client (the population size is public).
           Replacing a client moves the sum by up to 2C, so the Gaussian the
           accountant sees has noise multiplier sigma / 2. RDP only:
           dp_accounting's PLD has no sampling-without-replacement event.
  poisson  every client joins independently with q = cohort_size / population:
           add-or-remove-one neighbours, sensitivity C, multiplier sigma.
Example level (DP-SGD inside local training, `privacy.dpsgd`), two models:
  example_epsilon_per_round  what `core.local` really does: one shuffle and
           consecutive batches per round, no amplification by sampling
           (`example_round_event`; the run's privacy/epsilon);
  example_epsilon  each step an independent Poisson (or without-replacement)
           sample of the client's examples: valid only for a sampler that
           draws batches that way, which local training does not.
"""
import functools
import math
from typing import NamedTuple, Optional, Sequence

import dp_accounting
import numpy as np
from dp_accounting import pld, rdp

from fedxr_jax.errors import ConfigError

SAMPLINGS = ('fixed', 'poisson')
ACCOUNTANTS = ('rdp', 'pld')
RDP_ORDERS = tuple(rdp.rdp_privacy_accountant.DEFAULT_RDP_ORDERS)
_MIN_SIGMA = 1 / 16   # calibration gives up below: epsilon in the hundreds
_RELATION = {'fixed': dp_accounting.NeighboringRelation.REPLACE_ONE,
             'poisson': dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE}


def check_delta(delta) -> float:
  if delta is None:
    raise ConfigError('privacy.delta is required to report or target an epsilon')
  if not 0.0 < delta < 1.0:
    raise ConfigError(f'privacy.delta must be in (0, 1), got {delta}')
  return float(delta)


def _check(noise_multiplier, sampling, accountant):
  if noise_multiplier < 0:
    raise ConfigError(f'privacy.noise_multiplier must be >= 0, got {noise_multiplier}')
  if sampling not in SAMPLINGS:
    raise ConfigError(f'privacy.sampling must be one of {SAMPLINGS}, got {sampling!r}')
  if accountant not in ACCOUNTANTS:
    raise ConfigError(f'privacy.accountant must be one of {ACCOUNTANTS}, got {accountant!r}')
  if sampling == 'fixed' and accountant == 'pld':
    raise ConfigError("privacy.sampling='fixed' needs privacy.accountant='rdp' "
                      '(dp_accounting has no PLD bound for sampling without replacement)')


def _check_sizes(sample_size, dataset_size):
  if not 1 <= sample_size <= dataset_size:
    raise ConfigError(f'a sample of {sample_size} out of {dataset_size} records: the sample '
                      'size must be in [1, the population]')


def sampled_gaussian(noise_multiplier: float, *, sample_size: int, dataset_size: int,
                     sampling: str = 'fixed') -> dp_accounting.DpEvent:
  """One release: a Gaussian sum over a sample of `sample_size` of `dataset_size` records."""
  _check(noise_multiplier, sampling, 'rdp')
  _check_sizes(sample_size, dataset_size)
  if sampling == 'poisson':
    return dp_accounting.PoissonSampledDpEvent(
        sample_size / dataset_size, dp_accounting.GaussianDpEvent(noise_multiplier))
  # Replace-one sensitivity of a sum of norm-C vectors is 2C.
  return dp_accounting.SampledWithoutReplacementDpEvent(
      dataset_size, sample_size, dp_accounting.GaussianDpEvent(noise_multiplier / 2))


def make_accountant(accountant: str = 'rdp', sampling: str = 'fixed'):
  """A fresh dp_accounting accountant with the neighbouring relation `sampling` needs."""
  _check(0.0, sampling, accountant)
  if accountant == 'rdp':
    return rdp.RdpAccountant(RDP_ORDERS, neighboring_relation=_RELATION[sampling])
  return pld.PLDAccountant(neighboring_relation=_RELATION[sampling])


def epsilon(noise_multiplier: float, *, delta: float, rounds: int, cohort_size: int,
            population: int, sampling: str = 'fixed', accountant: str = 'rdp') -> float:
  """Client-level epsilon at `delta` after `rounds` DP-FedAvg rounds (inf if sigma = 0)."""
  return _epsilon(noise_multiplier, check_delta(delta), rounds, cohort_size, population,
                  sampling, accountant)


def _epsilon(noise_multiplier, delta, rounds, sample_size, dataset_size, sampling,
             accountant):
  _check(noise_multiplier, sampling, accountant)
  if rounds < 0:
    raise ConfigError(f'rounds must be >= 0, got {rounds}')
  if rounds == 0:
    return 0.0
  if noise_multiplier == 0:
    return math.inf
  event = sampled_gaussian(noise_multiplier, sample_size=sample_size,
                           dataset_size=dataset_size, sampling=sampling)
  return float(make_accountant(accountant, sampling).compose(event, int(rounds))
               .get_epsilon(delta))


def epsilon_per_round(noise_multiplier: float, *, delta: float, rounds: int,
                      cohort_size: int, population: int, sampling: str = 'fixed',
                      accountant: str = 'rdp') -> list:
  """[epsilon after round 1, ..., after round `rounds`], for a per-round metric.

  RDP composes additively, so one round's RDP curve gives every prefix
  (one bound computation instead of T); PLD composes round by round
  (about a second per round at the default discretization: tens of rounds).
  """
  check_delta(delta)
  _check(noise_multiplier, sampling, accountant)
  if rounds < 0:
    raise ConfigError(f'rounds must be >= 0, got {rounds}')
  if noise_multiplier == 0:
    return [math.inf] * int(rounds)
  if rounds == 0:
    return []
  event = sampled_gaussian(noise_multiplier, sample_size=cohort_size,
                           dataset_size=population, sampling=sampling)
  return _epsilon_curve(make_accountant(accountant, sampling), event, rounds, delta,
                        accountant)


def _epsilon_curve(acc, event, rounds, delta, accountant) -> list:
  """[epsilon after 1, ..., `rounds` compositions of `event`] from a fresh `acc`."""
  acc = acc.compose(event, 1)
  if accountant == 'rdp':
    curve = np.asarray(acc.rdp)
    return [float(rdp.compute_epsilon(RDP_ORDERS, t * curve, delta)[0])
            for t in range(1, rounds + 1)]
  out = [float(acc.get_epsilon(delta))]
  for _ in range(rounds - 1):
    out.append(float(acc.compose(event, 1).get_epsilon(delta)))
  return out


def target_delta(target_epsilon: float, delta: Optional[float]) -> float:
  """delta, checked, for calibrating to `target_epsilon` (ConfigError otherwise)."""
  if delta is None:
    raise ConfigError('privacy.target_epsilon needs privacy.delta')
  delta = check_delta(delta)
  if not target_epsilon > 0:
    raise ConfigError(f'privacy.target_epsilon must be > 0, got {target_epsilon}')
  return delta


def calibrate_noise_multiplier(target_epsilon: float, *, delta: Optional[float],
                               rounds: int, cohort_size: int, population: int,
                               sampling: str = 'fixed', accountant: str = 'rdp',
                               tol: float = 1e-3) -> float:
  """The smallest sigma (within `tol`) whose epsilon after `rounds` is <= target."""
  delta = target_delta(target_epsilon, delta)
  if rounds < 1:
    raise ConfigError(f'calibrating sigma needs rounds >= 1, got {rounds}')
  _check(0.0, sampling, accountant)
  _check_sizes(cohort_size, population)

  def make_event(sigma):
    return dp_accounting.SelfComposedDpEvent(
        sampled_gaussian(sigma, sample_size=cohort_size, dataset_size=population,
                         sampling=sampling), int(rounds))

  return calibrate(make_event, lambda: make_accountant(accountant, sampling),
                    target_epsilon, delta, tol)


def calibrate(make_event, new_accountant, target_epsilon, delta, tol):
  """The smallest sigma (within `tol`) with epsilon(make_event(sigma)) <= target."""

  @functools.lru_cache(maxsize=None)
  def eps(sigma):
    return new_accountant().compose(make_event(sigma)).get_epsilon(delta)

  # Bracket by doubling/halving from 1: Brent's method cannot start at
  # sigma = 0 (epsilon = inf), and PLD's cost grows like 1 / sigma^2.
  hi = 1.0
  while eps(hi) > target_epsilon:
    hi *= 2
    if hi > 2 ** 20:
      raise ConfigError(f'privacy.target_epsilon={target_epsilon} is out of reach '
                        '(needs noise_multiplier > 2^20)')
  lo = hi / 2
  while eps(lo) <= target_epsilon:
    lo, hi = lo / 2, lo
    if hi < _MIN_SIGMA:
      raise ConfigError(f'privacy.target_epsilon={target_epsilon} is met with '
                        f'noise_multiplier < {_MIN_SIGMA}: that is no meaningful privacy')
  return float(dp_accounting.calibrate_dp_mechanism(
      new_accountant, make_event, float(target_epsilon), delta,
      dp_accounting.ExplicitBracketInterval(lo, hi), tol=tol))


def update_noise_multiplier(noise_multiplier: float, count_stddev: float) -> float:
  """The multiplier left for the update sum when adaptive clipping spends some budget.

  Andrew et al. 2021, Sec. 3: releasing the noisy unclipped count (stddev
  sigma_b, sensitivity 1/2 after centring) along with the update sum at z_u
  costs as one Gaussian at z with z^-2 = z_u^-2 + (2 sigma_b)^-2. Account
  with `noise_multiplier` = z and add z_u to the updates.
  """
  if noise_multiplier <= 0:
    raise ConfigError(f'privacy.noise_multiplier must be > 0, got {noise_multiplier}')
  if count_stddev <= noise_multiplier / 2:
    raise ConfigError(f'privacy.adaptive_clip.count_stddev must exceed noise_multiplier / 2 '
                      f'= {noise_multiplier / 2:g}, got {count_stddev}')
  return (noise_multiplier ** -2 - (2 * count_stddev) ** -2) ** -0.5


class ExampleEpsilon(NamedTuple):
  worst: float            # the largest client epsilon
  worst_client: int       # its index in the arrays passed
  per_client: np.ndarray  # [C] float64


def example_epsilon(noise_multiplier: float, *, delta: float, batch_size: int,
                    num_examples: Sequence[int], steps: Sequence[int],
                    sampling: str = 'poisson', accountant: str = 'rdp') -> ExampleEpsilon:
  """Example-level epsilon of each client's DP-SGD: `steps[i]` subsampled Gaussians.

  num_examples[i]: client i's examples; steps[i]: local steps it ran over
  the whole run (local steps x rounds it took part in, or the round's
  summed `steps` stats). A client with no steps has epsilon 0. Clients
  with equal (examples, steps) share one computation.
  """
  delta = check_delta(delta)
  _check(noise_multiplier, sampling, accountant)
  if batch_size < 1:
    raise ConfigError(f'batch_size must be >= 1, got {batch_size}')
  num_examples = np.asarray(num_examples, np.int64)
  steps = np.asarray(steps, np.int64)
  if num_examples.shape != steps.shape or num_examples.ndim != 1:
    raise ConfigError(f'num_examples {num_examples.shape} and steps {steps.shape} must be '
                      'equal-length 1-D arrays (one entry per client)')
  if np.any(num_examples < 1) and np.any(steps[num_examples < 1] > 0):
    raise ConfigError('a client with no examples cannot have run DP-SGD steps')
  cache = {}
  per_client = np.zeros(len(steps), np.float64)
  for i, (n, t) in enumerate(zip(num_examples.tolist(), steps.tolist())):
    if (n, t) not in cache:
      cache[n, t] = 0.0 if t == 0 else _epsilon(
          noise_multiplier, delta, t, min(batch_size, n), n, sampling, accountant)
    per_client[i] = cache[n, t]
  worst = int(np.argmax(per_client)) if len(per_client) else -1
  return ExampleEpsilon(float(per_client[worst]) if len(per_client) else 0.0, worst,
                        per_client)


# Example level, as `core.local` samples its batches (see `privacy.dpsgd`).


def occurrence_energy(num_examples: int, batch_size: int, steps: int) -> int:
  """K = max over a client's examples of sum_s m_s^2, m_s its copies in step s's batch.

  Mirrors `core.local.batch_indices`: step s takes positions (s B + i) mod N,
  i < B, of the round's order, a permutation of the N examples drawn from
  the client's key (not from the data). K holds for any permutation (it is
  a maximum over positions). N >= S B: every example once a round, K = 1;
  N = 8, B = 4, S = 4: twice (two passes), K = 2; N = 3, B = 4, S = 1:
  one example twice in the batch, K = 4.
  """
  if steps < 1:
    return 0
  n = max(int(num_examples), 1)
  pos = (np.arange(steps)[:, None] * batch_size + np.arange(batch_size)[None, :]) % n
  counts = np.zeros((steps, n), np.int64)
  np.add.at(counts, (np.repeat(np.arange(steps), batch_size), pos.ravel()), 1)
  return int(np.max(np.sum(counts ** 2, axis=0)))


def worst_occurrence_energy(num_examples: Sequence[int], *, batch_size: int,
                            steps: int) -> int:
  """The largest K over clients holding >= 1 example (0: no client trains)."""
  if batch_size < 1 or steps < 0:
    raise ConfigError(f'need batch_size >= 1 and steps >= 0, got {batch_size}, {steps}')
  counts = {int(n) for n in np.asarray(num_examples).ravel() if n >= 1}
  return max((occurrence_energy(n, batch_size, steps) for n in counts), default=0)


def example_round_event(noise_multiplier: float, energy: int) -> dp_accounting.DpEvent:
  """One round of DP-SGD on one client, for its worst example (energy K >= 1).

  Replace-one neighbours (the client's example count is public): replacing
  an example moves step s's sum of clipped gradients by <= 2 C m_s, against
  noise sigma C. Gaussians compose (in RDP and PLD alike) as one Gaussian of
  sensitivity 2 C sqrt(sum_s m_s^2): noise multiplier sigma / (2 sqrt K), no
  amplification by sampling. Compose it with `_gaussian_accountant`.
  """
  return dp_accounting.GaussianDpEvent(noise_multiplier / (2 * math.sqrt(energy)))


def _gaussian_accountant(accountant: str):
  # Add-or-remove: dp_accounting then reads a GaussianDpEvent as the
  # sensitivity-1 Gaussian (its PLD doubles the sensitivity under REPLACE_ONE,
  # its RDP does not); the replace-one factor 2 is already in the event.
  if accountant == 'rdp':
    return rdp.RdpAccountant(RDP_ORDERS)
  return pld.PLDAccountant()


def _check_example(noise_multiplier, accountant, energy, rounds):
  if noise_multiplier < 0:
    raise ConfigError(f'privacy.noise_multiplier must be >= 0, got {noise_multiplier}')
  if accountant not in ACCOUNTANTS:
    raise ConfigError(f'privacy.accountant must be one of {ACCOUNTANTS}, got {accountant!r}')
  if rounds < 0 or energy < 0:
    raise ConfigError(f'need rounds >= 0 and energy >= 0, got {rounds}, {energy}')


def example_epsilon_per_round(noise_multiplier: float, *, delta: float, rounds: int,
                              energy: int, accountant: str = 'rdp') -> list:
  """[epsilon after round 1, ..., `rounds`] of the worst client's DP-SGD.

  `energy`: `worst_occurrence_energy` of the run. Worst case: the client is
  in every round's cohort (no amplification by cohort sampling either).
  """
  delta = check_delta(delta)
  _check_example(noise_multiplier, accountant, energy, rounds)
  if energy == 0:
    return [0.0] * int(rounds)
  if noise_multiplier == 0:
    return [math.inf] * int(rounds)
  if rounds == 0:
    return []
  return _epsilon_curve(_gaussian_accountant(accountant),
                        example_round_event(noise_multiplier, energy), rounds, delta,
                        accountant)


def calibrate_example_noise(target_epsilon: float, *, delta: Optional[float], rounds: int,
                            energy: int, accountant: str = 'rdp',
                            tol: float = 1e-3) -> float:
  """The smallest sigma (within `tol`) whose worst-client epsilon after `rounds` is <= target."""
  delta = target_delta(target_epsilon, delta)
  if rounds < 1 or energy < 1:
    raise ConfigError(f'calibrating sigma needs rounds >= 1 and a client that trains, '
                      f'got rounds={rounds}, energy={energy}')
  _check_example(0.0, accountant, energy, rounds)
  return calibrate(
      lambda sigma: dp_accounting.SelfComposedDpEvent(example_round_event(sigma, energy),
                                                      int(rounds)),
      lambda: _gaussian_accountant(accountant), target_epsilon, delta, tol)
