"""The interface between the federated core and a model + data.

The round never looks inside a model or a dataset: it sees a
`FederatedProblem`, a bundle of pure functions over explicit pytrees.

Client data (`client_data(source, client_id, split, round_idx)`) is a dict
with at least
  'examples':     a pytree whose leaves have a leading example axis [N, ...],
                  with valid examples first;
  'num_examples': int scalar, the valid examples (<= N);
and optionally
  'step_budget':  int scalar, local steps this client can afford this round;
  'available':    bool scalar; False: the client sits this round out (no
                  steps, no weight in any aggregate, nothing sent);
  'trainable':    {role: bool scalar}; False: the client cannot train that
                  tree (e.g. not enough memory): it stays fixed and carries
                  no aggregation weight.
Everything else in it (task masks, device ids, ...) is per-client metadata
handed to `loss` unchanged.
"""
from typing import Any, Callable, NamedTuple, Optional

import jax
import numpy as np

PyTree = Any


class FederatedProblem(NamedTuple):
  # key -> {role: tree}; roles such as 'base', 'lora', 'prompts', 'heads'.
  init_params: Callable[[jax.Array], dict]
  # (params {role: tree}, batch of examples [B, ...], client meta) -> (loss, aux).
  # aux may be a dict with 'per_task' [T] losses (used by task-aware
  # personalization) and 'sums' (e.g. tokens routed to each expert), which
  # local training adds over its steps.
  loss: Callable[[dict, PyTree, dict], tuple]
  # (source, client_id, split, round_idx=0) -> client data; `split` is a
  # static string; data may change with the round (drift, task arrival).
  client_data: Callable[..., dict]
  # (client data, local training stats or None) -> {role: prefix tree of
  # weights}: each weight leaf is one module (or, with extra axes, one weight
  # per slice of the module's leading axes), averaged only over clients that
  # give it positive weight.
  module_weights: Callable[..., dict]
  # (params, client data) -> {name: array} of sums, added over clients.
  eval_stats: Callable[[dict, dict], dict]
  # Optional (params, batch, client meta) -> {task: logits}, for distillation (TAP).
  predict: Optional[Callable] = None
  # Optional (source, client_id, round_idx) -> [2] metres in [0, area_m]^2:
  # where a client is (D2D graphs, clusters, path loss); None: every client
  # sits at the centre of the area.
  client_position: Optional[Callable] = None
  # Optional (source, client_id) -> int: the client's device class.
  client_device: Optional[Callable] = None
  area_m: float = 100.0
  # Optional (params, batch, client meta) -> {'outputs': {task: [B, D]}, 'features':
  # [B, width] the pooled representation, 'routing': {block: gate probs [B, E]}}:
  # what module-level distillation compares (LwF).
  represent: Optional[Callable] = None
  # Optional (params, client data) -> {task: {'gram': [d+1, d+1], 'cross': [d+1, K]}}
  # sums over the client's labelled examples, added over clients: what the heads read
  # (with a constant 1 for the bias) against itself and against each task's target
  # (a class's one-hot, a target vector, a box's logits); closed-form heads
  # (`algorithms.warm_start`). None: the model's heads read no one feature vector.
  head_statistics: Optional[Callable] = None
  # Optional (params, fn(task, W [d+1, K]) -> W) -> params with each task's head W (its
  # kernel, then its bias as the last row) replaced by fn's.
  map_heads: Optional[Callable] = None


def client_meta(data: dict) -> dict:
  return {k: v for k, v in data.items() if k != 'examples'}


class Geography(NamedTuple):
  """Host-side facts of clients that topologies lay out graphs with."""
  positions: Callable   # (client ids [C] numpy, round_idx) -> [C, 2] float32 numpy
  devices: Callable     # client ids [C] numpy -> [C] int numpy (device class)
  area_m: float


def geography(problem: FederatedProblem, source) -> Geography:
  """The problem's client positions and devices as jitted host functions."""
  if problem.client_position is None:
    centre = np.full(2, problem.area_m / 2, np.float32)
    positions = lambda ids, r: np.broadcast_to(centre, (len(ids), 2)).copy()
  else:
    fn = jax.jit(lambda ids, r: jax.vmap(
        lambda c: problem.client_position(source, c, r))(ids))
    positions = lambda ids, r: np.asarray(jax.device_get(fn(*jax.device_put(
        (np.asarray(ids, np.int32), np.int32(r))))), np.float32)
  if problem.client_device is None:
    devices = lambda ids: np.zeros(len(ids), np.int32)
  else:
    dev = jax.jit(lambda ids: jax.vmap(lambda c: problem.client_device(source, c))(ids))
    devices = lambda ids: np.asarray(jax.device_get(dev(jax.device_put(
        np.asarray(ids, np.int32)))))
  return Geography(positions, devices, float(problem.area_m))
