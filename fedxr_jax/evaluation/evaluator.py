"""Evaluation rows of a round: the metrics the host writes on evaluated rounds.

`Evaluator(exp, workdir, resume_round)(server, clients, frozen, cohort,
history)` evaluates, as `eval_protocol` describes, the round's participants
(eval/*), users outside the population (eval_unseen/*), where clients keep
their own models the spread of client accuracy, and the fixed panel and
held-out groups, giving every Table 6 metric (metrics/registry.py) its
metrics.jsonl keys; with a workdir it writes the per-client table
(eval_clients.jsonl) and TensorBoard event files (`log_row`). `history`:
the earlier rows, for continuity on the panel.
"""
import os
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.data import synthetic
from fedxr_jax.data.world import objectives
from fedxr_jax.metrics import clients as clients_lib
from fedxr_jax.metrics import continuity
from fedxr_jax.metrics import generalization
from fedxr_jax.metrics import latency
from fedxr_jax.metrics import tensorboard
from fedxr_jax.evaluation import client_metrics
from fedxr_jax.evaluation import device_facts
from fedxr_jax.core import hosts
from fedxr_jax.evaluation import protocol as eval_protocol

QOE_STREAM = 0x90E
# The options of `Federation.evaluate` that select what it computes (jit-static).
STATIC = ('split', 'personal_from_population', 'per_client', 'compare_global',
          'example_losses')   # folded into the seed, then the round: the simulated survey


def eval_metrics(prefix: str, sums: dict, tasks, task_defs=()) -> dict:
  """Per-task accuracy and loss from summed eval stats (None: no labels).

  A task's accuracy is its kind's success rate (`compose.xr_problem.task_hits`:
  correct class, PCK, IoU >= 0.5); regression and detection tasks add their
  own metrics (`data.world.objectives.summarize`: MAE, RMSE, PCK; mean IoU).
  """
  sums = jax.tree.map(np.asarray, sums)
  out, accs = {}, []
  for t, name in enumerate(tasks):
    count = float(sums['count'][t])
    acc = float(sums['correct'][t]) / count if count else None
    out[f'{prefix}/{name}/accuracy'] = acc
    out[f'{prefix}/{name}/loss'] = float(sums['loss_sum'][t]) / count if count else None
    if acc is not None:
      accs.append(acc)
  out[f'{prefix}/accuracy'] = float(np.mean(accs)) if accs else None
  for td in task_defs:
    if td.kind != 'classification' and td.name in sums.get('tasks', {}):
      task_sums = sums['tasks'][td.name]
      held = float(task_sums['count']) > 0
      for key, value in objectives.summarize(td, task_sums).items():
        if key != 'loss':
          out[f'{prefix}/{td.name}/{key}'] = float(value) if held else None
  if 'attack/backdoor_count' in sums:   # a backdoor's success on triggered test data
    count = float(sums['attack/backdoor_count'])
    key = 'attack/success_rate' if prefix == 'eval' else f'{prefix}/attack/success_rate'
    out[key] = float(sums['attack/backdoor_hits']) / count if count else None
  if 'path_examples' in sums:   # resource-aware inference paths (algorithms/resource_aware)
    out.update(path_metrics(prefix, sums))
  if 'expert_tokens' in sums:
    # Submodule activation: share of each task's tokens routed to each expert
    # ([layer][expert]), and the experts that take >= 5% of them.
    for t, name in enumerate(tasks):
      routed = sums['expert_tokens'][t]
      share = routed / np.maximum(routed.sum(-1, keepdims=True), 1e-9)
      out[f'{prefix}/{name}/expert_share'] = np.round(share, 4).tolist()
      out[f'{prefix}/{name}/experts_active'] = float((share >= 0.05).sum(-1).mean())
  return out


def path_metrics(prefix: str, sums: dict) -> dict:
  """What the examples' inference paths cost: the share of labelled (example, task)
  pairs over the task's Table 2 budget, and the mean modeled latency, energy and
  blocks per inference. `latency/violation_rate` times the full model; these the
  path each example took."""
  n, pairs = float(sums['path_examples']), float(np.sum(sums['path_pairs']))
  per = lambda key, scale=1.0: scale * float(sums[key]) / n if n else None
  return {f'{prefix}/path/violation_rate': (float(np.sum(sums['path_over'])) / pairs
                                            if pairs else None),
          f'{prefix}/path/latency_ms': per('path_latency_ms'),
          f'{prefix}/path/energy_mj': per('path_energy_j', 1e3),
          f'{prefix}/path/blocks': per('path_blocks')}


