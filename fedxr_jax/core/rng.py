"""All randomness derives from keys: a run is a pure function of its seed.

The seed enters a compiled program as data: the server state holds its key
data (`key_data(seed)`), and `run_key` turns it back into the key every
stream folds from.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

# Stream ids keep independent uses of one seed apart.
INIT_STREAM = 0
ROUND_STREAM = 1
DATA_STREAM = 2
EVAL_STREAM = 3
COHORT_STREAM = 4
ATTACK_STREAM = 5   # who is malicious (attacks.malicious), and their poisoned data
POISSON_STREAM = 6  # who joins a Poisson-sampled round (privacy.poisson)


@functools.lru_cache(maxsize=None)
def _key_data(seed: int) -> tuple:
  # A deliberate host computation of a constant (the seed's key under the
  # configured PRNG implementation): allowed under any transfer guard.
  with jax.transfer_guard('allow'):
    return tuple(np.asarray(jax.device_get(jax.random.key_data(jax.random.key(seed)))))


def key_data(seed: int) -> np.ndarray:
  """The uint32 key data of a seed, on the host (a run's `ServerState.key`)."""
  return np.asarray(_key_data(int(seed)), np.uint32)


def run_key(key_data) -> jax.Array:
  """The seed's key from its key data (inside or outside a compiled program)."""
  return jax.random.wrap_key_data(key_data)


def stream(seed_key: jax.Array, stream_id: int) -> jax.Array:
  return jax.random.fold_in(seed_key, stream_id)


def round_key(seed_key: jax.Array, round_idx) -> jax.Array:
  return jax.random.fold_in(stream(seed_key, ROUND_STREAM), round_idx)


def client_keys(key: jax.Array, client_ids: jax.Array) -> jax.Array:
  """One key per client, independent of the cohort's size or order."""
  return jax.vmap(lambda c: jax.random.fold_in(key, c))(client_ids)


def sample_cohort(seed_key: jax.Array, round_idx, population_size: int,
                  cohort_size: int) -> jax.Array:
  """Cohort of a round: `cohort_size` distinct ids in [0, population_size).

  A pure function of (seed, round), so a resumed run samples the same cohorts.
  Floyd's algorithm: O(cohort^2) work whatever the population (a permutation
  of 10^6 ids cost 0.5 s a round). Each id is equally likely and every
  cohort of that size is equally likely. Sorted, so a client's position in
  the cohort does not depend on the draw order.
  """
  if cohort_size == population_size:
    return jnp.arange(population_size, dtype=jnp.int32)
  if cohort_size == 0:   # an empty panel (eval.panel_size=0): no loop to trace over no draws
    return jnp.zeros((0,), jnp.int32)
  # Its own stream: never equal to a client's training key.
  key = jax.random.fold_in(stream(seed_key, COHORT_STREAM), round_idx)
  first = population_size - cohort_size
  # One draw of exact integers: t_j uniform in [0, first + j], j = 0..cohort-1.
  draws = jax.random.randint(key, (cohort_size,), 0,
                             first + jnp.arange(cohort_size, dtype=jnp.int32) + 1)

  def add(j, chosen):
    t = draws[j]
    taken = jnp.any(chosen == t)
    return chosen.at[j].set(jnp.where(taken, first + j, t))

  chosen = jax.lax.fori_loop(0, cohort_size, add,
                             jnp.full((cohort_size,), -1, jnp.int32))
  return jnp.sort(chosen)
