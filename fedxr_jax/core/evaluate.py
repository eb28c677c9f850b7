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
from typing import Callable, Optional

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


def make_evaluate(stage: client_lib.LocalStage, *, seed_key, initial_params: Callable,
                  own_models: Optional[Callable], chunk_size: int,
                  mesh: Optional[Mesh]) -> Callable:
  """evaluate(server, clients, frozen, source, client_ids, split, ...) -> sums."""
  problem, algorithm = stage.problem, stage.algorithm
  fresh_personal = lambda: {r: initial_params()[r] for r in stage.personal_roles}
  # Without personal trees, personal models, adaptation or own models, a
  # client's evaluated model is the global one: compare_global reuses its stats.
  personalizes = bool(stage.personal_roles) or own_models is not None or any(
      f is not None for f in (algorithm.eval_model, algorithm.eval_adapt))

  def client_states(server, clients, client_ids, from_population):
    num = client_ids.shape[0]
    if from_population:
      return (server_lib.gather(clients.personal, client_ids),
              server_lib.gather(clients.algorithm, client_ids))
    return (trees.broadcast_to_clients(fresh_personal(), num),
            trees.broadcast_to_clients(algorithm.init_client_state(server.shared), num))

  def evaluate(server, clients, frozen, source, client_ids, split: str,
               personal_from_population: bool = True, per_client: bool = False,
               compare_global: bool = False, example_losses: bool = False):
    num = client_ids.shape[0]
    personal, algo_states = client_states(server, clients, client_ids,
                                          personal_from_population)
    if own_models is not None and personal_from_population:
      models = own_models(server.topology, client_ids)   # e.g. gossip: each its own
    else:
      models = trees.broadcast_to_clients(server.shared, num)
    keys = rng.client_keys(rng.round_key(rng.stream(seed_key, rng.EVAL_STREAM),
                                         server.round), client_ids)
    # The data of the round just trained (drift, arrived tasks), not the next.
    data_round = jnp.maximum(server.round - 1, 0)

    def client_fn(client_id, key, own, model, algo_state):
      data = problem.client_data(source, client_id, split, data_round)
      if algorithm.eval_adapt is not None or example_losses:
        train_data = problem.client_data(source, client_id, 'train', data_round)
      params = {**model, **own}
      if algorithm.eval_model is not None and personal_from_population:
        params = {**params, **algorithm.eval_model(model, algo_state)}
      extra = {}
      if algorithm.eval_adapt is not None:
        ctx = client_lib.context(client_lib.with_hyperparams(stage, server), train_data, key,
                                 frozen, model, params)
        params, cost = algorithm.eval_adapt(ctx, algo_state)
        device = device_costs.device_profile(train_data)
        seconds = device_costs.compute_seconds(stage.costs, 0, cost, device['train_flops'])
        extra = {'adapt_compute_s': seconds,
                 'adapt_energy_j': seconds * device['compute_power_w']}
      if per_client:   # groups (-1: the problem does not say) and this round's FLOP/s
        extra['device'] = jnp.asarray(data.get('device', -1), jnp.int32)
        extra['environment'] = jnp.asarray(data.get('environment', -1), jnp.int32)
        extra['train_flops'] = jnp.asarray(device_costs.device_profile(data)['train_flops'],
                                           jnp.float32)
      if example_losses:   # one pass over both splits: one copy of the model to compile
        losses = per_example_losses(problem, {**frozen, **params}, {**data, 'examples': (
            jax.tree.map(lambda a, b: jnp.concatenate([a, b]), train_data['examples'],
                         data['examples']))})
        n = jax.tree.leaves(train_data['examples'])[0].shape[0]
        extra['train_losses'], extra['test_losses'] = losses[:n], losses[n:]
        extra['train_valid'] = jnp.arange(n) < train_data['num_examples']
        extra['test_valid'] = jnp.arange(losses.shape[0] - n) < data['num_examples']
      stats = problem.eval_stats({**frozen, **params}, data)
      if compare_global:
        extra['global'] = stats if not personalizes else problem.eval_stats(
            {**frozen, **server.shared, **fresh_personal()}, data)
      return {**stats, **extra}, {}

    stats, _ = vectorize.map_clients(client_fn, (client_ids, keys, personal, models,
                                                 algo_states),
                                     chunk_size=eval_chunk(num, chunk_size), mesh=mesh)
    return stats if per_client else vectorize.sum_over_clients(stats)

  return evaluate