def forgetting(rows: list, row: dict, prefix: str, tasks) -> dict:
  """Forgetting of each task: best past accuracy minus the current one."""
  out = {}
  for name in tasks:
    key = f'{prefix}/{name}/accuracy'
    past = [r[key] for r in rows if r.get(key) is not None]
    if past and row.get(key) is not None:
      out[f'{prefix}/{name}/forgetting'] = max(0.0, max(past) - row[key])
  return out


def client_spread(per_client: dict) -> dict:
  """Spread of per-client accuracy (mean over each client's tasks)."""
  correct, count = np.asarray(per_client['correct']), np.asarray(per_client['count'])
  held = count.sum(-1) > 0
  acc = correct.sum(-1)[held] / count.sum(-1)[held]
  return {'eval/client_accuracy_std': float(acc.std()) if acc.size else None,
          'eval/client_accuracy_min': float(acc.min()) if acc.size else None}


def adaptation_metrics(sums: dict, num_clients: int) -> dict:
  """On-device cost of adapting before evaluation (local FT, TAP), per client."""
  if 'adapt_compute_s' not in sums:
    return {}
  return {'eval/adapt_compute_s': float(sums['adapt_compute_s']) / num_clients,
          'eval/adapt_energy_j': float(sums['adapt_energy_j']) / num_clients}


