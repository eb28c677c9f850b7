"""The one host loop: L >= 1 lanes (runs) of one compiled program.

  run(config, workdir)                         one run (L = 1)
  run_lanes(configs, workdirs, vmap=True)      a sweep's values, a track's seeds

Lanes whose configs differ only in the seed and the data keys of the round
(`compose.experiment.DATA_KEYS`: learning rates, algorithm coefficients)
share one build and one program; with `vmap` (one process, one device,
states that fit) they train at once, the round vmapped over a lane axis
(`training.runner`), else one after another on the same executables. Other
lanes get builds of their own. Each lane keeps everything a run has: its
workdir (config.json, metrics.jsonl, summary.json, checkpoints), its
evaluator and its divergence guard, and resumes, recovers damaged rows and
stops on divergence on its own. A call never crosses an evaluation or a
checkpoint; evaluations follow a fixed schedule (every `eval_every`), so a
resumed run writes the rows an uninterrupted one writes. The last round is
always evaluated into summary.json, printed and plotted.

Per call the host dispatches the compiled call, makes and puts on the
device the next call's plans while the device computes, then fetches the
call's metrics in one transfer. Rows carry 'time/round_s', 'time/compile_s'
(the first row of a call that compiled) and 'time/eval_s': machine-dependent,
so bit-for-bit comparisons leave them out (benchmarks/same_numbers.py).

Fail safely, lose nothing: before anything compiles `training.checks`
refuses what cannot work, in one line; every row carries the round's
divergence flag; metrics.jsonl rows become durable with each checkpoint;
damaged rows are recomputed from the checkpoints; SIGTERM (what batch
schedulers send) ends the call in flight, checkpoints every lane and exits.

Several processes (`core.hosts`) run this same loop on one global mesh;
process 0 alone writes and prints, and what it reads from the workdir is
handed to the others, so every process takes the same branch.
"""
import json
import math
import os
import signal
import sys
import threading
import time
from typing import NamedTuple, Optional, Sequence

import jax
import numpy as np
import tqdm

from fedxr_jax.compose import asynchrony
from fedxr_jax.compose import experiment as experiment_lib
from fedxr_jax.core import hosts
from fedxr_jax.errors import FedXRError
from fedxr_jax.evaluation import evaluator as evaluator_lib
from fedxr_jax.training import checkpoint as checkpoint_lib
from fedxr_jax.training import checks
from fedxr_jax.training import guards
from fedxr_jax.training import metrics_log
from fedxr_jax.training import report as report_lib
from fedxr_jax.training import runner as runner_lib
from fedxr_jax.training import workdir as workdir_lib

# Keys that may change when a run resumes; every other key must match.
RESUMABLE_KEYS = ('num_rounds', 'eval_every', 'checkpoint_every', 'max_checkpoints', 'plot',
                  'rounds_per_call', 'on_divergence', 'divergence_factor',
                  'memory_budget_gb')
SUMMARY_FILE = workdir_lib.SUMMARY_FILE


class Terminated(FedXRError):
  """SIGTERM: every lane checkpointed its last round; the same command resumes."""
  exit_code = 143


class LaneResult(NamedTuple):
  workdir: str
  rows: list                 # its metrics.jsonl rows
  stopped: Optional[str]     # the divergence that stopped it (None: it did not)
  program: int = 0           # lanes of one program share a build and its executables
  vmapped: bool = False      # trained at once with the program's other lanes
  why: str = ''              # why not, where it has other lanes


def immutable_keys(config) -> list:
  """Config keys a resumed run must keep: all but RESUMABLE_KEYS.

  And num_rounds where privacy.target_epsilon calibrates the noise for it, or
  where the client rate's schedule spans it (schedule.rounds 0): a longer run
  is another run, whose first rounds had less noise or a higher rate.
  """
  keys = [k for k in config.keys() if k not in RESUMABLE_KEYS]
  schedule = config.client_optimizer.schedule
  if config.privacy.target_epsilon > 0 or (schedule.kind != 'constant' and not schedule.rounds):
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


# ---------------------------------------------------------------------------
# SIGTERM: finish the call in flight, checkpoint, exit.

