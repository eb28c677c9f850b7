"""The federated round as one pure function, compiled once per run.

round(server, clients, frozen, source, plan) -> (server, clients, metrics):
  plan       the cohort and this round's topology arrays (`core.round_plan`,
             made once per round on the host and shared with evaluation)
  local      every cohort client trains, vmapped in chunks and sharded
             (`core.client`): local steps, algorithm state, module weights,
             its update through the chain of update transforms, and its
             contribution to the aggregator
  aggregate  the topology combines the uploads (`core.topology`): a
             streamed or stacked aggregator under a central server, or
             consensus over D2D links; it says whether the server syncs
             and what moved on which link
  server     an optax step on the pseudo-gradient (`core.server`), the
             aggregator's fold, the topology's, algorithm's and transforms'
             server states; personal trees go back to their clients
  metrics    reduced over the client axis (`core.round_metrics`), plus the
             round's communication, latency and energy (`topology.costs`)
`rounds(server, clients, frozen, source, plans)` runs K rounds of stacked
plans in one call (`lax.scan`) and returns the metrics of each. Both take
an optional divergence `guard` (`round_metrics.Guard`): the metrics then
hold 'guard/diverged', and with `guard.skip` a diverged round keeps the
old server and client states (only the round counter moves on).
"""
import functools
from typing import Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from fedxr_jax.core import aggregation
from fedxr_jax.core import algorithm as algorithm_lib
from fedxr_jax.core import chunking
from fedxr_jax.core import client as client_lib
from fedxr_jax.core import device_costs
from fedxr_jax.core import evaluate as evaluate_lib
from fedxr_jax.core import local as local_lib
from fedxr_jax.core import lr_schedule as lr_schedule_lib
from fedxr_jax.core import plan as plan_lib
from fedxr_jax.core import rng
from fedxr_jax.core import round_metrics
from fedxr_jax.core import schedule
from fedxr_jax.core import server as server_lib
from fedxr_jax.core import topology as topology_lib
from fedxr_jax.core import transforms as transforms_lib
from fedxr_jax.core import trees
from fedxr_jax.core import vectorize
from fedxr_jax.core.problem import FederatedProblem
from fedxr_jax.core.state import ClientStates, ServerState
from fedxr_jax.errors import ConfigError

# Key streams folded into a round's key.
COSTS_STREAM = 0xC057
AGGREGATE_STREAM = 0xA66
TRANSFORM_SERVER_STREAM = 0x75E2


class Federation(NamedTuple):
  """Pure functions of one federated run (jit them; see `training.loop`)."""
  init: Callable        # (source, key data of the seed) -> (server, clients, frozen)
  round: Callable       # (server, clients, frozen, source, plan) -> (server, clients, metrics)
  rounds: Callable      # the same over K stacked plans -> metrics stacked [K]
  evaluate: Callable    # (server, clients, frozen, source, client_ids, split) -> sums
  plan: dict            # {role: tuning mode}
  topology: topology_lib.Topology
  chunk_size: int = 0   # clients per vmapped chunk (0: the whole cohort), 'auto' resolved
  setup: Optional['RoundSetup'] = None   # what round / rounds close over (sweeps rebind it)


def check_sizes(*, population_size, cohort_size, local_steps, batch_size):
  for name, value in (('population_size', population_size),
                      ('cohort_size', cohort_size), ('local_steps', local_steps),
                      ('batch_size', batch_size)):
    if value < 1:
      raise ConfigError(f'{name} must be >= 1, got {value}')
  if cohort_size > population_size:
    raise ConfigError(f'cohort_size={cohort_size} is larger than '
                      f'population_size={population_size}')


class RoundSetup(NamedTuple):
  """The static pieces every stage of a round closes over."""
  stage: client_lib.LocalStage
  topology: topology_lib.Topology
  server_optimizer: optax.GradientTransformation
  plan: dict
  population_size: int
  cohort_size: int
  chunk_size: int
  mesh: Optional[Mesh]
  schedule_by_budget: bool = True
  # The client optimizer's injected hyperparameters at round 0 (`server.hyperparams`).
  client_hyperparams: Optional[dict] = None
  # (problem, params, source, seed key) -> round 0's params from the clients' data
  # (`Contribution.warm_start`); None: the initial params as drawn.
  warm_start: Optional[Callable] = None
  # The client learning rate over the rounds (`core.lr_schedule`; constant: none).
  lr_schedule: lr_schedule_lib.Schedule = lr_schedule_lib.Schedule()

  def initial_params(self, seed_key):
    return self.stage.problem.init_params(rng.stream(seed_key, rng.INIT_STREAM))


