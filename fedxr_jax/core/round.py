"""The federated round as one pure function, compiled once per run.

round(server, clients, frozen, source, topo) -> (server, clients, metrics):
  1. sample the cohort from (seed, round); derive every client's key;
  2. generate/gather each client's data, personal trees and start model;
  3. vmap (in chunks, sharded) local training over the cohort;
  4. masked, example-weighted module aggregation along the topology
     (`topology.coordination`; `topo` holds this round's graph arrays);
  5. a server optimizer step on the pseudo-gradient; personal trees go back
     to their clients;
  6. metrics reduced over the client axis, and the round's communication,
     latency and energy (`topology.costs`).
"""
from typing import Any, Callable, NamedTuple, Optional

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from fedxr_jax import algorithms
from fedxr_jax.core import local as local_lib
from fedxr_jax.core import plan as plan_lib
from fedxr_jax.core import problem as problem_lib
from fedxr_jax.core import rng
from fedxr_jax.core import trees
from fedxr_jax.core import vectorize
from fedxr_jax.core.problem import FederatedProblem
from fedxr_jax.errors import ConfigError
from fedxr_jax.topology import coordination as coordination_lib

# Device profile of a client whose problem does not describe one.
DEFAULT_DEVICE = {'train_flops': 1e12, 'tx_power_dbm': 20.0, 'compute_power_w': 5.0}


@flax.struct.dataclass
class ServerState:
  round: jax.Array   # int32 scalar: rounds completed
  shared: dict       # {role: tree} global copies of the shared trees
  opt_state: Any     # server optimizer state over `shared`
  topology: Any      # coordination state (edge models, client models, ...)
  algorithm: Any     # algorithm server state (e.g. SCAFFOLD's c)


@flax.struct.dataclass
class ClientStates:
  personal: dict     # {role: tree} personal trees stacked over the population
  algorithm: Any     # algorithm client states stacked over the population


class AggregationRule(NamedTuple):
  """Model-specific changes to aggregation (e.g. `algorithms.lora_rules`).

  reweight(weights, trained, data) -> weights of one client's shared trees;
  client_terms(trained, weights, data) -> a tree summed over the cohort;
  fold(shared, target, sums) -> shared, after the server step (where the
  round syncs), e.g. the exact-LoRA residual folded into the base.
  """
  reweight: Optional[Callable] = None
  client_terms: Optional[Callable] = None
  fold: Optional[Callable] = None


class Federation(NamedTuple):
  """Pure functions of one federated run (jit them; see `training.loop`)."""
  init: Callable        # source -> (server, clients, frozen)
  round: Callable       # (server, clients, frozen, source, topo) -> (server, clients, metrics)
  evaluate: Callable    # (server, clients, frozen, source, client_ids, split) -> sums
  plan: dict
  coordination: coordination_lib.Coordination