_TERM = threading.Event()


class _SigtermCheckpoints:
  """While open (main thread only), SIGTERM asks the loop to checkpoint and stop."""

  def __enter__(self):
    self.previous = None
    if threading.current_thread() is threading.main_thread():
      _TERM.clear()
      self.previous = signal.signal(signal.SIGTERM, lambda signum, frame: _TERM.set())
    return self

  def __exit__(self, *exc):
    if self.previous is not None:
      signal.signal(signal.SIGTERM, self.previous)
    return False


# ---------------------------------------------------------------------------
# One lane's files and bookkeeping.

class Lane:
  """A lane's experiment, workdir, checkpoints, metrics log and evaluator."""

  def __init__(self, exp, workdir: str):
    self.exp, self.config, self.workdir = exp, exp.config, workdir
    self.lock = self.ckpts = self.log = self.evaluator = None
    self.stopped, self.every, self.start, self.restored = None, 1, 0, None

  def open(self):
    """Lock, config.json (a resume must keep the immutable keys), checkpoints."""
    config = self.config
    self.lock = hosts.leader_only(lambda: checkpoint_lib.lock_workdir(self.workdir))
    immutable = immutable_keys(config)
    previous = hosts.leader_value(
        lambda: checkpoint_lib.write_run_config(self.workdir, config.to_json(), immutable))
    self.every = max(config.checkpoint_every, (previous or {}).get('checkpoint_every', 1))
    self.ckpts = checkpoint_lib.Checkpoints(os.path.join(self.workdir, 'checkpoints'),
                                            config.max_checkpoints)

  def restore(self, target):
    """The newest good checkpoint (against `target`, this lane's state shapes)."""
    self.saved = max(self.ckpts.steps(), default=0)   # damaged or not
    self.restored = self.ckpts.restore_newest(target)
    for note in self.restored.notes:
      warn(f'{note}; resuming from round {self.restored.round}')
    self.start = self.restored.round

  def open_log(self):
    path = os.path.join(self.workdir, 'metrics.jsonl')
    self.log = metrics_log.MetricsLog(
        path, self.start, contents=hosts.leader_value(lambda: metrics_log.read(path)),
        write=hosts.is_leader())
    if self.log.past and self.log.past[-1] > self.saved + self.every:
      # Rows a run writes past its newest checkpoint end at its next one.
      raise checkpoint_lib.CheckpointError(
          f'metrics.jsonl holds rounds up to {self.log.past[-1]} but the newest checkpoint in '
          f'{self.ckpts.directory} is round {self.start}: restore the missing checkpoints, or '
          f'move metrics.jsonl aside to train again from round {self.start}')

  def close(self):
    for closing in (self.evaluator, self.ckpts, self.lock):
      if closing is not None:
        closing.close()

  def save(self, done: int, state) -> None:
    """Rows first: a checkpoint implies its rows are on disk."""
    self.log.sync()
    if done not in self.ckpts.steps():
      server, clients, _ = state
      self.ckpts.save(done, {'server': server, 'clients': clients})


# ---------------------------------------------------------------------------
# Entry points.

def run(config, workdir: str, progress: bool = True, stop_after: Optional[int] = None,
        transfer_guard: str = 'allow') -> list:
  """Trains (or resumes) the federation of `config` in `workdir`; its metrics.jsonl rows.

  Everything is a pure function of the config, so a resumed run ends exactly
  where an uninterrupted one does (up to the time/* keys). stop_after=K
  trains only rounds 1..K of the configured run (no final evaluation): what
  `num_rounds=K` would change (a noise multiplier calibrated for
  num_rounds) stays as configured. A divergence raises `DivergenceError`.
  transfer_guard: JAX's guard on implicit host <-> device transfers while
  training ('disallow': the loop's transfers are all explicit; tested).
  """
  result, = run_lanes([config], [workdir], progress=progress, stop_after=stop_after,
                      report=True, transfer_guard=transfer_guard)
  if result.stopped is not None:
    raise guards.DivergenceError(result.stopped)
  return result.rows


