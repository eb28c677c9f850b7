"""run(config, workdir): the host loop around the compiled round.

Per call the host makes the plans of the next K rounds (cohort, topology
arrays; `config.rounds_per_call`), runs them in one compiled call, and
fetches their metrics in one transfer. A call never crosses an evaluation
or a checkpoint. Evaluations follow a fixed schedule (every `eval_every`
rounds), so a run stopped and resumed writes the same rows as one that
never stopped; the end of every invocation also evaluates its last round
into `summary.json`.

Fail safely, lose nothing:
  - before anything compiles, `training.checks` refuses what cannot work
    (id widths, batch sizes, every round's layout, memory), in one line;
  - each compiled call is compiled once per call length, ahead of time, and
    its memory checked; fresh and restored states are placed on the devices
    alike, so a resumed or sharded run hits the same program (and cache);
  - every row carries the round's divergence flag (`training.guards`): a
    diverged round stops the run before its checkpoint, or is skipped;
  - metrics.jsonl rows become durable with each checkpoint, and rows up to
    the resumed checkpoint that are damaged or missing are recomputed by
    replaying rounds from the newest checkpoint before them (or round 0).

Rows also hold 'time/round_s' (the round's share of its call),
'time/compile_s' (first row of a call that compiled) and 'time/eval_s'
(evaluated rows): machine-dependent, so bit-for-bit comparisons leave them
out (benchmarks/same_numbers.py).

Several processes (`core.hosts`) run this same loop on one global
mesh; process 0 alone writes and prints, and what it reads from the workdir
is handed to the others, so every process takes the same branch.
"""
import json
import math
import os
import sys
import time
from typing import Optional

import jax
import numpy as np
import tqdm
from jax.sharding import NamedSharding, PartitionSpec, SingleDeviceSharding

from fedxr_jax.core import round_plan
from fedxr_jax.training import checkpoint as checkpoint_lib
from fedxr_jax.training import checks
from fedxr_jax.core import hosts
from fedxr_jax.evaluation import evaluator as evaluator_lib
from fedxr_jax.compose import experiment as experiment_lib
from fedxr_jax.training import guards
from fedxr_jax.training import metrics_log
from fedxr_jax.training import report
from fedxr_jax.training import workdir as workdir_lib

# Keys that may change when a run resumes; every other key must match.
RESUMABLE_KEYS = ('num_rounds', 'eval_every', 'checkpoint_every', 'max_checkpoints', 'plot',
                  'rounds_per_call', 'on_divergence', 'divergence_factor',
                  'memory_budget_gb')
SUMMARY_FILE = workdir_lib.SUMMARY_FILE


def immutable_keys(config) -> list:
  """Config keys a resumed run must keep: all but RESUMABLE_KEYS.

  And num_rounds where privacy.target_epsilon calibrates the noise for it: a
  longer run is another run, whose first rounds had less noise.
  """
  keys = [k for k in config.keys() if k not in RESUMABLE_KEYS]
  privacy = config.get('privacy')
  if privacy is not None and privacy.get('target_epsilon', 0) > 0:
    keys.append('num_rounds')
  return keys


def warn(message: str) -> None:
  if hosts.is_leader():
    print(f'fedxr-train: warning: {message}', file=sys.stderr)


def say(message: str) -> None:
  """A line on stdout, from the leader process only."""
  if hosts.is_leader():
    print(message)


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


