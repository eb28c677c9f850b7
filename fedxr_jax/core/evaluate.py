"""Evaluation: the summed `eval_stats` of some clients on their held-out data.

Population clients are evaluated with their personal trees and the model
the algorithm gives them (their own model under gossip, Ditto's personal
model, a locally fine-tuned one); clients outside the population (never
sampled) start from the initial personal trees and a fresh algorithm state
made from the current global model, as a new user would.

Options of a call (static under jit):
  per_client      stats per client [C, ...] instead of their sums, with
                  each client's 'device' and 'environment' index (-1: the
                  data has none) and its device's training FLOP/s at this
                  round ('train_flops', after any straggler slowdown)
  compare_global  also the stats of the generic global model on the same
                  data ('global'): the global trees with the initial
                  personal trees, no personal model, no adaptation
  example_losses  each example's loss under the evaluated model, on the
                  client's training ('train_losses') and test examples
                  ('test_losses'), with their valid masks: what a
                  loss-threshold membership-inference attack sees
"""
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from fedxr_jax.core import client as client_lib
from fedxr_jax.core import device_costs
from fedxr_jax.core import problem as problem_lib
from fedxr_jax.core import rng
from fedxr_jax.core import server as server_lib
from fedxr_jax.core import trees
from fedxr_jax.core import vectorize


def eval_chunk(num_clients: int, chunk_size: int) -> int:
  if chunk_size and num_clients % chunk_size == 0:
    return chunk_size
  return 0


def per_example_losses(problem, params: dict, data: dict):
  """Each example's loss [N]: one-example batches of `problem.loss`.

  The same as `privacy.membership.example_losses`, which core cannot import.
  """
  meta = problem_lib.client_meta(data)
  one = lambda ex: problem.loss(params, jax.tree.map(lambda x: x[None], ex), meta)[0]
  return jax.vmap(one)(data['examples'])


class Options(NamedTuple):
  """The static options of an evaluation call (see the module docstring)."""
  split: str
  from_population: bool = True
  per_client: bool = False
  compare_global: bool = False
  example_losses: bool = False


def adapt(stage, server, frozen, train_data, key, model, params, algo_state):
  """(params after the algorithm's on-device adaptation, its compute and energy)."""
  ctx = client_lib.context(client_lib.with_hyperparams(stage, server), train_data, key,
                           frozen, model, params, server.round)
  params, cost = stage.algorithm.eval_adapt(ctx, algo_state)
  device = device_costs.device_profile(train_data)
  seconds = device_costs.compute_seconds(stage.costs, 0, cost, device['train_flops'],
                                         device['half_rate'])
  return params, {'adapt_compute_s': seconds,
                  'adapt_energy_j': seconds * device['compute_power_w']}


def client_groups(data) -> dict:
  """Its device and environment (-1: the problem does not say), this round's FLOP/s."""
  return {'device': jnp.asarray(data.get('device', -1), jnp.int32),
          'environment': jnp.asarray(data.get('environment', -1), jnp.int32),
          'train_flops': jnp.asarray(device_costs.device_profile(data)['train_flops'],
                                     jnp.float32)}


def split_losses(problem, params, train_data, data) -> dict:
  """Each example's loss on both splits, one pass: one copy of the model to compile.

  The splits' example fields in common (a corrupted train split may carry a
  label mask the test split has not; its labels count as given here)."""
  test = data['examples']
  train = {k: v for k, v in train_data['examples'].items() if k in test}
  losses = per_example_losses(problem, params, {**data, 'examples': jax.tree.map(
      lambda a, b: jnp.concatenate([a, b]), train, test)})
  n = jax.tree.leaves(train_data['examples'])[0].shape[0]
  return {'train_losses': losses[:n], 'test_losses': losses[n:],
          'train_valid': jnp.arange(n) < train_data['num_examples'],
          'test_valid': jnp.arange(losses.shape[0] - n) < data['num_examples']}