def run_lanes(configs: Sequence, workdirs: Sequence[str], *, progress: bool = False,
              stop_after: Optional[int] = None, vmap: bool = True,
              report: bool = False, transfer_guard: str = 'allow') -> list:
  """Trains every lane (config, workdir); [LaneResult] in the given order.

  vmap: lanes of one program train at once where they can (one process, one
  device, their stacked states fit); False: one after another.
  report: print each lane's summary table and timing (a single run does).
  """
  results = [None] * len(configs)
  todo = []
  for i, (config, workdir) in enumerate(zip(configs, workdirs)):
    checks.config_sizes(config)
    # The leader reads and writes the workdir's files; the others get its answers.
    if hosts.leader_value(lambda w=workdir: workdir_lib.prepare(w)):
      todo.append(i)
      continue
    rows = hosts.leader_value(lambda c=config, w=workdir: workdir_lib.report_finished(
        c, w, immutable_keys(c)))
    if report and hosts.is_leader():
      report_lib.print_summary(_shown(rows), tuple(config.data.tasks))
    results[i] = LaneResult(workdir, rows, None)
  with _SigtermCheckpoints():
    for program, group in enumerate(_programs([configs[i] for i in todo])):
      exps = [exp for _, exp in group]
      indices = [todo[j] for j, _ in group]
      dirs = [workdirs[i] for i in indices]
      with jax.transfer_guard(transfer_guard):
        trained = _train_program(exps, dirs, progress, stop_after, vmap, report)
      for i, result in zip(indices, trained):
        results[i] = result._replace(program=program)
  return results


def _programs(configs) -> list:
  """[[(index, experiment)]]: lanes grouped by the program they compile (order kept).

  Lanes with one `program_key` share a build (`compose.experiment.for_lane`);
  one whose seed changes what compiles gets a build of its own.
  """
  by_key, order = {}, []
  for j, config in enumerate(configs):
    key = experiment_lib.program_key(config)
    for group in by_key.get(key, []):
      exp = experiment_lib.for_lane(group[0][1], config)
      if exp is not None:
        group.append((j, exp))
        break
    else:
      group = [(j, experiment_lib.build(config))]
      by_key.setdefault(key, []).append(group)
      order.append(group)
  return order


def _train_program(exps, workdirs, progress, stop_after, vmap, verbose) -> list:
  """The lanes of one program: vmapped together where they can, else one by one."""
  lanes = [Lane(exp, w) for exp, w in zip(exps, workdirs)]
  per_step = checks.step_bytes(exps[0])
  try:
    _startup_checks(lanes, per_step)   # before a lane's workdir changes
    for lane in lanes:
      lane.open()
    target = jax.eval_shape(exps[0].federation.init, exps[0].world, exps[0].key)
    for lane in lanes:
      lane.restore({'server': target[0], 'clients': target[1]})
    why = _why_not_vmapped(lanes, vmap, target, per_step)
    if why is not None and len(lanes) > 1 and vmap:
      warn(f'the {len(lanes)} lanes run one after another: {why}')
    calls = {}   # one executable per call length, shared by lanes run one by one
    groups = ([[lane] for lane in lanes] if why is not None else
              [[lane for lane in lanes if lane.start == s]
               for s in sorted({lane.start for lane in lanes})])
    for group in groups:
      runner = runner_lib.Runner([lane.exp for lane in group], per_step,
                                 calls=calls if len(group) == 1 else None,
                                 program=lanes[0].config)
      _train(group, runner, progress, stop_after, verbose)
    return [LaneResult(lane.workdir, lane.log.rows, lane.stopped, vmapped=why is None,
                       why=why or '') for lane in lanes]
  finally:
    for lane in lanes:
      lane.close()


def _why_not_vmapped(lanes, vmap: bool, target, per_step: int) -> Optional[str]:
  """None when the lanes can train at once; else why they run one after another."""
  if len(lanes) == 1:
    return 'one lane'
  if not vmap:
    return 'vmap off'
  mesh = lanes[0].exp.mesh
  if mesh is not None or hosts.process_count() > 1:
    return (f'not supported yet: vmapped lanes on a client mesh of '
            f'{mesh.size if mesh is not None else jax.device_count()} devices')
  need = len(lanes) * trees_bytes(target)
  limit, name = checks.limit(lanes[0].config)
  if limit is not None and need > limit:
    return f'{len(lanes)} stacked run states need {checks.gb(need)} but {name} is {checks.gb(limit)}'
  return None


