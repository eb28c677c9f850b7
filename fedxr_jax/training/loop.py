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
import numpy as np
import tqdm

from fedxr_jax.core import round_plan
from fedxr_jax.training import checkpoint as checkpoint_lib
from fedxr_jax.training import evaluation
from fedxr_jax.training import experiment as experiment_lib
from fedxr_jax.training import metrics_log
from fedxr_jax.training import report

# Keys that may change when a run resumes; every other key must match.
RESUMABLE_KEYS = ('num_rounds', 'eval_every', 'checkpoint_every',
                  'max_checkpoints', 'plot', 'rounds_per_call')
SUMMARY_FILE = 'summary.json'


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
  evaluator = evaluation.Evaluator(exp)
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
        row.update(evaluation.forgetting(log.rows, row, 'eval', exp.spec.tasks))
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