class Runner:
  """The compiled calls of a run: one executable per call length, memory-checked."""

  def __init__(self, exp, per_step: int):
    self.exp, self.config, self.per_step = exp, exp.config, per_step
    self.sharding = (SingleDeviceSharding(jax.devices()[0]) if exp.mesh is None
                     else NamedSharding(exp.mesh, PartitionSpec()))
    # Built where it lives: one program over every process's devices.
    self._init = jax.jit(exp.federation.init, out_shardings=self.sharding)
    self._calls = {}

  def place(self, tree):
    """Every state the same way (committed, replicated): one program, one cache key."""
    return jax.device_put(tree, self.sharding)

  def initial(self):
    """(server, clients, frozen) of round 0."""
    return self.place(self._init(self.exp.world, self.exp.key))

  def restored(self, state, frozen):
    return self.place(state['server']), self.place(state['clients']), frozen

  def _compiled(self, k: int, args):
    if k in self._calls:
      return self._calls[k], None
    t0 = time.perf_counter()
    fed = self.exp.federation
    fn = jax.jit(fed.round if k == 1 else fed.rounds, donate_argnums=(0, 1))
    compiled = fn.lower(*args).compile()
    checks.call_memory(compiled, self.config, self.per_step,
                       chunk_size=self.exp.federation.chunk_size)
    self._calls[k] = compiled
    return compiled, time.perf_counter() - t0

  def call(self, state, first: int, k: int, rows_before):
    """Rounds first+1..first+k: (state, their training rows, last cohort)."""
    plans, graph_stats = zip(*[self.exp.plan(r) for r in range(first, first + k)])
    server, clients, frozen = state
    args = (server, clients, frozen, self.exp.world,
            plans[0] if k == 1 else round_plan.stack(plans),
            guards.make(self.config, rows_before))
    compiled, compile_s = self._compiled(k, args)
    t0 = time.perf_counter()
    server, clients, metrics = compiled(*args)
    metrics = hosts.fetch(metrics)   # the call's one transfer
    seconds = time.perf_counter() - t0
    rows = []
    for i in range(k):
      row = {'round': first + i + 1, **graph_stats[i],
             **{key: float(v if k == 1 else v[i]) for key, v in metrics.items()},
             **self.exp.host_metrics(first + i + 1), 'time/round_s': seconds / k}
      if i == 0 and compile_s is not None:
        row['time/compile_s'] = compile_s
      rows.append(row)
    return (self.place(server), self.place(clients), frozen), rows, plans[-1].cohort


def evaluate_row(evaluator, exp, row, state, cohort, rows_before) -> None:
  """Adds the evaluation of the state after `row`'s round to `row`."""
  t0 = time.perf_counter()
  server, clients, frozen = state
  row.update(evaluator(server, clients, frozen, cohort, history=rows_before))
  row.update(evaluator_lib.forgetting(rows_before, row, 'eval', exp.spec.tasks))
  row['time/eval_s'] = time.perf_counter() - t0


def run(config, workdir: str, progress: bool = True, stop_after: Optional[int] = None) -> list:
  """Trains (or resumes) the federation described by `config` in `workdir`.

  Returns the rows of metrics.jsonl. Everything is a pure function of the
  config, so a resumed run ends exactly where an uninterrupted one does
  (up to the time/* keys). stop_after=K trains only rounds 1..K of the
  configured run (no final evaluation): what `num_rounds=K` would change
  (a noise multiplier calibrated for num_rounds) stays as configured.
  """
  checks.config_sizes(config)
  immutable = immutable_keys(config)
  # The leader reads and writes the workdir's files; the others get its answers.
  if not hosts.leader_value(lambda: workdir_lib.prepare(workdir)):
    rows = hosts.leader_value(
        lambda: workdir_lib.report_finished(config, workdir, immutable))
    if hosts.is_leader():
      report.print_summary(_shown(rows), tuple(config.data.tasks))
    return rows
  exp = experiment_lib.build(config)
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  per_step = startup_checks(exp, hosts.leader_value(
      lambda: checkpoint_lib.step_dirs(ckpt_dir)))
  lock = hosts.leader_only(lambda: checkpoint_lib.lock_workdir(workdir))
  try:
    previous = hosts.leader_value(
        lambda: checkpoint_lib.write_run_config(workdir, config.to_json(), immutable))
    every = max(config.checkpoint_every, (previous or {}).get('checkpoint_every', 1))
    ckpts = checkpoint_lib.Checkpoints(ckpt_dir, config.max_checkpoints)
    try:
      return _train(exp, workdir, ckpts, Runner(exp, per_step), progress, every, stop_after)
    finally:
      ckpts.close()
  finally:
    if lock is not None:
      lock.close()


