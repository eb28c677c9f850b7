"""run(config, workdir): the host loop around the compiled round.

Per call the host makes the plans of the next K rounds (cohort, topology
arrays; `config.rounds_per_call`), runs them in one compiled call, and
fetches their metrics in one transfer. A call never crosses an evaluation
or a checkpoint. Evaluations follow a fixed schedule (every `eval_every`
rounds), so a run stopped and resumed writes the same rows as one that
never stopped; the end of every invocation also evaluates its last round
into `summary.json`.
"""
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from fedxr_jax.core import round_plan
from fedxr_jax.training import checkpoint as checkpoint_lib
from fedxr_jax.training import experiment as experiment_lib
from fedxr_jax.training import metrics_log
from fedxr_jax.training import report

# Keys that may change when a run resumes; every other key must match.
RESUMABLE_KEYS = ('num_rounds', 'eval_every', 'checkpoint_every',
                  'max_checkpoints', 'plot', 'rounds_per_call')
SUMMARY_FILE = 'summary.json'


def eval_metrics(prefix: str, sums: dict, tasks) -> dict:
  """Per-task accuracy and loss from summed eval stats (None: no labels)."""
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
  if 'expert_tokens' in sums:
    # Submodule activation: share of each task's tokens routed to each expert
    # ([layer][expert]), and the experts that take >= 5% of them.
    for t, name in enumerate(tasks):
      routed = sums['expert_tokens'][t]
      share = routed / np.maximum(routed.sum(-1, keepdims=True), 1e-9)
      out[f'{prefix}/{name}/expert_share'] = np.round(share, 4).tolist()
      out[f'{prefix}/{name}/experts_active'] = float((share >= 0.05).sum(-1).mean())
  return out


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
  """Evaluation rows of a round: participants, unseen users, client spread."""

  def __init__(self, exp):
    config, fed = exp.config, exp.federation
    self.exp, self.tasks = exp, exp.spec.tasks
    self.evaluate = jax.jit(fed.evaluate, static_argnames=(
        'split', 'personal_from_population', 'per_client'))
    # Ids past the population are never sampled: new users.
    self.unseen = jnp.arange(config.population_size,
                             config.population_size + config.eval_unseen_clients)

  def __call__(self, server, clients, frozen, cohort) -> dict:
    world, cohort = self.exp.world, jnp.asarray(cohort)
    sums = self.evaluate(server, clients, frozen, world, cohort, 'test')
    row = {**eval_metrics('eval', sums, self.tasks),
           **adaptation_metrics(sums, cohort.shape[0])}
    if self.unseen.shape[0]:
      row.update(eval_metrics('eval_unseen', self.evaluate(
          server, clients, frozen, world, self.unseen, 'test',
          personal_from_population=False), self.tasks))
    if self.exp.federation.topology.own_models is not None:
      row.update(client_spread(self.evaluate(server, clients, frozen, world, cohort,
                                             'test', per_client=True)))
    return row


def call_lengths(start: int, stop: int, per_call: int, eval_every: int,
                 checkpoint_every: int):
  """Rounds per compiled call: at most `per_call`, never crossing an event."""
  r = start
  while r < stop:
    k = min(per_call, stop - r)
    for period in (eval_every, checkpoint_every):
      k = min(k, period - r % period)
    yield r, k
    r += k


def run(config, workdir: str, progress: bool = True) -> list:
  """Trains (or resumes) the federation described by `config` in `workdir`.

  Returns the rows of metrics.jsonl. Everything is a pure function of the
  config, so a resumed run ends exactly where an uninterrupted one does.
  """
  exp = experiment_lib.build(config)
  os.makedirs(workdir, exist_ok=True)
  lock = checkpoint_lib.lock_workdir(workdir)
  try:
    return _run_locked(exp, config, workdir, progress)
  finally:
    lock.close()


