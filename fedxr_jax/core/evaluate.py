"""Evaluation: the summed `eval_stats` of some clients on their held-out data.

Population clients are evaluated with their personal trees and the model
the algorithm gives them (their own model under gossip, Ditto's personal
model, a locally fine-tuned one); clients outside the population (never
sampled) start from the initial personal trees and a fresh algorithm state
made from the current global model, as a new user would.
"""
from typing import Callable, Optional

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from fedxr_jax.core import client as client_lib
from fedxr_jax.core import device_costs
from fedxr_jax.core import rng
from fedxr_jax.core import server as server_lib
from fedxr_jax.core import trees
from fedxr_jax.core import vectorize


def eval_chunk(num_clients: int, chunk_size: int) -> int:
  if chunk_size and num_clients % chunk_size == 0:
    return chunk_size
  return 0


def make_evaluate(stage: client_lib.LocalStage, *, seed_key, initial_params: Callable,
                  own_models: Optional[Callable], chunk_size: int,
                  mesh: Optional[Mesh]) -> Callable:
  """evaluate(server, clients, frozen, source, client_ids, split, ...) -> sums."""
  problem, algorithm = stage.problem, stage.algorithm

  def client_states(server, clients, client_ids, from_population):
    num = client_ids.shape[0]
    if from_population:
      return (server_lib.gather(clients.personal, client_ids),
              server_lib.gather(clients.algorithm, client_ids))
    fresh = {r: initial_params()[r] for r in stage.personal_roles}
    return (trees.broadcast_to_clients(fresh, num),
            trees.broadcast_to_clients(algorithm.init_client_state(server.shared), num))

  def evaluate(server, clients, frozen, source, client_ids, split: str,
               personal_from_population: bool = True, per_client: bool = False):
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
      params = {**model, **own}
      if algorithm.eval_model is not None and personal_from_population:
        params = {**params, **algorithm.eval_model(model, algo_state)}
      extra = {}
      if algorithm.eval_adapt is not None:
        train_data = problem.client_data(source, client_id, 'train', data_round)
        ctx = client_lib.context(stage, train_data, key, frozen, model, params)
        params, cost = algorithm.eval_adapt(ctx, algo_state)
        device = device_costs.device_profile(train_data)
        seconds = device_costs.compute_seconds(stage.costs, 0, cost, device['train_flops'])
        extra = {'adapt_compute_s': seconds,
                 'adapt_energy_j': seconds * device['compute_power_w']}
      return {**problem.eval_stats({**frozen, **params}, data), **extra}, {}

    stats, _ = vectorize.map_clients(client_fn, (client_ids, keys, personal, models,
                                                 algo_states),
                                     chunk_size=eval_chunk(num, chunk_size), mesh=mesh)
    return stats if per_client else vectorize.sum_over_clients(stats)

  return evaluate
