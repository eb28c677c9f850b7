"""Ditto (Li et al. 2021): a personal model beside the global one.

Each round a client trains the global model as FedAvg does, and its personal
model v_i on f_i(v) + lam/2 ||v - w||^2 with w the global model it
received. Clients are evaluated with v_i (new users: the global model).
lam lives in the server state (data: another lam reuses the compiled round).
"""
import jax.numpy as jnp

from fedxr_jax.core import algorithm as algorithm_lib
from fedxr_jax.core import trees
from fedxr_jax.errors import ConfigError


def ditto(facts, *, lam: float = 0.1) -> algorithm_lib.Algorithm:
  del facts
  if lam < 0:
    raise ConfigError(f'algorithm.ditto.lam must be >= 0, got {lam}')

  def init_client_state(shared):
    return {'personal': shared}

  def init_server_state(shared):
    del shared
    return {'lam': jnp.float32(lam)}

  def personalize(ctx, client_state, server_state):
    start = ctx.start
    own = {r: v for r, v in ctx.trained.items() if r not in start}
    personal, stats = ctx.train(
        {**client_state['personal'], **own},
        regularizer=lambda p: 0.5 * server_state['lam'] * trees.squared_distance(p, start))
    return ({'personal': {r: personal[r] for r in start}},
            algorithm_lib.ClientCost(train_steps=stats['steps']))

  def eval_model(model, client_state):
    del model
    return client_state['personal']

  return algorithm_lib.plain('ditto', init_client_state=init_client_state,
                             init_server_state=init_server_state, personalize=personalize,
                             eval_model=eval_model)