def _run_locked(exp, config, workdir: str, progress: bool) -> list:
  immutable = [k for k in config.keys() if k not in RESUMABLE_KEYS]
  checkpoint_lib.write_run_config(workdir, config.to_json(), immutable)
  fed, world = exp.federation, exp.world
  server, clients, frozen = jax.jit(fed.init)(world)
  ckpts = checkpoint_lib.Checkpoints(os.path.join(workdir, 'checkpoints'),
                                     config.max_checkpoints)
  start = ckpts.latest_round() or 0
  if start:
    state = ckpts.restore(start, {'server': server, 'clients': clients})
    server, clients = state['server'], state['clients']
  log = metrics_log.MetricsLog(os.path.join(workdir, 'metrics.jsonl'), start)
  one_round = jax.jit(fed.round, donate_argnums=(0, 1))
  many_rounds = jax.jit(fed.rounds, donate_argnums=(0, 1))
  evaluator = Evaluator(exp)
  if start >= config.num_rounds:
    print(f'{workdir}: already trained {start} rounds (num_rounds='
          f'{config.num_rounds}); raise --config.num_rounds to continue.')
  bar = tqdm.tqdm(total=config.num_rounds, initial=start, desc='rounds', unit='round',
                  disable=not progress, file=sys.stderr)
  call_seconds, last_cohort = [], None
  for first, k in call_lengths(start, config.num_rounds, config.get('rounds_per_call', 1),
                               config.eval_every, config.checkpoint_every):
    plans, graph_stats = zip(*[exp.plan(r) for r in range(first, first + k)])
    t0 = time.perf_counter()
    if k == 1:
      server, clients, metrics = one_round(server, clients, frozen, world, plans[0])
      metrics = jax.tree.map(lambda x: x[None], metrics)
    else:
      server, clients, metrics = many_rounds(server, clients, frozen, world,
                                             round_plan.stack(plans))
    metrics = jax.device_get(metrics)   # the call's one transfer
    call_seconds.append((time.perf_counter() - t0, k))
    last_cohort = plans[-1].cohort
    for i in range(k):
      done = first + i + 1
      row = {'round': done, **graph_stats[i],
             **{key: float(v[i]) for key, v in metrics.items()}}
      if done % config.eval_every == 0:
        row.update(evaluator(server, clients, frozen, last_cohort))
        row.update(forgetting(log.rows, row, 'eval', exp.spec.tasks))
        bar.set_postfix(loss=f"{row['train/loss']:.3f}",
                        acc=f"{row['eval/accuracy'] or 0:.3f}")
      log.append(row)
    done = first + k
    if done % config.checkpoint_every == 0 or done == config.num_rounds:
      ckpts.save(done, {'server': server, 'clients': clients})
    bar.update(k)
  bar.close()
  ckpts.close()
  _finish(exp, config, workdir, log, call_seconds, evaluator,
          (server, clients, frozen), last_cohort)
  return log.rows


def _finish(exp, config, workdir, log, call_seconds, evaluator, state, last_cohort):
  """Timing line, the final evaluation (summary.json), summary table, curves."""
  if call_seconds:
    per_round = [s / k for s, k in call_seconds]
    steady = per_round[1:] or per_round
    print(f'{sum(k for _, k in call_seconds)} rounds: first call (with compile) '
          f'{call_seconds[0][0]:.2f} s, then median {np.median(steady):.3f} s/round '
          f'({config.cohort_size} clients x {config.local_steps} local steps)')
  final = final_evaluation(exp, log, evaluator, state, last_cohort)
  if final is not None:
    write_summary(workdir, final)
  rows = log.rows + ([final] if final is not None and final['round'] != (
      log.rows[-1]['round'] if log.rows else None) else [])
  report.print_summary(rows, exp.spec.tasks, exp.spec.num_classes)
  if config.plot and log.rows:
    path = report.plot_curves(log.rows, exp.spec.tasks, os.path.join(workdir, 'curves.png'))
    print(f'curves: {path}')


def final_evaluation(exp, log, evaluator, state, last_cohort):
  """The last round's metrics with its evaluation (recomputed if off schedule)."""
  if not log.rows:
    return None
  last = dict(log.rows[-1])
  if 'eval/accuracy' not in last:
    server, clients, frozen = state
    cohort = last_cohort if last_cohort is not None else exp.plan(last['round'] - 1)[0].cohort
    last.update(evaluator(server, clients, frozen, cohort))
  return last


def write_summary(workdir: str, row: dict) -> None:
  path = os.path.join(workdir, SUMMARY_FILE)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(row, f, indent=2, sort_keys=True)
  os.replace(tmp, path)