class Evaluator:
  """Evaluation rows of a round (see the module docstring)."""

  def __init__(self, exp, workdir: Optional[str] = None, resume_round: int = 0,
               evaluate=None):
    """`evaluate`: the federation's jitted evaluate, shared by lanes of one program."""
    config, fed = exp.config, exp.federation
    self.exp, self.tasks = exp, exp.spec.tasks
    self.task_defs = exp.spec.task_defs
    self.protocol = p = eval_protocol.from_config(config, exp.mesh)
    evaluate = evaluate or jax.jit(fed.evaluate, static_argnames=STATIC)
    self.compiled = False

    def fetched(*args, **kwargs):
      self.compiled = True
      # Host values, on every process (per-client stats sharded across processes gathered).
      return hosts.fetch(evaluate(*args, **kwargs))

    self.evaluate = fetched
    # Ids past the population are never sampled: new users.
    self.unseen = jax.device_put(np.arange(config.population_size, config.population_size
                                           + config.eval_unseen_clients, dtype=np.int32))
    # Constants of the run, computed once on the host (explicitly: any transfer guard).
    with jax.transfer_guard('allow'):
      self.panel = eval_protocol.panel_ids(config.seed, config.population_size, p.panel_size)
      self.holdouts = {g: synthetic.holdout_ids(exp.spec, g)
                       for g in getattr(exp.spec, 'holdout_groups', ())}
      self.facts = device_facts.build(exp, p.latency_precision)
      self.qoe_key = jax.device_put(jax.random.key_data(jax.random.fold_in(
          jax.random.key(config.seed), QOE_STREAM)))
    # A source that defines its tasks' latency classes (the world) gives them; the
    # eval block's own (eval.latency_classes) override.
    classes = (*getattr(exp.spec, 'latency_classes', ()), *p.latency_classes)
    self.budget = client_metrics.budgets(self.tasks, classes)
    self.participated = np.zeros(self.panel.shape, bool)   # panel users sampled so far
    self.rounds_seen = 0
    self.storage = None   # needs the client states' shapes: the first call
    self.forward, self.batches = None, None
    if p.measure_latency and exp.problem.predict is not None:
      self.forward = jax.jit(exp.problem.predict)
    write = workdir is not None
    self.table = (clients_lib.ClientTable(os.path.join(workdir, clients_lib.FILE),
                                          resume_round) if write and p.client_table else None)
    self.writer = (tensorboard.TensorBoardWriter(workdir)
                   if write and p.tensorboard else None)

  def __call__(self, server, clients, frozen, cohort, history: Sequence[dict] = ()) -> dict:
    # The compiled evaluations take explicit inputs (ids put on the device) and give
    # host values; the metric math over those values (numpy and jnp on the host: the
    # QoE survey, membership inference, ...) is host work: an explicit allowance.
    with jax.transfer_guard('allow'):
      return self._evaluate(server, clients, frozen, cohort, history)

  def _evaluate(self, server, clients, frozen, cohort, history) -> dict:
    world, cohort = self.exp.world, jax.device_put(np.asarray(cohort, np.int32))
    sums = self.evaluate(server, clients, frozen, world, cohort, 'test')
    row = {**eval_metrics('eval', sums, self.tasks, self.task_defs),
           **adaptation_metrics(sums, cohort.shape[0])}
    held_out = {}
    if self.unseen.shape[0]:
      held_out['unseen_users'] = self.evaluate(server, clients, frozen, world, self.unseen,
                                               'test', personal_from_population=False)
      row.update(eval_metrics('eval_unseen', held_out['unseen_users'], self.tasks,
                                 self.task_defs))
    if self.exp.federation.topology.own_models is not None:
      row.update(client_spread(self.evaluate(server, clients, frozen, world, cohort,
                                             'test', per_client=True)))
    records = []
    if self.panel.size:
      panel_row, records = self.panel_metrics(server, clients, frozen)
      row.update(panel_row)
      row.update(continuity.continuity_metrics(
          continuity.panel_history(list(history) + [row], self.tasks), self.tasks))
    for group, ids in self.holdouts.items():
      per = jax.device_get(self.evaluate(server, clients, frozen, world, jax.device_put(np.asarray(ids, np.int32)),
                                         'test', personal_from_population=False,
                                         per_client=True))
      held_out[group] = client_metrics.sums(per)
      records += client_metrics.records(group, ids, per, self.tasks, self.facts,
                                        self.client_latency(per))
    row.update(generalization.gaps(jax.device_get(sums), jax.device_get(held_out),
                                   self.tasks))
    row.update(self.run_metrics(server, clients, frozen))
    if self.table is not None and records:
      self.table.append(int(server.round), records)
    return row

  def client_latency(self, per_client):
    return client_metrics.client_latency_ms(self.facts, self.protocol.latency_precision,
                                            per_client['device'], per_client['train_flops'])

  def panel_metrics(self, server, clients, frozen):
    """(metrics of the fixed panel, its eval_clients.jsonl records)."""
    p, ids = self.protocol, self.panel
    per = jax.device_get(self.evaluate(
        server, clients, frozen, self.exp.world, jax.device_put(np.asarray(ids, np.int32)), 'test', per_client=True,
        compare_global=True, example_losses=True))
    summed = client_metrics.sums(per)
    lat = self.client_latency(per)
    row = {**eval_metrics('panel', summed, self.tasks, self.task_defs),
           **client_metrics.personalization_metrics(per, self.tasks, p),
           **client_metrics.activation_metrics(summed, self.exp.spec, self.facts, p),
           **client_metrics.before_arrival_metrics(summed, self.tasks),
           **client_metrics.fine_tuning_metrics(per, self.facts),
           **client_metrics.membership_metrics(per, self.panel_members(int(server.round)))}
    if self.budget is not None:
      key = jax.random.fold_in(jax.random.wrap_key_data(self.qoe_key), server.round)
      row.update(client_metrics.latency_qoe_metrics(per, lat, self.budget, ids, key,
                                                    self.tasks, p))
    return row, client_metrics.records('panel', ids, per, self.tasks, self.facts, lat)

  def panel_members(self, rounds_done: int) -> np.ndarray:
    """Panel users sampled in any cohort so far (their training examples are members)."""
    for r in range(self.rounds_seen, rounds_done):
      self.participated |= np.isin(self.panel, self.exp.sample_cohort(r))
    self.rounds_seen = max(self.rounds_seen, rounds_done)
    return self.participated

  def run_metrics(self, server, clients, frozen) -> dict:
    """Per-device facts of the run, storage, and the forward timed on this host."""
    if self.storage is None:
      one = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype),
                                      tree)
      self.storage = device_facts.storage_metrics(self.exp, {
          'algorithm_state': one(clients.algorithm), 'transform_state': one(clients.transforms)})
    out = {**self.facts.static, **self.storage}
    if self.forward is not None:
      params = {**frozen, **server.shared, **jax.tree.map(
          lambda x: x[int(self.panel[0]) if self.panel.size else 0], clients.personal)}
      example, batch = self.timing_batches()
      out.update(latency.measured_metrics(self.forward, (params, example, {}),
                                          (params, batch, {}),
                                          repeats=self.protocol.latency_repeats))
    return out

  def timing_batches(self):
    """(one example, one test batch) of the evaluation's shapes, every sensor on."""
    if self.batches is None:
      data = jax.eval_shape(lambda: self.exp.problem.client_data(
          self.exp.world, jnp.int32(0), 'test', 0))['examples']
      fill = lambda n: jax.tree.map(lambda s: (jnp.ones if s.dtype == jnp.bool_ else jnp.zeros)(
          (n,) + s.shape[1:], s.dtype), data)
      self.batches = fill(1), fill(jax.tree.leaves(data)[0].shape[0])
    return self.batches

  def log_row(self, row: dict) -> None:
    """Every metrics.jsonl row's scalars into TensorBoard (when the protocol asks)."""
    if self.writer is not None:
      self.writer.write(row)

  def close(self) -> None:
    if self.writer is not None:
      self.writer.close()
      self.writer = None
