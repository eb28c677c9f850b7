"""Poisson-sampled cohorts, padded to a fixed size so the round stays compiled.

Each client joins a round independently with probability `rate` (q), so the
cohort size is Binomial(P, q) and dp-accounting's PoissonSampledDpEvent
applies (add-or-remove-one neighbours; `privacy.accountants`). Whether
client i joins round r is a pure function of (seed, r, i) (`included`:
one 32-bit draw from fold_in(fold_in(stream(seed, POISSON_STREAM), r), i)),
so the compiled round recomputes it per client in O(1) and needs no mask
from the host. A round compiles for `max_size` clients: the included ids
and, as padding, the smallest ids not included, all distinct and sorted;
a padding client is not included, so it sits the round out (unavailable:
no step, no upload, its states unchanged) and the aggregate sums exactly
the Poisson sample.

Overflow (more than `max_size` clients drawn). `max_cohort_for_run` picks
the smallest size whose probability that any of the run's rounds overflows
is <= a stated bound (`privacy.poisson.overflow`); a setting whose bound is
exceeded is refused, and a round that overflows anyway stops the run
(`CohortOverflow`, one line): a cohort is never truncated or redrawn, which
would bias the sample and void the accounting. (`next_size` gives the padded
size to recompile for instead, for a caller that can.)

The aggregate must divide by the expected cohort size q P, a constant
(`aggregators.dp_mean`): the realized count is never used by the round.
"""
import dataclasses
import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from fedxr_jax.core import rng
from fedxr_jax.errors import ConfigError, FedXRError

# Folded into the seed key (`core.rng`): apart from the fixed sampler's
# cohort stream and every training key.
POISSON_STREAM = rng.POISSON_STREAM
DEFAULT_OVERFLOW = 1e-6


class CohortOverflow(FedXRError):
  """A round drew more clients than its compiled size (never truncated)."""


def _check(population, rate):
  if not (population >= 1 and int(population) == population):
    raise ConfigError(f'population must be an int >= 1, got {population!r}')
  if not 0.0 < rate <= 1.0:
    raise ConfigError(f'the Poisson sampling rate must be in (0, 1], got {rate}')


def overflow_probability(population: int, rate: float, max_size: int) -> float:
  """P(Binomial(population, rate) > max_size): the chance one round overflows."""
  _check(population, rate)
  return float(stats.binom.sf(max_size, population, rate))


def run_overflow_probability(population: int, rate: float, max_size: int,
                             rounds: int) -> float:
  """P(any of `rounds` independent rounds draws more than max_size clients)."""
  p = overflow_probability(population, rate, max_size)
  return float(-math.expm1(rounds * math.log1p(-p))) if p < 1 else 1.0


def max_cohort(population: int, rate: float, overflow_prob: float) -> int:
  """The smallest M with P(Binomial(population, rate) > M) <= overflow_prob."""
  _check(population, rate)
  if not 0.0 <= overflow_prob < 1.0:
    raise ConfigError(f'overflow_prob must be in [0, 1), got {overflow_prob}')
  if overflow_prob == 0.0:
    return population
  # isf is the inverse of sf up to rounding: step to the exact smallest M.
  m = int(min(max(stats.binom.isf(overflow_prob, population, rate), 0), population))
  while m > 0 and stats.binom.sf(m - 1, population, rate) <= overflow_prob:
    m -= 1
  while stats.binom.sf(m, population, rate) > overflow_prob:
    m += 1
  return m


def max_cohort_for_run(population: int, rate: float, rounds: int,
                       overflow_prob: float) -> int:
  """The smallest M whose chance that any of `rounds` rounds overflows is <= overflow_prob."""
  if not 0.0 <= overflow_prob < 1.0:
    raise ConfigError(f'privacy.poisson.overflow must be in [0, 1), got {overflow_prob}')
  if rounds < 1:
    raise ConfigError(f'rounds must be >= 1, got {rounds}')
  # Rounds draw independently: P(none overflows) = (1 - p)^R.
  per_round = -math.expm1(math.log1p(-overflow_prob) / rounds)
  return max_cohort(population, rate, per_round)


def next_size(count: int, max_size: int) -> int:
  """The padded size to recompile for after an overflow: max_size doubled until count fits.

  Doubling bounds the distinct programs of a run by log2(P / max_size) + 1.
  """
  if max_size < 1:
    raise ConfigError(f'max_size must be >= 1, got {max_size}')
  size = max_size
  while size < count:
    size *= 2
  return size


class PoissonCohort(NamedTuple):
  ids: jax.Array    # int32 [max_size]: distinct, ascending; included ids and padding
  mask: jax.Array   # bool [max_size]: which slots hold an included client
  count: jax.Array  # int32 []: clients drawn; > max_size means overflow


def _threshold(rate: float) -> int:
  # Include iff 32 random bits < floor(q 2^32): probability within 2^-32
  # below q, never above, so accounting at q stays an upper bound
  # (amplification by sampling is monotone in q).
  return min(math.floor(rate * 2.0 ** 32), 2 ** 32 - 1)


