"""The interface between the federated core and a model + data.

The round never looks inside a model or a dataset: it sees a
`FederatedProblem`, a bundle of pure functions over explicit pytrees.

Client data (`client_data(...)`) is a dict with at least
  'examples':     a pytree whose leaves have a leading example axis [N, ...],
                  with valid examples first;
  'num_examples': int scalar, the valid examples (<= N);
and optionally
  'step_budget':  int scalar, local steps this client can afford this round.
Everything else in it (task masks, device ids, ...) is per-client metadata
handed to `loss` unchanged.
"""
from typing import Any, Callable, NamedTuple

import jax

PyTree = Any


class FederatedProblem(NamedTuple):
  # key -> {role: tree}; roles such as 'base', 'lora', 'prompts', 'heads'.
  init_params: Callable[[jax.Array], dict]
  # (params {role: tree}, batch of examples [B, ...], client meta) -> (loss, aux)
  loss: Callable[[dict, PyTree, dict], tuple]
  # (source, client_id, split) -> client data; `split` is a static string.
  client_data: Callable[[PyTree, jax.Array, str], dict]
  # client data -> {role: prefix tree of scalar weights}: each weight leaf is
  # one module, averaged only over clients that give it positive weight.
  module_weights: Callable[[dict], dict]
  # (params, client data) -> {name: array} of sums, added over clients.
  eval_stats: Callable[[dict, dict], dict]


def client_meta(data: dict) -> dict:
  return {k: v for k, v in data.items() if k != 'examples'}
