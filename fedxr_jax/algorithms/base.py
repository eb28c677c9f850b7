"""What an algorithm may change in a round, as pure functions.

The round owns the schedule (local scan, aggregation, server optimizer);
an algorithm adds terms to the local objective, corrects local gradients,
and keeps per-client and server state (e.g. SCAFFOLD's control variates),
stacked over the population and checkpointed with the run.
"""
from typing import Callable, NamedTuple

import jax.numpy as jnp


class Algorithm(NamedTuple):
  name: str
  # shared {role: tree} -> one client's state (the round stacks it over the population)
  init_client_state: Callable
  # shared -> server state
  init_server_state: Callable
  # (params, anchor) -> scalar added to the local loss; anchor = the shared
  # trees the client started the round from.
  regularizer: Callable
  # (grads, client_state, server_state) -> grads used by the local optimizer
  correct_grads: Callable
  # (client_state, server_state, anchor, trained, steps) -> new client state
  update_client_state: Callable
  # (server_state, mean change of the cohort's client states, cohort / population)
  #   -> new server state
  update_server_state: Callable


def no_state(shared):
  del shared
  return {}


def no_regularizer(params, anchor):
  del params, anchor
  return jnp.zeros(())


def keep_grads(grads, client_state, server_state):
  del client_state, server_state
  return grads


def keep_client_state(client_state, server_state, anchor, trained, steps):
  del server_state, anchor, trained, steps
  return client_state


def keep_server_state(server_state, mean_change, fraction):
  del mean_change, fraction
  return server_state
