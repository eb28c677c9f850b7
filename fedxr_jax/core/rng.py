"""All randomness derives from keys: a run is a pure function of its seed."""
import jax
import jax.numpy as jnp

# Stream ids keep independent uses of one seed apart.
INIT_STREAM = 0
ROUND_STREAM = 1
DATA_STREAM = 2
EVAL_STREAM = 3


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
  Sorted so a client's position in the cohort does not depend on the draw order.
  """
  if cohort_size == population_size:
    return jnp.arange(population_size, dtype=jnp.int32)
  key = jax.random.fold_in(stream(seed_key, ROUND_STREAM), round_idx)
  key = jax.random.fold_in(key, 0x5A4D)  # distinct from the round's client keys
  ids = jax.random.choice(key, population_size, (cohort_size,), replace=False)
  return jnp.sort(ids).astype(jnp.int32)