def startup_checks(exp, saved_rounds) -> int:
  """What the experiment alone refuses, before the workdir changes; bytes per local step."""
  checks.batches(exp)
  checks.state_memory(exp)
  per_step = checks.step_bytes(exp)
  checks.step_buffers(exp, per_step)
  # Every round still to train, before the first compile (semi's D2D coverage).
  checks.layouts(exp, max(saved_rounds, default=0), exp.config.num_rounds)
  return per_step


def _train(exp, workdir: str, ckpts, runner, progress: bool, checkpoint_every: int,
           stop_after: Optional[int] = None) -> list:
  """`checkpoint_every`: the larger of this and the previous invocation's cadence."""
  config = exp.config
  fresh = runner.initial()
  saved = max(ckpts.steps(), default=0)   # damaged or not
  restored = ckpts.restore_newest({'server': fresh[0], 'clients': fresh[1]})
  for note in restored.notes:
    warn(f'{note}; resuming from round {restored.round}')
  start = restored.round
  state = fresh if restored.state is None else runner.restored(restored.state, fresh[2])
  path = os.path.join(workdir, 'metrics.jsonl')
  log = metrics_log.MetricsLog(path, start,
                               contents=hosts.leader_value(lambda: metrics_log.read(path)),
                               write=hosts.is_leader())
  if log.past and log.past[-1] > saved + checkpoint_every:
    # Rows a run writes past its newest checkpoint end at its next one.
    raise checkpoint_lib.CheckpointError(
        f'metrics.jsonl holds rounds up to {log.past[-1]} but the newest checkpoint in '
        f'{ckpts.directory} is round {start}: restore the missing checkpoints, or move '
        f'metrics.jsonl aside to train again from round {start}')
  if log.missing:
    recover(runner, ckpts, log)
  log.commit()
  if start >= config.num_rounds:
    say(f'{workdir}: already trained {start} rounds (num_rounds='
        f'{config.num_rounds}); raise --config.num_rounds to continue.')
  evaluator = evaluator_lib.Evaluator(exp, workdir if hosts.is_leader() else None, start)
  try:
    stop = config.num_rounds if stop_after is None else min(stop_after, config.num_rounds)
    state, last_cohort, calls = _train_rounds(runner, evaluator, ckpts, log, state, start,
                                              progress, stop)
    if stop == config.num_rounds:
      _finish(exp, config, workdir, log, calls, evaluator, state, last_cohort)
  finally:
    evaluator.close()
  return log.rows


def _train_rounds(runner, evaluator, ckpts, log, state, start: int, progress: bool,
                  stop: int):
  """Rounds start+1..stop: rows appended, checkpoints saved, divergence stopped."""
  exp, config = runner.exp, runner.config
  bar = tqdm.tqdm(total=config.num_rounds, initial=start, desc='rounds', unit='round',
                  disable=not (progress and hosts.is_leader()), file=sys.stderr)
  calls, last_cohort = [], None
  for first, k in call_lengths(start, stop, config.rounds_per_call,
                               config.eval_every, config.checkpoint_every):
    state, rows, last_cohort = runner.call(state, first, k, log.rows)
    calls.append((rows[0].get('time/compile_s', 0.0), rows[0]['time/round_s'] * k, k))
    for row in rows:
      if row[guards.DIVERGED]:
        if config.on_divergence == 'stop':
          log.append(row)
          log.sync()
          bar.close()
          raise guards.DivergenceError(guards.stop_message(
              config, row, log.rows, max(ckpts.steps(), default=0), ckpts.directory))
        warn(guards.skip_message(config, row, log.rows))
      if row['round'] % config.eval_every == 0:
        evaluate_row(evaluator, exp, row, state, last_cohort, log.rows)
        bar.set_postfix(loss=f"{row['train/loss']:.3f}",
                        acc=f"{row.get('eval/accuracy') or 0:.3f}")
      evaluator.log_row(log.append(row))
    done = first + k
    if done % config.checkpoint_every == 0 or done == config.num_rounds:
      log.sync()   # rows first: a checkpoint implies its rows are on disk
      ckpts.save(done, {'server': state[0], 'clients': state[1]})
    bar.update(k)
  bar.close()
  return state, last_cohort, calls


