"""Which clients of the population are malicious: a fixed, seeded set.

Exactly k = round(fraction * population) clients (halves round up): the
first k ids of a permutation of the population drawn from `seed_key`. The
set is fixed for the run (attackers do not change between rounds) and is a
pure function of (seed_key, population, fraction). Pass a key of its own
stream (e.g. `rng.stream(seed_key, ATTACK_STREAM)`), so the set is
independent of cohorts and training.

`predicate` draws the permutation once (O(population), on the host at
setup) and returns a jittable client_id -> bool lookup; `malicious` is the
same answer for one id, recomputing the permutation (tests, small runs).
"""
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.errors import ConfigError


def num_malicious(population: int, fraction: float) -> int:
  if not 0.0 <= fraction <= 1.0:
    raise ConfigError(f'attack.fraction must be in [0, 1], got {fraction}')
  if population < 1:
    raise ConfigError(f'the population must have at least one client, got {population}')
  return int(np.floor(fraction * population + 0.5))


def malicious_mask(seed_key: jax.Array, population: int, fraction: float) -> jax.Array:
  """Bool [population]: True for the malicious clients."""
  k = num_malicious(population, fraction)
  order = jax.random.permutation(seed_key, population)
  return jnp.zeros((population,), bool).at[order[:k]].set(True)


def malicious(seed_key: jax.Array, client_id, fraction: float, population: int) -> jax.Array:
  """Whether `client_id` is one of the malicious clients (bool scalar)."""
  return malicious_mask(seed_key, population, fraction)[client_id]


def predicate(seed_key: jax.Array, fraction: float, population: int) -> Callable:
  """client_id -> bool scalar, the set drawn once; ids outside the population
  (new users of evaluation) are honest (a gather would clamp them onto the
  last client)."""
  mask = malicious_mask(seed_key, population, fraction)
  return lambda client_id: (client_id < population) & mask[jnp.minimum(client_id,
                                                                       population - 1)]