def build_federation(problem: FederatedProblem, plan: dict, *, population_size: int, cohort_size: int, local_steps: int,
                     batch_size: int, client_optimizer: optax.GradientTransformation,
                     server_optimizer: optax.GradientTransformation,
                     topology: topology_lib.Topology,
                     chunk_size: Union[int, str] = 0, mesh: Optional[Mesh] = None,
                     shuffle: bool = True,
                     algorithm: Optional[algorithm_lib.Algorithm] = None,
                     transforms: Optional[transforms_lib.UpdateTransform] = None,
                     aggregator: Optional[aggregation.Aggregator] = None,
                     costs: device_costs.DeviceCosts = device_costs.DeviceCosts(),
                     schedule_by_budget: bool = True, source=None,
                     memory_budget_gb: float = 0.0,
                     private_grads: Optional[Callable] = None,
                     warm_start: Optional[Callable] = None,
                     lr_schedule: lr_schedule_lib.Schedule = lr_schedule_lib.Schedule()
                     ) -> Federation:
  """Builds the pure init / round / evaluate functions of a federation.

  `topology` from `fedxr_jax.topology.make`; `algorithm` defaults to FedAvg,
  `transforms` to none, `aggregator` to the streamed example-weighted mean.
  `schedule_by_budget`: chunks run in step-budget order (`core.schedule`).
  chunk_size='auto' is measured on `source` (the data, or its shapes) within
  `memory_budget_gb` (0: half the device's memory; `core.chunking`).
  `private_grads`: example-level DP-SGD in local training (`core.local`).
  `warm_start`: round 0's params from the clients' data (`RoundSetup.warm_start`).
  `lr_schedule`: the client learning rate over the rounds (`core.lr_schedule`).
  """
  check_sizes(population_size=population_size, cohort_size=cohort_size,
              local_steps=local_steps, batch_size=batch_size)
  chunk_size = chunking.parse(chunk_size)
  if chunk_size != chunking.AUTO:
    vectorize.check_layout(cohort_size, chunk_size, mesh)
  elif source is None:
    raise ConfigError("chunk_size='auto' needs build_federation(source=...) to measure")
  roles = jax.eval_shape(lambda: problem.init_params(jax.random.key(0))).keys()
  plan = plan_lib.validate_plan(plan, roles)
  stage = _local_stage(problem, plan, topology, client_optimizer, local_steps=local_steps,
                       batch_size=batch_size, shuffle=shuffle, algorithm=algorithm,
                       transforms=transforms, aggregator=aggregator, costs=costs,
                       private_grads=private_grads)
  setup = RoundSetup(stage, topology, server_optimizer, plan, population_size, cohort_size,
                     chunk_size, mesh, schedule_by_budget,
                     lr_schedule_lib.rate_holder(lr_schedule, client_optimizer),
                     warm_start, lr_schedule)
  if chunk_size == chunking.AUTO:
    setup = _measured_chunk(setup, source, memory_budget_gb)
    chunk_size = setup.chunk_size
  evaluate = evaluate_lib.make_evaluate(stage, initial_params=setup.initial_params,
                                        own_models=topology.own_models,
                                        chunk_size=chunk_size, mesh=mesh)
  return Federation(init=_bound(init, setup), round=_bound(round_step, setup),
                    rounds=_bound(rounds, setup), evaluate=evaluate, plan=plan,
                    topology=topology, chunk_size=chunk_size, setup=setup)


def _local_stage(problem, plan, topology, client_optimizer, *, local_steps, batch_size, shuffle,
                 algorithm, transforms, aggregator, costs, private_grads):
  """The clients' stage of every round (defaults: FedAvg, no transforms, the streamed
  example-weighted mean)."""
  aggregator = aggregator or aggregation.weighted_mean()
  return client_lib.LocalStage(
      problem=problem,
      local_update=local_lib.make_local_update(problem.loss, client_optimizer,
                                               local_steps=local_steps,
                                               batch_size=batch_size, shuffle=shuffle,
                                               batch_axis=vectorize.VMAP_AXIS,
                                               private_grads=private_grads),
      algorithm=algorithm or algorithm_lib.plain('fedavg'),
      transforms=transforms or transforms_lib.chain(), aggregator=aggregator,
      shared_roles=plan_lib.roles_with(plan, plan_lib.SHARED),
      personal_roles=plan_lib.roles_with(plan, plan_lib.PERSONAL), local_steps=local_steps,
      batch_size=batch_size, costs=costs, streams=topology.streams(aggregator))