class Evaluation(NamedTuple):
  """What every evaluation call of a federation closes over."""
  stage: client_lib.LocalStage
  initial_params: Callable     # seed key -> {role: tree}
  own_models: Optional[Callable]
  # Without personal trees, personal models, adaptation or own models, a
  # client's evaluated model is the global one: compare_global reuses its stats.
  personalizes: bool

  def fresh_personal(self, server) -> dict:
    """The initial personal trees (a new user's), from the run's key."""
    params = self.initial_params(rng.run_key(server.key))
    return {r: params[r] for r in self.stage.personal_roles}


def client_states(ev: Evaluation, server, clients, client_ids, opts: Options):
  """(personal trees, models, algorithm states) of the evaluated clients."""
  num = client_ids.shape[0]
  if opts.from_population:
    personal = server_lib.gather(clients.personal, client_ids)
    algo_states = server_lib.gather(clients.algorithm, client_ids)
  else:   # new users: the initial personal trees, a fresh state from the global model
    personal = trees.broadcast_to_clients(ev.fresh_personal(server), num)
    algo_states = trees.broadcast_to_clients(
        ev.stage.algorithm.init_client_state(server.shared), num)
  if ev.own_models is not None and opts.from_population:
    models = ev.own_models(server.topology, client_ids)   # e.g. gossip: each its own
  else:
    models = trees.broadcast_to_clients(server.shared, num)
  return personal, models, algo_states


def client_eval(ev: Evaluation, server, frozen, source, opts: Options) -> Callable:
  """client_fn(client_id, key, own, model, algo_state) -> (its stats, {})."""
  stage = ev.stage
  problem, algorithm = stage.problem, stage.algorithm
  # The data of the round just trained (drift, arrived tasks), not the next.
  data_round = jnp.maximum(server.round - 1, 0)

  def client_fn(client_id, key, own, model, algo_state):
    data = problem.client_data(source, client_id, opts.split, data_round)
    if algorithm.eval_adapt is not None or opts.example_losses:
      train_data = problem.client_data(source, client_id, 'train', data_round)
    params, extra = {**model, **own}, {}
    if algorithm.eval_model is not None and opts.from_population:
      params = {**params, **algorithm.eval_model(model, algo_state)}
    if algorithm.eval_adapt is not None:
      params, extra = adapt(stage, server, frozen, train_data, key, model, params,
                            algo_state)
    if opts.per_client:
      extra.update(client_groups(data))
    if opts.example_losses:
      extra.update(split_losses(problem, {**frozen, **params}, train_data, data))
    stats = problem.eval_stats({**frozen, **params}, data)
    if opts.compare_global:
      extra['global'] = stats if not ev.personalizes else problem.eval_stats(
          {**frozen, **server.shared, **ev.fresh_personal(server)}, data)
    return {**stats, **extra}, {}

  return client_fn


def make_evaluate(stage: client_lib.LocalStage, *, initial_params: Callable,
                  own_models: Optional[Callable], chunk_size: int,
                  mesh: Optional[Mesh]) -> Callable:
  """evaluate(server, clients, frozen, source, client_ids, split, ...) -> sums."""
  algorithm = stage.algorithm
  ev = Evaluation(stage, initial_params, own_models, personalizes=bool(
      stage.personal_roles) or own_models is not None or any(
          f is not None for f in (algorithm.eval_model, algorithm.eval_adapt)))

  def evaluate(server, clients, frozen, source, client_ids, split: str,
               personal_from_population: bool = True, per_client: bool = False,
               compare_global: bool = False, example_losses: bool = False):
    opts = Options(split, personal_from_population, per_client, compare_global,
                   example_losses)
    keys = rng.client_keys(rng.round_key(rng.stream(rng.run_key(server.key),
                                                    rng.EVAL_STREAM), server.round),
                           client_ids)
    stats, _ = vectorize.map_clients(
        client_eval(ev, server, frozen, source, opts),
        (client_ids, keys) + client_states(ev, server, clients, client_ids, opts),
        chunk_size=eval_chunk(client_ids.shape[0], chunk_size), mesh=mesh)
    return stats if per_client else vectorize.sum_over_clients(stats)

  return evaluate
