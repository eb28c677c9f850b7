"""The federated round as one pure function, compiled once per run.

round(server, clients, frozen, source) -> (server, clients, metrics):
  1. sample the cohort from (seed, round); derive every client's key;
  2. generate/gather each client's data and personal trees;
  3. vmap (in chunks, sharded) local training over the cohort;
  4. masked, example-weighted module aggregation of the shared trees;
  5. a server optimizer step on the pseudo-gradient; personal trees go back
     to their clients;
  6. metrics reduced over the client axis.
"""
from typing import Any, Callable, NamedTuple, Optional

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from fedxr_jax.core import local as local_lib
from fedxr_jax.core import plan as plan_lib
from fedxr_jax.core import rng
from fedxr_jax.core import trees
from fedxr_jax.core import vectorize
from fedxr_jax.core.problem import FederatedProblem
from fedxr_jax.errors import ConfigError


@flax.struct.dataclass
class ServerState:
  round: jax.Array   # int32 scalar: rounds completed
  shared: dict       # {role: tree} global copies of the shared trees
  opt_state: Any     # server optimizer state over `shared`


@flax.struct.dataclass
class ClientStates:
  personal: dict     # {role: tree} personal trees stacked over the population


class Federation(NamedTuple):
  """Pure functions of one federated run (jit them; see `training.loop`)."""
  init: Callable        # key -> (server, clients, frozen)
  round: Callable       # (server, clients, frozen, source) -> (server, clients, metrics)
  evaluate: Callable    # (server, clients, frozen, source, client_ids, split) -> sums
  plan: dict


def build_federation(problem: FederatedProblem, plan: dict, *, seed: int,
                     population_size: int, cohort_size: int, local_steps: int,
                     batch_size: int, client_optimizer: optax.GradientTransformation,
                     server_optimizer: optax.GradientTransformation,
                     chunk_size: int = 0, mesh: Optional[Mesh] = None,
                     shuffle: bool = True) -> Federation:
  """Builds the pure init / round / evaluate functions of a federation."""
  for name, value in (('population_size', population_size),
                      ('cohort_size', cohort_size), ('local_steps', local_steps),
                      ('batch_size', batch_size)):
    if value < 1:
      raise ConfigError(f'{name} must be >= 1, got {value}')
  if cohort_size > population_size:
    raise ConfigError(f'cohort_size={cohort_size} is larger than '
                      f'population_size={population_size}')
  vectorize.check_layout(cohort_size, chunk_size, mesh)
  roles = jax.eval_shape(problem.init_params, jax.random.key(0)).keys()
  plan = plan_lib.validate_plan(plan, roles)
  frozen_roles = plan_lib.roles_with(plan, plan_lib.FROZEN)
  shared_roles = plan_lib.roles_with(plan, plan_lib.SHARED)
  personal_roles = plan_lib.roles_with(plan, plan_lib.PERSONAL)
  seed_key = jax.random.key(seed)
  local_update = local_lib.make_local_update(
      problem.loss, client_optimizer, local_steps=local_steps,
      batch_size=batch_size, shuffle=shuffle)

  def initial_params():
    return problem.init_params(rng.stream(seed_key, rng.INIT_STREAM))

  def init(_=None):
    params = initial_params()
    shared = {r: params[r] for r in shared_roles}
    personal = {r: trees.broadcast_to_clients(params[r], population_size)
                for r in personal_roles}
    frozen = {r: params[r] for r in frozen_roles}
    server = ServerState(round=jnp.zeros((), jnp.int32), shared=shared,
                         opt_state=server_optimizer.init(shared))
    return server, ClientStates(personal=personal), frozen

  def round_fn(server, clients, frozen, source):
    cohort = rng.sample_cohort(seed_key, server.round, population_size,
                               cohort_size)
    keys = rng.client_keys(rng.round_key(seed_key, server.round), cohort)
    personal = jax.tree.map(lambda x: x[cohort], clients.personal)

    def client_fn(client_id, key, own):
      data = problem.client_data(source, client_id, 'train')
      trained, stats = local_update({**server.shared, **own}, frozen, data, key)
      stats['examples'] = data['num_examples'].astype(jnp.float32)
      return trained, problem.module_weights(data), stats

    trained, weights, stats = vectorize.map_clients(
        client_fn, (cohort, keys, personal), chunk_size=chunk_size, mesh=mesh)

    averaged = {r: trees.aggregate_modules(trained[r], weights[r], server.shared[r])
                for r in shared_roles}
    # Pseudo-gradient: the server descends along (global - average).
    pseudo_grad = jax.tree.map(jnp.subtract, server.shared, averaged)
    updates, opt_state = server_optimizer.update(pseudo_grad, server.opt_state,
                                                 server.shared)
    shared = optax.apply_updates(server.shared, updates)
    personal = {r: jax.tree.map(lambda all_, new: all_.at[cohort].set(new),
                                clients.personal[r], trained[r])
                for r in personal_roles}
    n = stats['examples']
    metrics = {
        'train/loss': jnp.sum(n * stats['loss']) / jnp.maximum(jnp.sum(n), 1.0),
        'train/examples': jnp.sum(n),
        'train/mean_local_steps': jnp.mean(stats['steps'].astype(jnp.float32)),
    }
    server = ServerState(round=server.round + 1, shared=shared,
                         opt_state=opt_state)
    return server, ClientStates(personal=personal), metrics

  def evaluate(server, clients, frozen, source, client_ids, split: str,
               personal_from_population: bool = True):
    """Sums of `problem.eval_stats` over `client_ids` on their `split` data.

    Clients outside the population (never sampled) use the initial personal
    trees, as a new user would.
    """
    if personal_from_population:
      personal = jax.tree.map(lambda x: x[client_ids], clients.personal)
    else:
      fresh = {r: initial_params()[r] for r in personal_roles}
      personal = trees.broadcast_to_clients(fresh, client_ids.shape[0])

    def client_fn(client_id, own):
      data = problem.client_data(source, client_id, split)
      params = {**frozen, **server.shared, **own}
      return problem.eval_stats(params, data)

    stats = vectorize.map_clients(client_fn, (client_ids, personal),
                                  chunk_size=_eval_chunk(client_ids.shape[0], chunk_size),
                                  mesh=mesh)
    return vectorize.sum_over_clients(stats)

  return Federation(init=init, round=round_fn, evaluate=evaluate, plan=plan)


def _eval_chunk(num_clients: int, chunk_size: int) -> int:
  if chunk_size and num_clients % chunk_size == 0:
    return chunk_size
  return 0