def trees_bytes(tree) -> int:
  return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def _startup_checks(lanes, per_step: int) -> None:
  """What the experiments alone refuse, before anything compiles (each seed once)."""
  seen = set()
  for lane in lanes:
    exp = lane.exp
    if exp.config.seed in seen:
      continue
    seen.add(exp.config.seed)
    checks.batches(exp)
    checks.state_memory(exp)
    checks.step_buffers(exp, per_step)
    # Every round still to train, before the first compile (semi's D2D coverage).
    saved = hosts.leader_value(lambda: checkpoint_lib.step_dirs(
        os.path.join(lane.workdir, 'checkpoints')))
    checks.layouts(exp, max(saved, default=0), exp.config.num_rounds)


# ---------------------------------------------------------------------------
# Training a group of lanes that start at the same round.

class Progress:
  """The progress bar, with the phase that keeps it still (compiling) named."""

  def __init__(self, total: int, initial: int, lanes: int, enabled: bool):
    self.desc = 'rounds' if lanes == 1 else f'rounds ({lanes} lanes)'
    self.bar = tqdm.tqdm(total=total, initial=initial, unit='round', file=sys.stderr,
                         desc=self.desc, disable=not (enabled and hosts.is_leader()))

  def phase(self, what: Optional[str]) -> None:
    self.bar.set_description_str(what or self.desc)
    self.bar.refresh()

  def close(self):
    self.bar.close()


def _train(lanes, runner, progress: bool, stop_after: Optional[int], verbose: bool) -> None:
  config = lanes[0].config
  fresh = runner.initial()
  if lanes[0].start:
    state = runner.restored([lane.restored.state for lane in lanes], fresh[2])
  else:
    state = fresh
  for lane in lanes:
    lane.open_log()
  if any(lane.log.missing for lane in lanes):
    recover(lanes, runner)
  for i, lane in enumerate(lanes):
    lane.log.commit()
    if lane.start >= lane.config.num_rounds:
      say(f'{lane.workdir}: already trained {lane.start} rounds (num_rounds='
          f'{lane.config.num_rounds}); raise --config.num_rounds to continue.')
    lane.evaluator = evaluator_lib.Evaluator(
        lane.exp, lane.workdir if hosts.is_leader() else None, lane.start,
        evaluate=runner.evaluate)
  stop = config.num_rounds if stop_after is None else min(stop_after, config.num_rounds)
  state, calls, cohorts = _train_rounds(lanes, runner, state, progress, stop)
  if stop == config.num_rounds:
    for i, lane in enumerate(lanes):
      if lane.stopped is None:
        _finish(lane, runner.lane(state, i), cohorts[i] if cohorts else None, calls, verbose)


def _train_rounds(lanes, runner, state, progress: bool, stop: int):
  """Rounds start+1..stop of every lane: rows, evaluations, checkpoints, divergence."""
  config, start = lanes[0].config, lanes[0].start
  bar = Progress(config.num_rounds, start, len(lanes), progress)
  schedule = list(call_lengths(start, stop, config.rounds_per_call, config.eval_every,
                               config.checkpoint_every))
  calls, cohorts = [], None
  prepared = runner.prepare(*schedule[0]) if schedule else None
  try:
    for n, (first, k) in enumerate(schedule):
      guard = runner.guard([lane.log.rows for lane in lanes])
      if not runner.is_compiled(k):
        bar.phase(f'compiling the round ({k} per call)')
      t0 = time.perf_counter()
      state, metrics, compile_s = runner.call(state, prepared, guard)
      bar.phase(None)
      # The next call's plans while the device computes this one.
      following = runner.prepare(*schedule[n + 1]) if n + 1 < len(schedule) else None
      metrics = runner_lib.fetch(metrics)   # the call's one transfer
      seconds = time.perf_counter() - t0 - (compile_s or 0.0)
      calls.append((compile_s or 0.0, seconds, k))
      cohorts = prepared.cohorts
      for i, (lane, rows) in enumerate(zip(lanes, runner.rows(metrics, prepared, seconds,
                                                              compile_s))):
        if lane.stopped is None:
          _take(lane, rows, lambda i=i: runner.lane(state, i), cohorts[i], bar)
      done = first + k
      for i, lane in enumerate(lanes):
        if lane.stopped is None and (done % config.checkpoint_every == 0
                                     or done == config.num_rounds or _TERM.is_set()):
          lane.save(done, runner.lane(state, i))
      bar.bar.update(k)
      if _TERM.is_set():
        raise Terminated(f'terminated (SIGTERM) after round {done}: every lane saved its '
                         f'checkpoint; run the same command to resume from round {done}')
      if all(lane.stopped is not None for lane in lanes):
        break
      prepared = following
  finally:
    bar.close()
  return state, calls, cohorts