def _measured_chunk(setup: RoundSetup, source, memory_budget_gb: float) -> RoundSetup:
  """setup with chunk_size='auto' measured on this federation (`core.chunking`)."""
  states = jax.eval_shape(functools.partial(init, setup), source, rng.key_data(0))
  return setup._replace(chunk_size=chunking.resolve(
      chunking.AUTO, setup.stage, states, source, num_clients=setup.cohort_size,
      mesh=setup.mesh, memory_budget_gb=memory_budget_gb))


def _bound(fn, setup):
  """fn with its setup bound: a plain function (jit, chex and names see one)."""
  @functools.wraps(fn)
  def bound(*args, **kwargs):
    return fn(setup, *args, **kwargs)
  return bound


def init(setup: RoundSetup, source, key):
  """(server, clients, frozen) of round 0: every tree from the seed's key data."""
  stage, population = setup.stage, setup.population_size
  problem, algorithm, transforms = stage.problem, stage.algorithm, stage.transforms
  params = setup.initial_params(rng.run_key(key))
  if setup.warm_start is not None:
    params = setup.warm_start(problem, params, source, rng.run_key(key))
  shared = {r: params[r] for r in stage.shared_roles}
  # {role: prefix tree of weights}: the module structure of `shared`.
  template = jax.eval_shape(lambda: problem.module_weights(
      problem.client_data(source, jnp.int32(0), 'train', jnp.int32(0)), None))
  per_client = lambda tree: trees.broadcast_to_clients(tree, population)
  server = ServerState(
      round=jnp.zeros((), jnp.int32), key=jnp.asarray(key, jnp.uint32), shared=shared,
      opt_state=setup.server_optimizer.init(shared),
      topology=setup.topology.init(shared, {r: template[r] for r in stage.shared_roles}),
      algorithm=algorithm.init_server_state(shared),
      aggregator=stage.aggregator.init(shared), transforms=transforms.init_server(shared),
      hyperparams={'client_optimizer': dict(setup.client_hyperparams or {})})
  clients = ClientStates(personal=per_client({r: params[r] for r in stage.personal_roles}),
                         algorithm=per_client(algorithm.init_client_state(shared)),
                         transforms=per_client(transforms.init(shared)))
  frozen_roles = plan_lib.roles_with(setup.plan, plan_lib.FROZEN)
  return server, clients, {r: params[r] for r in frozen_roles}


def local(setup: RoundSetup, server, clients, frozen, source, round_plan):
  """The cohort's local stage: (per-client outputs [C, ...], streamed sums).

  With `schedule_by_budget` the chunks run in step-budget order
  (`core.schedule`); the outputs come back in cohort order.
  """
  cohort = round_plan.cohort
  keys = rng.client_keys(rng.round_key(rng.run_key(server.key), server.round), cohort)
  start = setup.topology.client_start(server.shared, server.topology, round_plan.topo)
  args = (cohort, keys, server_lib.gather(clients.personal, cohort),
          server_lib.gather(clients.algorithm, cohort),
          server_lib.gather(clients.transforms, cohort))
  args = args + (() if start is None else (start,))
  if setup.lr_schedule.active:   # this round's rate; the base stays in the state
    server = server.replace(hyperparams={**server.hyperparams, 'client_optimizer': (
        lr_schedule_lib.scaled(server.hyperparams['client_optimizer'], setup.lr_schedule,
                               server.round))})
  client_fn = client_lib.make_client_fn(setup.stage, server, frozen, source)
  order = schedule.cohort_order(setup.stage, source, cohort, server.round,
                                chunk_size=setup.chunk_size, enabled=setup.schedule_by_budget)
  return vectorize.map_clients(client_fn, args, chunk_size=setup.chunk_size, mesh=setup.mesh,
                               order=order)


def server_update(setup: RoundSetup, server, agg, sums):
  """New global trees and optimizer state, after the aggregator's fold."""
  if setup.topology.uses_server_optimizer:
    shared, opt_state = server_lib.step(setup.server_optimizer, server.shared,
                                        server.opt_state, agg.target, agg.sync)
  else:
    shared, opt_state = agg.target, server.opt_state
  aggregator = setup.stage.aggregator
  if aggregator.after_server is not None:
    shared = trees.where_tree(agg.sync, aggregator.after_server(
        shared, server.aggregator, sums.get('aggregate')), shared)
  return shared, opt_state