def build_federation(problem: FederatedProblem, plan: dict, *, seed: int,
                     population_size: int, cohort_size: int, local_steps: int,
                     batch_size: int, client_optimizer: optax.GradientTransformation,
                     server_optimizer: optax.GradientTransformation,
                     chunk_size: int = 0, mesh: Optional[Mesh] = None,
                     shuffle: bool = True,
                     coordination: Optional[coordination_lib.Coordination] = None,
                     cost_model: Optional[Callable] = None,
                     flops_per_step: float = 0.0,
                     algorithm: Optional[algorithms.Algorithm] = None,
                     aggregation_rule: Optional['AggregationRule'] = None) -> Federation:
  """Builds the pure init / round / evaluate functions of a federation.

  `coordination` defaults to centralized aggregation; `cost_model`
  (`topology.costs.make_cost_model`) adds comm/ and cost/ metrics;
  `algorithm` (`algorithms.make_algorithm`) defaults to FedAvg;
  `aggregation_rule` changes how shared trees are combined (LoRA rules).
  """
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
  coordination = coordination or coordination_lib.centralized()
  algorithm = algorithm or algorithms.ALGORITHMS['fedavg']()
  rule = aggregation_rule or AggregationRule()
  local_update = local_lib.make_local_update(
      problem.loss, client_optimizer, local_steps=local_steps,
      batch_size=batch_size, shuffle=shuffle)

  def initial_params():
    return problem.init_params(rng.stream(seed_key, rng.INIT_STREAM))

  def weight_template(source):
    """{role: prefix tree of weights}: the module structure of `shared`."""
    weights = jax.eval_shape(lambda: problem.module_weights(
        problem.client_data(source, jnp.int32(0), 'train', jnp.int32(0)), None))
    return {r: weights[r] for r in shared_roles}

  def init(source):
    params = initial_params()
    shared = {r: params[r] for r in shared_roles}
    personal = {r: trees.broadcast_to_clients(params[r], population_size)
                for r in personal_roles}
    frozen = {r: params[r] for r in frozen_roles}
    server = ServerState(round=jnp.zeros((), jnp.int32), shared=shared,
                         opt_state=server_optimizer.init(shared),
                         topology=coordination.init(shared, weight_template(source)),
                         algorithm=algorithm.init_server_state(shared))
    client_algorithm = trees.broadcast_to_clients(algorithm.init_client_state(shared),
                                                  population_size)
    return server, ClientStates(personal=personal, algorithm=client_algorithm), frozen

  def payload_bits(weights, shared):
    """Bits of the shared modules (or module slices) a client holds (weight > 0)."""
    total = 0.0
    for r in shared:
      bits = jax.tree.map(lambda w, sub: 8.0 * trees.tree_bytes(sub), weights[r], shared[r])
      total = total + sum(jnp.mean((w > 0).astype(jnp.float32)) * b for w, b in zip(
          jax.tree.leaves(weights[r]), jax.tree.leaves(bits)))
    return total

  def client_context(data, key, frozen, start, trained):
    """The `algorithms.ClientContext` of one client (see algorithms.base)."""
    meta = problem_lib.client_meta(data)

    def train(params, regularizer=None, objective=None, steps=None):
      budget = data.get('step_budget', local_steps) if steps is None else steps
      return local_update(params, frozen, {**data, 'step_budget': budget},
                          jax.random.fold_in(key, 0x7E41),
                          regularizer=regularizer, objective=objective,
                          role_active=algorithm.role_schedule)

    def task_losses(params):
      return problem.loss({**frozen, **params}, data['examples'], meta)[1]['per_task']

    def example_grads(params):
      """Per-example gradients of the first `batch_size` valid examples."""
      first = jax.tree.map(lambda x: x[:batch_size], data['examples'])
      one = lambda p, ex: problem.loss(
          {**frozen, **p}, jax.tree.map(lambda x: x[None], ex), meta)[0]
      grads = jax.vmap(jax.grad(one), in_axes=(None, 0))(params, first)
      valid = jnp.arange(jax.tree.leaves(first)[0].shape[0]) < data['num_examples']
      return grads, valid

    predict = None
    if problem.predict is not None:
      predict = lambda params, batch, meta: problem.predict({**frozen, **params}, batch, meta)
    return algorithms.ClientContext(start=start, trained=trained, data=data, train=train,
                                    task_losses=task_losses, example_grads=example_grads,
                                    predict=predict, loss=problem.loss)

  def round_fn(server, clients, frozen, source, topo):
    cohort = rng.sample_cohort(seed_key, server.round, population_size,
                               cohort_size)
    keys = rng.client_keys(rng.round_key(seed_key, server.round), cohort)
    personal = jax.tree.map(lambda x: x[cohort], clients.personal)
    algo_states = jax.tree.map(lambda x: x[cohort], clients.algorithm)
    start = coordination.client_start(server.shared, server.topology, topo)

    streaming = coordination.from_sums is not None

    def client_fn(client_id, key, own, algo_state, start_i=None):
      data = problem.client_data(source, client_id, 'train', server.round)
      available = jnp.asarray(data.get('available', True))
      data = {**data, 'step_budget': jnp.where(
          available, data.get('step_budget', local_steps), 0)}
      model = server.shared if start_i is None else start_i
      trained, stats = local_update(
          {**model, **own}, frozen, data, key,
          regularizer=lambda p: algorithm.regularizer(p, model, algo_state,
                                                      server.algorithm),
          correct_grads=lambda g: algorithm.correct_grads(g, algo_state,
                                                          server.algorithm),
          role_active=algorithm.role_schedule)
      new_algo_state = algorithm.update_client_state(algo_state, server.algorithm, model,
                                                     trained, stats['steps'])
      ctx = client_context(data, key, frozen, model, trained)
      if algorithm.personalize is not None:
        new_algo_state = algorithm.personalize(ctx, new_algo_state, server.algorithm)
      new_algo_state = trees.where_tree(available, new_algo_state, algo_state)

      weights = problem.module_weights(data, stats)
      # A tree the client did not update (unavailable, cannot afford it, or a
      # schedule that never reached it within its step budget) carries no weight.
      trained_roles = stats['role_steps']
      weights = {r: jax.tree.map(
          lambda w: w * (available & (trained_roles.get(r, 1) > 0)).astype(w.dtype),
          weights[r]) for r in weights}
      shared_out = {r: trained[r] for r in shared_roles}
      shared_weights = {r: weights[r] for r in shared_roles}
      if rule.reweight is not None:
        shared_weights = rule.reweight(shared_weights, shared_out, data)
      device = {**DEFAULT_DEVICE, **data.get('device_profile', {})}
      examples = data['num_examples'].astype(jnp.float32) * available
      stats = {k: v for k, v in stats.items() if k not in ('sums', 'role_steps')}
      stats['examples'] = examples
      stats['available'] = available.astype(jnp.float32)
      stats['payload_bits'] = payload_bits(shared_weights, server.shared)
      stats['compute_s'] = stats['steps'] * flops_per_step / device['train_flops']
      stats['compute_power_w'] = jnp.float32(device['compute_power_w'])
      stats['tx_power_dbm'] = jnp.float32(device['tx_power_dbm'])
      per_client = {'personal': {r: trained[r] for r in personal_roles}, 'stats': stats,
                    'algorithm': new_algo_state}
      summed = {}
      if streaming:   # summed over clients inside the chunk loop
        summed['aggregate'] = coordination_lib.weighted_terms(shared_out, shared_weights)
      else:
        per_client.update(shared=shared_out, weights=shared_weights)
      if algorithm.client_report is not None:
        report = algorithm.client_report(ctx, server.algorithm)
        summed['report'] = (jax.tree.map(lambda x: examples * x, report), examples)
      if rule.client_terms is not None:
        summed['rule'] = rule.client_terms(shared_out, shared_weights, data)
      return per_client, summed

    args = (cohort, keys, personal, algo_states) + (() if start is None else (start,))
    out, sums = vectorize.map_clients(client_fn, args, chunk_size=chunk_size, mesh=mesh)
    stats = out['stats']
    if streaming:
      target, topo_state, sync, topo_metrics = (
          coordination.from_sums(server.shared, sums['aggregate']), server.topology,
          jnp.array(True), {})
    else:
      target, topo_state, sync, topo_metrics = coordination.aggregate(
          server.shared, server.topology, out['shared'], out['weights'], topo,
          server.round)
    if coordination.uses_server_optimizer:
      # Pseudo-gradient: the server descends along (global - target).
      pseudo_grad = jax.tree.map(jnp.subtract, server.shared, target)
      updates, opt_state = server_optimizer.update(pseudo_grad, server.opt_state,
                                                   server.shared)
      shared = trees.where_tree(sync, optax.apply_updates(server.shared, updates),
                                server.shared)
      opt_state = trees.where_tree(sync, opt_state, server.opt_state)
    else:
      shared, opt_state = target, server.opt_state
    if rule.fold is not None:
      shared = trees.where_tree(sync, rule.fold(shared, target, sums['rule']), shared)
    topo_state = coordination.after_server(shared, topo_state, sync)
    personal = {r: jax.tree.map(lambda all_, new: all_.at[cohort].set(new),
                                clients.personal[r], out['personal'][r])
                for r in personal_roles}
    mean_change = jax.tree.map(lambda new, old: jnp.mean(new - old, axis=0),
                               out['algorithm'], algo_states)
    report = None
    if algorithm.client_report is not None:
      total, count = sums['report']
      report = jax.tree.map(lambda x: x / jnp.maximum(count, 1e-9), total)
    algo_server = algorithm.update_server_state(server.algorithm, algorithms.ServerUpdate(
        mean_change=mean_change, fraction=cohort_size / population_size, report=report,
        start=server.shared, round=server.round))
    algo_clients = jax.tree.map(lambda all_, new: all_.at[cohort].set(new),
                                clients.algorithm, out['algorithm'])
    n = stats['examples']
    metrics = {
        'train/loss': jnp.sum(n * stats['loss']) / jnp.maximum(jnp.sum(n), 1.0),
        'train/examples': jnp.sum(n),
        'train/mean_local_steps': jnp.mean(stats['steps'].astype(jnp.float32)),
        'train/participation': jnp.mean(stats['available']),
        **topo_metrics,
    }
    if cost_model is not None:
      model_bits = 8.0 * sum(trees.tree_bytes(server.shared[r]) for r in shared_roles)
      metrics.update(cost_model(
          {**stats, 'model_bits': jnp.float32(model_bits)}, topo,
          jax.random.fold_in(rng.round_key(seed_key, server.round), 0xC057),
          server.round))
    server = ServerState(round=server.round + 1, shared=shared, opt_state=opt_state,
                         topology=topo_state, algorithm=algo_server)
    return server, ClientStates(personal=personal, algorithm=algo_clients), metrics

  def evaluate(server, clients, frozen, source, client_ids, split: str,
               personal_from_population: bool = True, per_client: bool = False):
    """Sums of `problem.eval_stats` over `client_ids` on their `split` data.

    Clients outside the population (never sampled) use the initial personal
    trees and a fresh algorithm state made from the current global model, as
    a new user would.
    """
    num = client_ids.shape[0]
    if personal_from_population:
      personal = jax.tree.map(lambda x: x[client_ids], clients.personal)
      algo_states = jax.tree.map(lambda x: x[client_ids], clients.algorithm)
    else:
      fresh = {r: initial_params()[r] for r in personal_roles}
      personal = trees.broadcast_to_clients(fresh, num)
      algo_states = trees.broadcast_to_clients(
          algorithm.init_client_state(server.shared), num)

    if coordination.own_models is not None and personal_from_population:
      # e.g. decentralized: every client is evaluated with its own model.
      own_models = coordination.own_models(server.topology, client_ids)
    else:
      own_models = trees.broadcast_to_clients(server.shared, num)
    keys = rng.client_keys(rng.round_key(rng.stream(seed_key, rng.EVAL_STREAM),
                                         server.round), client_ids)

    # The data of the round just trained (drift, arrived tasks), not the next.
    data_round = jnp.maximum(server.round - 1, 0)

    def client_fn(client_id, key, own, model, algo_state):
      data = problem.client_data(source, client_id, split, data_round)
      params = {**model, **own}
      if algorithm.eval_model is not None and personal_from_population:
        params = {**params, **algorithm.eval_model(model, algo_state)}
      if algorithm.eval_adapt is not None:
        train_data = problem.client_data(source, client_id, 'train', data_round)
        ctx = client_context(train_data, key, frozen, model, params)
        params = algorithm.eval_adapt(ctx, algo_state)
      return problem.eval_stats({**frozen, **params}, data), {}

    stats, _ = vectorize.map_clients(client_fn, (client_ids, keys, personal, own_models,
                                                 algo_states),
                                     chunk_size=_eval_chunk(num, chunk_size), mesh=mesh)
    return stats if per_client else vectorize.sum_over_clients(stats)

  return Federation(init=init, round=round_fn, evaluate=evaluate, plan=plan,
                    coordination=coordination)


def _eval_chunk(num_clients: int, chunk_size: int) -> int:
  if chunk_size and num_clients % chunk_size == 0:
    return chunk_size
  return 0