def _take(lane, rows, lane_state, cohort, bar) -> None:
  """A lane's rows of a call: divergence, evaluation on schedule, the log."""
  config = lane.config
  for row in rows:
    asynchrony.add_virtual_time(row, lane.log.rows)   # the cost model's clock
    if row[guards.DIVERGED]:
      if config.on_divergence == 'stop':
        lane.log.append(row)
        lane.log.sync()
        lane.stopped = guards.stop_message(config, row, lane.log.rows,
                                           max(lane.ckpts.steps(), default=0),
                                           lane.ckpts.directory)
        return
      warn(guards.skip_message(config, row, lane.log.rows))
    if row['round'] % config.eval_every == 0:
      if not lane.evaluator.compiled:
        bar.phase('compiling the evaluation')
      evaluate_row(lane.evaluator, lane.exp, row, lane_state(), cohort, lane.log.rows)
      bar.phase(None)
      bar.bar.set_postfix(loss=f"{row['train/loss']:.3f}",
                          acc=f"{row.get('eval/accuracy') or 0:.3f}")
    lane.evaluator.log_row(lane.log.append(row))


def evaluate_row(evaluator, exp, row, state, cohort, rows_before) -> None:
  """Adds the evaluation of the state after `row`'s round to `row`."""
  t0 = time.perf_counter()
  server, clients, frozen = state
  row.update(evaluator(server, clients, frozen, cohort, history=rows_before))
  row.update(evaluator_lib.forgetting(rows_before, row, 'eval', exp.spec.tasks))
  row['time/eval_s'] = time.perf_counter() - t0


# ---------------------------------------------------------------------------
# Damaged or missing rows: replayed from the checkpoints.

def recover(lanes, runner) -> None:
  """Recomputes the lanes' missing rows by replaying their rounds from the
  newest checkpoint before (every lane of the group together: the same
  program gives the same bits). Replays use the current guard settings.
  """
  for lane in lanes:
    if lane.log.missing:
      warn(f'{lane.workdir}/metrics.jsonl: the rows of rounds '
           f'{metrics_log.spans(lane.log.missing)} are damaged or missing; recomputing them '
           'from the checkpoints')
  evaluators = [evaluator_lib.Evaluator(lane.exp, evaluate=runner.evaluate) for lane in lanes]
  config, position, state = lanes[0].config, None, None
  try:
    while any(lane.log.missing for lane in lanes):
      block = _first_block(sorted(set().union(*[lane.log.missing for lane in lanes])))
      newest = [max([s for s in lane.ckpts.steps() if s < block[0]], default=0)
                for lane in lanes]
      if position is None or position < min(newest):
        state, position = _restored_at(lanes, runner, block[0] - 1)
      for first, k in call_lengths(position, block[-1], config.rounds_per_call,
                                   config.eval_every, config.checkpoint_every):
        prepared = runner.prepare(first, k)
        guard = runner.guard([[r for r in lane.log.rows if r['round'] <= first]
                              for lane in lanes])
        state, metrics, compile_s = runner.call(state, prepared, guard)
        lane_rows = runner.rows(runner_lib.fetch(metrics), prepared, 0.0, compile_s)
        for i, (lane, rows) in enumerate(zip(lanes, lane_rows)):
          for row in rows:
            if row['round'] not in lane.log.missing:
              continue
            asynchrony.add_virtual_time(row, lane.log.rows)
            if row[guards.DIVERGED] and lane.config.on_divergence == 'stop':
              raise guards.DivergenceError(
                  f"replaying round {row['round']} to recompute its row diverged: it was "
                  'skipped when first trained; resume with --config.on_divergence=skip_round')
            if row['round'] % config.eval_every == 0:
              evaluate_row(evaluators[i], lane.exp, row, runner.lane(state, i),
                           prepared.cohorts[i],
                           [r for r in lane.log.rows if r['round'] < row['round']])
            lane.log.put(row)
      position = block[-1]
  finally:
    for evaluator in evaluators:
      evaluator.close()


