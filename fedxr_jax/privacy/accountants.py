"""Client-level DP-FedAvg accountants by name: epsilon per round, sigma for a target.

Every entry point takes the accountant's name and the cohort sampler and
hands dp-accounting the event that matches that sampler exactly (built
once, in `accounting.sampled_gaussian`):
  fixed    `cohort_size` of `population` without replacement (as
           `core.rng.sample_cohort`): SampledWithoutReplacementDpEvent,
           replace-one neighbours (the population size is public). Replacing
           a client moves the sum of clipped updates by up to 2C against noise
           sigma C, so the Gaussian inside has noise multiplier sigma / 2.
  poisson  each client independently with q = cohort_size / population
           (`privacy.poisson`; cohort_size is then the expected size):
           PoissonSampledDpEvent, add-or-remove-one neighbours, multiplier sigma.
The two relations differ: replace-one is roughly add-remove at twice the
sensitivity, so a fixed-size epsilon and a Poisson epsilon at one sigma are
not the same guarantee; `Row.relation` says which one a number is.

Supported (sampling, accountant) pairs: SUPPORTED. Refused, one line each:
  pld + fixed  dp-accounting's PLD has no sampling-without-replacement event;
  prv          not supported yet: prv (dp-accounting has none).
"""
import math
from typing import NamedTuple, Optional, Sequence

from dp_accounting import rdp

from fedxr_jax.errors import ConfigError
from fedxr_jax.privacy import accounting

SAMPLINGS = accounting.SAMPLINGS
# (sampling, accountant) pairs dp-accounting can account.
SUPPORTED = (('fixed', 'rdp'), ('poisson', 'rdp'), ('poisson', 'pld'))
_REFUSED = {
    'prv': 'not supported yet: prv (dp-accounting has none)',
}
_RELATION = {'fixed': 'replace_one', 'poisson': 'add_remove'}


def check(sampling: str, accountant: str) -> None:
  """ConfigError (one line) unless dp-accounting can account this sampler with this accountant."""
  if accountant in _REFUSED:
    raise ConfigError(f'privacy.accountant={accountant!r}: {_REFUSED[accountant]}')
  names = sorted({a for _, a in SUPPORTED})
  if accountant not in names:
    raise ConfigError(f'privacy.accountant must be one of {names}, got {accountant!r}')
  if sampling not in SAMPLINGS:
    raise ConfigError(f'privacy.sampling must be one of {SAMPLINGS}, got {sampling!r}')
  if (sampling, accountant) not in SUPPORTED:
    raise ConfigError(f"privacy.accountant={accountant!r} cannot account sampling={sampling!r}: "
                      "dp-accounting's PLD has no sampling-without-replacement event "
                      "(use sampling='poisson' or accountant='rdp')")


def _check_run(noise_multiplier, rounds, cohort_size, population):
  if noise_multiplier < 0:
    raise ConfigError(f'privacy.noise_multiplier must be >= 0, got {noise_multiplier}')
  if rounds < 0:
    raise ConfigError(f'rounds must be >= 0, got {rounds}')
  if not 1 <= cohort_size <= population:
    raise ConfigError(f'a cohort of {cohort_size} out of {population} clients: the cohort '
                      'size must be in [1, the population]')


def epsilons(noise_multiplier: float, *, delta: float, rounds: int, cohort_size: int,
             population: int, sampling: str, accountant: str) -> list:
  """[epsilon after round 1, ..., after round `rounds`] at `delta`.

  Entry t is exactly what a fresh dp-accounting accountant gives after
  composing the round's event t times. RDP: one round's curve times t (the
  accountant does the same sum). PLD: a fresh self-composition per t, so the
  last entry equals `epsilon(...)` bit for bit (sequential composition would
  differ in the 10th digit); about 0.1 s a round at sigma ~ 3.
  """
  delta = accounting.check_delta(delta)
  check(sampling, accountant)
  _check_run(noise_multiplier, rounds, cohort_size, population)
  if rounds == 0:
    return []
  if noise_multiplier == 0:
    return [math.inf] * int(rounds)
  event = accounting.sampled_gaussian(noise_multiplier, sample_size=cohort_size,
                                      dataset_size=population, sampling=sampling)
  if accountant == 'rdp':
    acc = accounting.make_accountant('rdp', sampling).compose(event, 1)
    curve, orders = acc.rdp, acc.orders
    return [float(rdp.compute_epsilon(orders, t * curve, delta)[0])
            for t in range(1, int(rounds) + 1)]
  return [float(accounting.make_accountant(accountant, sampling).compose(event, t)
                .get_epsilon(delta)) for t in range(1, int(rounds) + 1)]


def epsilon(noise_multiplier: float, *, delta: float, rounds: int, cohort_size: int,
            population: int, sampling: str, accountant: str) -> float:
  """Epsilon at `delta` after `rounds` rounds (0 for no round, inf for sigma = 0)."""
  check(sampling, accountant)
  _check_run(noise_multiplier, rounds, cohort_size, population)
  return accounting.epsilon(noise_multiplier, delta=delta, rounds=rounds,
                            cohort_size=cohort_size, population=population,
                            sampling=sampling, accountant=accountant)


def noise_multiplier_for(target_epsilon: float, *, delta: float, rounds: int,
                         cohort_size: int, population: int, sampling: str, accountant: str,
                         tol: float = 1e-3) -> float:
  """The smallest sigma (within `tol`) whose epsilon after `rounds` is <= target.

  dp-accounting's calibration (Brent's method on a bracket) on the same
  event and accountant as `epsilon`: epsilon(result) <= target is guaranteed.
  """
  check(sampling, accountant)
  _check_run(0.0, rounds, cohort_size, population)
  return accounting.calibrate_noise_multiplier(
      target_epsilon, delta=delta, rounds=rounds, cohort_size=cohort_size,
      population=population, sampling=sampling, accountant=accountant, tol=tol)


class Row(NamedTuple):
  sampling: str
  accountant: str
  relation: str            # the neighbouring relation epsilon protects
  noise_multiplier: float  # sigma: noise stddev over the clip norm C
  epsilon: float           # at `noise_multiplier` after `rounds`
  target_epsilon: float
  sigma_for_target: float  # the smallest sigma (within tol) meeting target_epsilon
  delta: float
  rounds: int
  cohort_size: int
  population: int


def table(noise_multiplier: float, target_epsilon: float, *, delta: float, rounds: int,
          cohort_size: int, population: int,
          pairs: Optional[Sequence[tuple]] = None, tol: float = 1e-3) -> list:
  """One `Row` per (sampling, accountant) pair (default: every supported one).

  For a report: epsilon at a fixed sigma and the sigma for a target epsilon,
  each row naming its accountant and neighbouring relation.
  """
  rows = []
  for sampling, accountant in (SUPPORTED if pairs is None else pairs):
    check(sampling, accountant)
    common = dict(delta=delta, rounds=rounds, cohort_size=cohort_size,
                  population=population, sampling=sampling, accountant=accountant)
    rows.append(Row(sampling, accountant, _RELATION[sampling], float(noise_multiplier),
                    epsilon(noise_multiplier, **common), float(target_epsilon),
                    noise_multiplier_for(target_epsilon, tol=tol, **common), float(delta),
                    int(rounds), int(cohort_size), int(population)))
  return rows