def recover(runner, ckpts, log) -> None:
  """Recomputes `log.missing` rows: replays their rounds from the newest state before.

  The run is a pure function of its config, so a replayed round gives the
  row it gave the first time (up to the time/* keys). Replays use the
  current guard settings.
  """
  exp, config = runner.exp, runner.config
  warn(f'metrics.jsonl: the rows of rounds {metrics_log.spans(log.missing)} are damaged or '
       'missing; recomputing them from the checkpoints')
  evaluator = evaluator_lib.Evaluator(exp)   # no workdir: writes no client table
  position, state = None, None
  try:
    while log.missing:
      block = _first_block(log.missing)
      newest = max([s for s in ckpts.steps() if s < block[0]], default=0)
      if position is None or position < newest:
        fresh = runner.initial()
        restored = ckpts.restore_newest({'server': fresh[0], 'clients': fresh[1]},
                                        at_most=block[0] - 1, initial_ok=True)
        for note in restored.notes:
          warn(note)
        position = restored.round
        state = fresh if restored.state is None else runner.restored(restored.state,
                                                                     fresh[2])
      for first, k in call_lengths(position, block[-1], config.rounds_per_call,
                                   config.eval_every, config.checkpoint_every):
        state, rows, cohort = runner.call(state, first, k,
                                          [r for r in log.rows if r['round'] <= first])
        for row in rows:
          if row['round'] not in block:
            continue
          if row[guards.DIVERGED] and config.on_divergence == 'stop':
            raise guards.DivergenceError(
                f"replaying round {row['round']} to recompute its row diverged: it was "
                'skipped when first trained; resume with --config.on_divergence=skip_round')
          if row['round'] % config.eval_every == 0:
            evaluate_row(evaluator, exp, row, state, cohort,
                         [r for r in log.rows if r['round'] < row['round']])
          log.put(row)
      position = block[-1]
  finally:
    evaluator.close()


def _first_block(rounds) -> list:
  """The first run of consecutive rounds of a sorted list."""
  end = 1
  while end < len(rounds) and rounds[end] == rounds[end - 1] + 1:
    end += 1
  return rounds[:end]


def _shown(rows) -> list:
  # A skipped round may log a null loss: the summary and curves show nan.
  return [{**r, 'train/loss': math.nan if r.get('train/loss') is None else r['train/loss']}
          for r in rows]


def _finish(exp, config, workdir, log, calls, evaluator, state, last_cohort):
  """Timing line, the final evaluation (summary.json), summary table, curves."""
  if calls:
    per_round = [s / k for _, s, k in calls]
    say(f'{sum(k for _, _, k in calls)} rounds: compile {sum(c for c, _, _ in calls):.2f} s, '
        f'then median {np.median(per_round):.3f} s/round '
        f'({config.cohort_size} clients x {config.local_steps} local steps)')
  final = final_evaluation(exp, log, evaluator, state, last_cohort)   # every process
  if not hosts.is_leader():
    return
  if final is not None:
    write_summary(workdir, final)
  rows = log.rows + ([final] if final is not None and final['round'] != (
      log.rows[-1]['round'] if log.rows else None) else [])
  report.print_summary(_shown(rows), exp.spec.tasks, exp.spec.num_classes)
  if config.plot and log.rows:
    path = report.plot_curves(_shown(log.rows), exp.spec.tasks,
                              os.path.join(workdir, 'curves.png'))
    print(f'curves: {path}')


def final_evaluation(exp, log, evaluator, state, last_cohort):
  """The last round's metrics with its evaluation (recomputed if off schedule)."""
  if not log.rows:
    return None
  last = dict(log.rows[-1])
  if 'eval/accuracy' not in last:
    cohort = last_cohort if last_cohort is not None else exp.plan(last['round'] - 1)[0].cohort
    evaluate_row(evaluator, exp, last, state, cohort, log.rows[:-1])
  return last


def write_summary(workdir: str, row: dict) -> None:
  path = os.path.join(workdir, SUMMARY_FILE)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(json.loads(metrics_log.encode(row)), f, indent=2, sort_keys=True)
  os.replace(tmp, path)