def _restored_at(lanes, runner, at_most: int):
  """(state, round): every lane at its newest good checkpoint <= at_most, one round."""
  fresh = runner.initial()
  states, rounds = [], set()
  for i, lane in enumerate(lanes):
    server, clients, _ = runner.lane(fresh, i)
    restored = lane.ckpts.restore_newest({'server': server, 'clients': clients},
                                         at_most=at_most, initial_ok=True)
    for note in restored.notes:
      warn(note)
    states.append(restored.state)
    rounds.add(restored.round)
  if len(rounds) > 1:
    raise checkpoint_lib.CheckpointError(
        f'the lanes of this group kept checkpoints of different rounds {sorted(rounds)} before '
        f'round {at_most + 1}: restore them, or move the damaged lanes aside to train again')
  round_ = rounds.pop()
  if round_ == 0:
    return fresh, 0
  return runner.restored(states, fresh[2]), round_


def _first_block(rounds) -> list:
  """The first run of consecutive rounds of a sorted list."""
  end = 1
  while end < len(rounds) and rounds[end] == rounds[end - 1] + 1:
    end += 1
  return rounds[:end]


# ---------------------------------------------------------------------------
# The end of a lane: final evaluation, summary.json, table, curves.

def _shown(rows) -> list:
  # A skipped round may log a null loss: the summary and curves show nan.
  return [{**r, 'train/loss': math.nan if r.get('train/loss') is None else r['train/loss']}
          for r in rows]


def _finish(lane, state, last_cohort, calls, verbose: bool) -> None:
  """Timing line, the final evaluation (summary.json), summary table, curves."""
  exp, config, log = lane.exp, lane.config, lane.log
  if calls and verbose:
    per_round = [s / k for _, s, k in calls]
    say(f'{sum(k for _, _, k in calls)} rounds: compile {sum(c for c, _, _ in calls):.2f} s, '
        f'then median {np.median(per_round):.3f} s/round '
        f'({config.cohort_size} clients x {config.local_steps} local steps)')
  final = final_evaluation(lane, state, last_cohort)   # every process
  if not hosts.is_leader() or final is None:
    return
  write_summary(lane.workdir, final)
  # The final round is always shown evaluated; metrics.jsonl keeps the fixed schedule.
  shown = _shown([r for r in log.rows if r['round'] != final['round']] + [final])
  if verbose:
    report_lib.print_summary(shown, exp.spec.tasks, exp.spec.num_classes)
  if config.plot:
    path = report_lib.plot_curves(shown, exp.spec.tasks,
                                  os.path.join(lane.workdir, 'curves.png'))
    if verbose:
      print(f'curves: {path}')


def final_evaluation(lane, state, last_cohort):
  """The last round's metrics with its evaluation (recomputed if off schedule)."""
  log, exp = lane.log, lane.exp
  if not log.rows:
    return None
  last = dict(log.rows[-1])
  if 'eval/accuracy' not in last:
    cohort = last_cohort if last_cohort is not None else exp.plan(last['round'] - 1)[0].cohort
    evaluate_row(lane.evaluator, exp, last, state, cohort, log.rows[:-1])
  return last


def write_summary(workdir: str, row: dict) -> None:
  path = os.path.join(workdir, SUMMARY_FILE)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(json.loads(metrics_log.encode(row)), f, indent=2, sort_keys=True)
  os.replace(tmp, path)