def algorithm_server(setup: RoundSetup, server, clients, out, sums, cohort):
  """The algorithm's server state after the round (SCAFFOLD's c, EWC's Fisher)."""
  algorithm = setup.stage.algorithm
  algo_states = server_lib.gather(clients.algorithm, cohort)
  mean_change = jax.tree.map(lambda new, old: jnp.mean(new - old, axis=0),
                             out['algorithm'], algo_states)
  report = None
  if algorithm.client_report is not None:
    total, count = sums['report']
    report = jax.tree.map(lambda x: x / jnp.maximum(count, 1e-9), total)
  return algorithm.update_server_state(server.algorithm, algorithm_lib.ServerUpdate(
      mean_change=mean_change, fraction=setup.cohort_size / setup.population_size,
      report=report, start=server.shared, round=server.round))


def round_step(setup: RoundSetup, server, clients, frozen, source, round_plan, guard=None):
  """One round: local -> aggregate -> server -> metrics (see the module docstring)."""
  cohort, topo, topology = round_plan.cohort, round_plan.topo, setup.topology
  round_key = rng.round_key(rng.run_key(server.key), server.round)
  out, sums = local(setup, server, clients, frozen, source, round_plan)
  stats = out['stats']
  uploads = topology_lib.Uploads(
      sums=sums.get('aggregate'), stacked=out.get('upload'),
      upload_bits=stats['upload_bits'], download_bits=stats['download_bits'])
  agg = topology.aggregate(server.shared, server.topology, uploads, topo, server.round,
                           setup.stage.aggregator, server.aggregator,
                           jax.random.fold_in(round_key, AGGREGATE_STREAM))
  shared, opt_state = server_update(setup, server, agg, sums)
  algorithm_state = algorithm_server(setup, server, clients, out, sums, cohort)
  if setup.stage.algorithm.edit_model is not None:   # e.g. a task's module created
    shared = setup.stage.algorithm.edit_model(shared, algorithm_state)
  transforms = setup.stage.transforms
  new_server = ServerState(
      round=server.round + 1, key=server.key, shared=shared, opt_state=opt_state,
      topology=topology.after_server(shared, agg.state, agg.sync),
      algorithm=algorithm_state,
      aggregator=agg.aggregator_state,
      transforms=transforms.update_server(
          server.transforms, sums['transforms'],
          jax.random.fold_in(round_key, TRANSFORM_SERVER_STREAM)),
      hyperparams=server.hyperparams)
  train = round_metrics.training_metrics(stats)
  if guard is not None:
    bad = round_metrics.diverged(guard, train['train/loss'], (shared, out['personal']))
    train[round_metrics.DIVERGED] = bad.astype(jnp.float32)
    if guard.skip:   # the cohort's old states go back: a [C] slice, not [P]
      keep = lambda new, old: trees.where_tree(bad, old, new)
      new_server = keep(new_server, server.replace(round=new_server.round))
      out = {**out, **{k: keep(out[k], server_lib.gather(getattr(clients, k), cohort))
                       for k in ('personal', 'algorithm', 'transforms')}}
  new_clients = ClientStates(
      personal=server_lib.scatter(clients.personal, cohort, out['personal']),
      algorithm=server_lib.scatter(clients.algorithm, cohort, out['algorithm']),
      transforms=server_lib.scatter(clients.transforms, cohort, out['transforms']))
  metrics = {**train, **agg.metrics,
             **round_metrics.transform_metrics(sums['transforms'], setup.cohort_size),
             **topology.costs(stats, agg.link_bits, topo,
                              jax.random.fold_in(round_key, COSTS_STREAM), agg.sync)}
  return new_server, new_clients, metrics


def rounds(setup: RoundSetup, server, clients, frozen, source, plans, guard=None):
  """K rounds of stacked plans in one call; metrics stacked [K]."""
  def body(carry, round_plan):
    server, clients, guard = carry
    server, clients, metrics = round_step(setup, server, clients, frozen, source,
                                          round_plan, guard)
    return (server, clients, round_metrics.next_guard(guard, metrics)), metrics
  (server, clients, _), metrics = jax.lax.scan(body, (server, clients, guard), plans)
  return server, clients, metrics
