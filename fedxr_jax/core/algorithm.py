"""What an algorithm may change in a round, as pure functions.

The round owns the schedule (local steps, transforms, aggregation, server
optimizer); an algorithm adds terms to the local objective, corrects local
gradients, schedules which trees train at which local step, keeps
per-client and server state (stacked over the population and checkpointed
with the run), trains personal models beside the global one, and adapts
the model a client is evaluated with. Implementations live in
`fedxr_jax.algorithms`, one file each.
"""
import dataclasses
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class RunFacts:
  """What a component may know of the run besides its own settings."""
  seed: int = 0
  population_size: int = 1
  cohort_size: int = 1
  local_steps: int = 1
  batch_size: int = 1
  plan: Mapping[str, str] = dataclasses.field(default_factory=dict)   # {role: mode}
  tasks: tuple = ()                          # task names in label order
  client_optimizer: str = 'sgd'              # its name
  client_learning_rate: float = 0.0
  client_momentum: float = 0.0
  num_rounds: int = 0                        # the run's rounds (0: not known)
  modalities: tuple = ()                     # modality names in modality-mask order
  task_kinds: tuple = ()                     # each task's kind (classification, ...)
  devices: tuple = ()                        # device class names (data['device'] indexes them)
  example_dp: bool = False                   # example-level DP-SGD (privacy.mode=example)


class ServerUpdate(NamedTuple):
  """What the server knows at the end of a round (see `update_server_state`)."""
  mean_change: Any   # mean over the cohort of (new - old) client states
  fraction: Any      # cohort size / population size
  report: Any        # example-weighted mean of the cohort's `client_report`s
  start: dict        # shared trees the round started from
  round: Any         # int32 scalar: index of the round that just ran


class ClientCost(NamedTuple):
  """Work an algorithm adds on the device, beyond the round's local steps."""
  train_steps: Any = 0       # extra local steps (Ditto's personal model, ...)
  forward_examples: Any = 0  # extra forward passes, in examples (TAP's comparisons)


class ClientContext(NamedTuple):
  """One client inside the round, for `personalize`, `client_report`, `eval_adapt`.

  train(params, regularizer=None, objective=None, steps=None) -> (params, stats):
      the client's local steps (its budget, or `steps`; same data and
      optimizer) from `params`; stats['steps'] counts the steps it ran;
  task_losses(params, first=None) -> [T] per-task loss on the client's training data
      (first: on its first `first` examples only);
  example_grads(params) -> (gradients of single examples stacked [B, ...],
      [B] mask of the valid ones);
  predict(params, batch, meta) -> {task: logits} (None if the problem has none);
  loss(params, batch, meta) -> (loss, aux): the problem's loss.
  `params` are trainable dicts {role: tree} (shared + personal roles; the
  frozen trees are added inside), except for `loss`, which takes the full
  dict as an objective does (`local.make_local_update`).
  """
  start: dict        # shared trees the client started from
  trained: dict      # the client's trees after its local training
  data: dict
  train: Callable
  task_losses: Callable
  example_grads: Callable
  predict: Optional[Callable]
  loss: Callable
  round: Any = None  # int32 scalar: the round the server is at (None: not known)


class Algorithm(NamedTuple):
  name: str
  # shared {role: tree} -> one client's state (the round stacks it over the population)
  init_client_state: Callable
  # shared -> server state
  init_server_state: Callable
  # (params, anchor, client_state, server_state) -> scalar added to the local
  # loss; anchor = the shared trees the client started the round from.
  regularizer: Callable
  # (grads, client_state, server_state) -> grads used by the local optimizer
  correct_grads: Callable
  # (client_state, server_state, anchor, trained, steps) -> new client state
  update_client_state: Callable
  # (server_state, ServerUpdate) -> new server state
  update_server_state: Callable
  # Optional (step, roles) -> {role: bool}: the roles a local step updates (FedRep).
  role_schedule: Optional[Callable] = None
  # Optional (ClientContext, client_state, server_state) -> (client_state,
  # ClientCost): personal models trained beside the global one (Ditto, TAP
  # stage 1), and the work that took on the device.
  personalize: Optional[Callable] = None
  # Optional (ClientContext, server_state) -> tree, averaged over the cohort
  # by examples into `ServerUpdate.report` (EWC's Fisher information).
  client_report: Optional[Callable] = None
  # Optional (global model, client_state) -> the model a population client is
  # evaluated with (Ditto's and TAP's personal models).
  eval_model: Optional[Callable] = None
  # Optional (ClientContext, client_state) -> (params, ClientCost): what a
  # client does with its training data before it is evaluated (local
  # fine-tuning, TAP stage 2), and the work that took.
  eval_adapt: Optional[Callable] = None
  # Whether it needs a central server (its state lives there).
  needs_server: bool = False
  # Optional (problem, anchor, client_state, server_state) -> objective(params,
  # batch, meta) -> (loss, aux): the local loss of the round's training in place
  # of `problem.loss` (LwF's distillation); params as `problem.loss` takes them.
  objective: Optional[Callable] = None
  # Optional (shared, server_state) -> shared: the server's edits of the global
  # model after its step, from the new server state (a task's module created).
  edit_model: Optional[Callable] = None
  # Optional (train, data, server_state) -> (trained, stats): the round's local
  # training in place of train(data), where train(view, stream=0) runs the
  # client's local steps (its budget, objective, regularizer and schedule) from
  # the round's start on a view of its data, keyed by `stream` (offloading: the
  # share of the data a co-owned device trains); stats['measures'] {name: scalar}
  # are summed over the cohort into the round's 'algorithm/<name>' metrics.
  local_train: Optional[Callable] = None


def no_state(shared):
  del shared
  return {}


def no_regularizer(params, anchor, client_state, server_state):
  del params, anchor, client_state, server_state
  return jnp.zeros(())


def keep_grads(grads, client_state, server_state):
  del client_state, server_state
  return grads


def keep_client_state(client_state, server_state, anchor, trained, steps):
  del server_state, anchor, trained, steps
  return client_state


def keep_server_state(server_state, update):
  del update
  return server_state


def plain(name: str, **hooks) -> Algorithm:
  """FedAvg's local training and server, plus the given hooks."""
  return Algorithm(name, no_state, no_state, no_regularizer, keep_grads,
                   keep_client_state, keep_server_state)._replace(**hooks)
