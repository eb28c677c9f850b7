"""Which clients of the population are malicious: a fixed, seeded set.

Exactly k = round(fraction * population) clients (halves round up): the
first k ids of a permutation of the population drawn from `seed_key`. The
set is fixed for the run (attackers do not change between rounds) and is a
pure function of (seed_key, population, fraction). Pass a key of its own
stream (e.g. `rng.stream(seed_key, ATTACK_STREAM)`), so the set is
independent of cohorts and training.

The set is data, never a constant of the compiled round: `source_arrays`
draws it once on the host (O(population)) into the run's source, `mark`
tells each client whether it is one (`data['malicious']`), so runs of two
seeds compile one program. `malicious` recomputes one id's answer (tests).
"""
import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.core import transforms
from fedxr_jax.core.problem import FederatedProblem
from fedxr_jax.errors import ConfigError

MASK = 'attack/malicious'   # source key: bool [population]


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


def source_arrays(seed_key: jax.Array, fraction: float, population: int) -> dict:
  """{MASK: bool [population]}: the set as data of the run's source (one program per seed)."""
  return {MASK: np.asarray(jax.device_get(malicious_mask(seed_key, population, fraction)))}


def flag(source, client_id, population: int) -> jax.Array:
  """bool scalar from the source's set; ids outside the population (new users of
  evaluation) are honest (a gather would clamp them onto the last client)."""
  mask = jnp.asarray(source[MASK])
  return (client_id < population) & mask[jnp.minimum(client_id, population - 1)]


def mark(problem: FederatedProblem, population: int) -> FederatedProblem:
  """The problem whose client data says whether the client attacks (`data['malicious']`)."""

  def client_data(source, client_id, split, round_idx=0):
    data = problem.client_data(source, client_id, split, round_idx)
    return {**data, 'malicious': flag(source, client_id, population)}

  return problem._replace(client_data=client_data)


def report() -> transforms.UpdateTransform:
  """Each upload's stat 'malicious' (1/0): what an omniscient attack reads (server side)."""
  return transforms.stateless(lambda update, key, weights, info: (
      update, weights, {'malicious': info.data['malicious'].astype(jnp.float32)}))