def included(seed_key: jax.Array, round_idx, client_ids, rate: float) -> jax.Array:
  """bool, shaped like client_ids: whether each client joins round `round_idx`.

  One 32-bit draw per (seed, round, client): O(1) per client, inside or
  outside a compiled program (round_idx and client_ids may be traced).
  """
  if not 0.0 < rate <= 1.0:
    raise ConfigError(f'the Poisson sampling rate must be in (0, 1], got {rate}')
  ids = jnp.asarray(client_ids, jnp.int32)
  if rate == 1.0:
    return jnp.ones(ids.shape, bool)
  key = jax.random.fold_in(rng.stream(seed_key, POISSON_STREAM), round_idx)
  draw = lambda c: jax.random.bits(jax.random.fold_in(key, c), (), jnp.uint32)
  bits = jax.vmap(draw)(ids.ravel()).reshape(ids.shape)
  return bits < jnp.uint32(_threshold(rate))


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _draw(seed_key, round_idx, population, rate, max_size) -> PoissonCohort:
  member = included(seed_key, round_idx, jnp.arange(population, dtype=jnp.int32), rate)
  count = jnp.sum(member, dtype=jnp.int32)
  (members,) = jnp.nonzero(member, size=max_size, fill_value=population)
  (others,) = jnp.nonzero(~member, size=max_size, fill_value=population)
  slot = jnp.arange(max_size, dtype=jnp.int32)
  # Included ids first, then the smallest ids not included: max_size distinct ids.
  ids = jnp.sort(jnp.where(slot < count, members,
                           others[jnp.clip(slot - count, 0, max_size - 1)])).astype(jnp.int32)
  return PoissonCohort(ids, member[ids], count)


def poisson_cohort(seed_key: jax.Array, round_idx, population: int, rate: float,
                   max_size: int) -> PoissonCohort:
  """The round's Poisson cohort: a pure function of (seed_key, round_idx).

  O(population) work and memory (one 32-bit draw per client; 10^6 clients
  in well under a second on a CPU). population, rate and max_size are
  static (Python numbers); round_idx may be traced. rate = 1 includes
  everyone. On overflow (count > max_size) the ids are the max_size
  smallest included ones.
  """
  _check(population, rate)
  if not 1 <= max_size <= population:
    raise ConfigError(f'max_size must be in [1, population={population}], got {max_size}')
  return _draw(seed_key, round_idx, int(population), float(rate), int(max_size))


def cohort_sampler(seed: int, population: int, rate: float, max_size: int,
                   rounds_hint: int = 0, overflow: float = DEFAULT_OVERFLOW) -> Callable:
  """round_idx -> [max_size] numpy cohort (jitted once), as `core.round_plan.cohort_sampler`.

  The count is checked on the host, where the plan is made anyway: a round
  that drew more than max_size clients raises `CohortOverflow` (one line).
  """
  key_data = jax.device_put(rng.key_data(seed))
  poisson_cohort(jax.random.key(0), 0, population, rate, max_size)   # checks, once
  fn = jax.jit(lambda k, r: _draw(rng.run_key(k), r, population, float(rate), max_size))

  def sample(round_idx):
    cohort = jax.device_get(fn(key_data, jax.device_put(np.int32(round_idx))))
    if int(cohort.count) > max_size:
      raise CohortOverflow(
          f'privacy.sampling=poisson: round {int(round_idx) + 1} drew {int(cohort.count)} '
          f'clients, more than the compiled {max_size} (chance <= {overflow:g} for '
          f'{rounds_hint or "the"} rounds, privacy.poisson.overflow); a cohort is never '
          f'truncated or redrawn: rerun with privacy.poisson.max_cohort >= {int(cohort.count)}')
    return np.asarray(cohort.ids)

  return sample


# ---- in a run (privacy.sampling=poisson) -------------------------------------

SOURCE_KEY = 'poisson/seed'   # the seed's key data, as data of the run's source


@dataclasses.dataclass(frozen=True)
class Settings:
  """`privacy.poisson` (privacy.sampling=poisson; cohort_size is then the expected
  size q P): the round compiles for max_cohort clients (0: the smallest whose
  chance that any round of the run draws more is <= overflow); a max_cohort
  whose chance exceeds overflow is refused."""
  overflow: float = 1e-6
  max_cohort: int = 0


def compiled_cohort_size(s: Settings, *, population: int, cohort_size: int,
                         rounds: int) -> int:
  """M: the cohort size a Poisson run's round compiles for (checked, one line)."""
  rate = cohort_size / population
  if s.max_cohort:
    if not 1 <= s.max_cohort <= population:
      raise ConfigError(f'privacy.poisson.max_cohort must be in [1, population={population}],'
                        f' got {s.max_cohort}')
    chance = run_overflow_probability(population, rate, s.max_cohort, rounds)
    if chance > s.overflow:
      raise ConfigError(f'privacy.poisson.max_cohort={s.max_cohort}: a round of the run '
                        f'overflows it with probability {chance:.3g} > privacy.poisson.overflow'
                        f'={s.overflow:g} (leave it 0 for the smallest size that does not)')
    return int(s.max_cohort)
  return max_cohort_for_run(population, rate, rounds, s.overflow)


def wrap_problem(problem, rate: float):
  """The problem whose train data of a round says a client not drawn is unavailable.

  Membership is recomputed per client from (the seed's key data in the
  source, round, id) (`included`): the padding of a round's cohort sits
  it out, the drawn clients train as usual.
  """

  def client_data(source, client_id, split, round_idx=0):
    data = problem.client_data(source, client_id, split, round_idx)
    if split != 'train':
      return data
    drawn = included(rng.run_key(source[SOURCE_KEY]), round_idx, client_id, rate)
    return {**data, 'available': jnp.asarray(data.get('available', True)) & drawn}

  return problem._replace(client_data=client_data)


def source_arrays(seed: int) -> dict:
  """The seed's key data as data of the source (lanes of other seeds: one program)."""
  return {SOURCE_KEY: rng.key_data(seed)}
