"""Poisson-sampled cohorts, padded to a fixed size so the round stays compiled.

Each client joins a round independently with probability `rate` (q), so the
cohort size is Binomial(P, q) and dp-accounting's PoissonSampledDpEvent
applies (add-or-remove-one neighbours; `privacy.accountants`). A round
compiles for at most `max_size` clients: ids of the included clients first
(ascending), then padding (id 0, mask False).

Overflow. With `max_size = max_cohort(P, q, p)` a round overflows (more than
`max_size` clients drawn) with probability <= p (`overflow_probability`).
Truncating or redrawing would bias the sample and void the accounting
(dp-accounting has a separate, truncated event for that); instead the
caller sees `count > max_size`, compiles a larger padded program
(`next_size`) and calls `poisson_cohort` again with the same (key, round):
the draw is a pure function of them, so the sample stays exactly Poisson.
Over R rounds about R p rounds pay that one extra compilation.

The aggregate must divide by the expected cohort size q P, a constant
(`aggregators.dp_mean`): the realized count is released without noise.
"""
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from scipy import stats

from fedxr_jax.errors import ConfigError

# Folded into the seed key: apart from core.rng's streams (0..5), the fixed
# sampler's cohort stream and every training key.
POISSON_STREAM = 0x9015


def _check(population, rate):
  if not (population >= 1 and int(population) == population):
    raise ConfigError(f'population must be an int >= 1, got {population!r}')
  if not 0.0 < rate <= 1.0:
    raise ConfigError(f'the Poisson sampling rate must be in (0, 1], got {rate}')


def overflow_probability(population: int, rate: float, max_size: int) -> float:
  """P(Binomial(population, rate) > max_size): the chance a round needs a larger program."""
  _check(population, rate)
  return float(stats.binom.sf(max_size, population, rate))


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
  ids: jax.Array    # int32 [max_size]: included ids ascending, then 0s
  mask: jax.Array   # bool [max_size]: True on the first min(count, max_size) slots
  count: jax.Array  # int32 []: clients drawn; > max_size means overflow


def _threshold(rate: float) -> int:
  # Include iff 32 random bits < floor(q 2^32): probability within 2^-32
  # below q, never above, so accounting at q stays an upper bound
  # (amplification by sampling is monotone in q).
  return min(math.floor(rate * 2.0 ** 32), 2 ** 32 - 1)


def poisson_cohort(seed_key: jax.Array, round_idx, population: int, rate: float,
                   max_size: int) -> PoissonCohort:
  """The round's Poisson cohort: a pure function of (seed_key, round_idx).

  O(population) work and memory (one 32-bit draw per client; 10^6 clients
  in milliseconds on a CPU). population, rate and max_size are static
  (Python numbers); round_idx may be traced. rate = 1 includes everyone.
  """
  _check(population, rate)
  if not 1 <= max_size <= population:
    raise ConfigError(f'max_size must be in [1, population={population}], got {max_size}')
  key = jax.random.fold_in(jax.random.fold_in(seed_key, POISSON_STREAM), round_idx)
  if rate == 1.0:
    included = jnp.ones((population,), bool)
  else:
    bits = jax.random.bits(key, (population,), jnp.uint32)
    included = bits < jnp.uint32(_threshold(rate))
  count = jnp.sum(included, dtype=jnp.int32)
  (ids,) = jnp.nonzero(included, size=max_size, fill_value=0)
  mask = jnp.arange(max_size, dtype=jnp.int32) < count
  return PoissonCohort(ids.astype(jnp.int32), mask, count)
