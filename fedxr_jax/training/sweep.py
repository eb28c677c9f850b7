"""Sweeps: one federation, a grid of hyperparameter values and seeds, compiled once.

  fedxr-sweep --config=fedxr_jax/configs/test.py --workdir=runs/sweep \
      --sweep=client_optimizer.learning_rate=0.01,0.03,0.1 --seeds=0,1

A sweep is the product of its `--sweep` keys' values and its seeds; each
point (a lane) writes a fedxr-train workdir of its own, WORKDIR/<lane>
(config.json, metrics.jsonl, summary.json, checkpoints), and the sweep
writes WORKDIR/sweep.json: every lane's final metrics and their mean over
seeds per value.

Keys in `DATA_KEYS` are data of the compiled round: they change only the
initial state (the client optimizer's hyperparameters in
`server.hyperparams`, the server optimizer's learning rate in its optax
state, an algorithm's coefficient in its server state), so the federation
is built once per seed and every value runs the same executable:
  sequential  the lanes one after another through the training loop
              (`training.loop`), sharing its compiled calls;
  vmapped     every lane at once: the round vmapped over a stacked lane
              axis of states, one compiled program for the whole grid
              (default when its memory fits; `vmap=True` insists).
Any other key changes what is compiled (shapes, structure): each value is
then built and compiled on its own, as fedxr-train would (`vmap` refuses).

Seeds: the seed sets the world (the data), the cohorts, the round's PRNG
key (`RoundSetup.seed_key`) and anything the build draws from it (the
malicious set, D2D graphs, the evaluation panel). A vmapped seed axis
makes the key, the world and the plans per-lane data; that is exact only
where the round compiled for each seed is the same program up to its key,
which the sweep checks by comparing the lowered rounds. Where it is not,
seeds run one after another and only the values of each seed are vmapped.

The preset of `algorithm.name` (fedadam, ...) is expanded before the sweep
sets its values, so `--sweep=server_optimizer.learning_rate=1.0,0.1` beside
fedadam means 1.0 and 0.1.
"""
import copy
import difflib
import itertools
import json
import math
import os
import time
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.core import local as local_lib
from fedxr_jax.core import round as round_lib
from fedxr_jax.core import round_plan
from fedxr_jax.core import trees
from fedxr_jax.errors import CheckpointError
from fedxr_jax.errors import ConfigError
from fedxr_jax.training import checkpoint as checkpoint_lib
from fedxr_jax.training import checks
from fedxr_jax.evaluation import evaluator
from fedxr_jax.compose import experiment as experiment_lib
from fedxr_jax.training import guards
from fedxr_jax.training import loop
from fedxr_jax.training import metrics_log
from fedxr_jax.compose import optimizers
from fedxr_jax.training import workdir as workdir_lib

SUMMARY_FILE = 'sweep.json'
FINAL_KEYS = ('train/loss', 'eval/accuracy')
MODES = ('sequential', 'vmapped', 'rebuilt')

# Config keys that are data of the compiled round, and where each lives.
DATA_KEYS = {
    'client_optimizer.learning_rate': "server.hyperparams['client_optimizer']",
    'server_optimizer.learning_rate': 'server.opt_state.hyperparams (optax.inject_hyperparams)',
    'algorithm.fedprox.mu': "server.algorithm['mu']",
    'algorithm.ditto.lam': "server.algorithm['lam']",
    'algorithm.ewc.lam': "server.algorithm['lam']",
}


class Spec(NamedTuple):
  """One --sweep flag: a config key and its values (typed as the config's)."""
  key: str
  values: tuple


class Lane(NamedTuple):
  """One point of the grid: its overrides, seed, config and workdir name."""
  name: str
  overrides: tuple   # ((key, value), ...)
  seed: int
  config: object


# ---------------------------------------------------------------------------
# Specs and lanes.

def _lookup(config, key: str):
  """The config's value of a dotted key; ConfigError (with a hint) if there is none."""
  block = config
  parts = key.split('.')
  for i, part in enumerate(parts):
    if not hasattr(block, 'keys') or part not in block:
      known = list(block.keys()) if hasattr(block, 'keys') else []
      close = difflib.get_close_matches(part, known, n=1)
      where = '.'.join(parts[:i]) or 'the config'
      hint = f" (did you mean {'.'.join(parts[:i] + close[:1])!r}?)" if close else ''
      raise ConfigError(f'--sweep: {key!r} is not a config key: {where} has no {part!r}'
                        f'{hint}')
    block = block[part]
  return block


def _typed(key: str, text: str, current):
  """`text` as the type of the config's current value."""
  text = text.strip()
  try:
    if isinstance(current, bool):
      if text.lower() not in ('true', 'false', '1', '0'):
        raise ValueError
      return text.lower() in ('true', '1')
    if isinstance(current, int):
      return int(text)
    if isinstance(current, float):
      value = float(text)
      if not math.isfinite(value):
        raise ValueError
      return value
    if isinstance(current, str):
      return text
  except ValueError:
    raise ConfigError(f'--sweep={key}: {text!r} is not a {type(current).__name__} '
                      f'(as {key}={current!r})') from None
  raise ConfigError(f'--sweep={key}: only scalar keys can be swept, it is a '
                    f'{type(current).__name__}')


def parse_spec(text: str, config) -> Spec:
  """'KEY=V1,V2,...' -> Spec; one ConfigError line for anything malformed."""
  key, sep, values = text.partition('=')
  key = key.strip()
  if not sep or not key:
    raise ConfigError(f'--sweep={text!r}: write KEY=V1,V2,... '
                      '(e.g. client_optimizer.learning_rate=0.01,0.1)')
  if key == 'seed':
    raise ConfigError('--sweep=seed: give seeds with --seeds=0,1,2')
  items = [v for v in values.split(',') if v.strip()]
  if not items:
    raise ConfigError(f'--sweep={key}: the value list is empty (write {key}=V1,V2,...)')
  current = _lookup(config, key)
  typed = tuple(_typed(key, v, current) for v in items)
  if len(set(typed)) != len(typed):
    raise ConfigError(f'--sweep={key}: a value is repeated in {list(typed)}')
  return Spec(key, typed)


def parse_seeds(text: str) -> tuple:
  """'0,1,2' -> (0, 1, 2)."""
  items = [v.strip() for v in text.split(',') if v.strip()]
  if not items:
    raise ConfigError('--seeds: the list is empty (write --seeds=0,1,2)')
  try:
    seeds = tuple(int(v) for v in items)
  except ValueError:
    raise ConfigError(f'--seeds={text!r}: seeds are integers') from None
  if len(set(seeds)) != len(seeds):
    raise ConfigError(f'--seeds: a seed is repeated in {list(seeds)}')
  return seeds


def not_data(key: str, config) -> Optional[str]:
  """Why `key` is compiled into this config's round (None: it is data)."""
  if key not in DATA_KEYS:
    return (f'{key} is compiled into the round (it sets shapes or structure); only '
            f'{sorted(DATA_KEYS)} are data')
  if key == 'client_optimizer.learning_rate' and config.algorithm.name == 'scaffold':
    return ('SCAFFOLD compiles the client learning rate into its control-variate step '
            '(algorithms/scaffold.py)')
  return None


def _check_effect(key: str, config) -> None:
  """A key that cannot change this config's run is a mistake, not a sweep."""
  parts = key.split('.')
  if parts[0] == 'algorithm' and len(parts) > 2 and parts[1] != config.algorithm.name:
    raise ConfigError(f'--sweep={key} has no effect: algorithm.name={config.algorithm.name}')


def lane_name(overrides, seed: int) -> str:
  """A lane's name, and its workdir's under the sweep's: `lr=0.1_seed=0`."""
  parts = [f'{k}={v}' for k, v in overrides] + [f'seed={seed}']
  return '_'.join(parts).replace(os.sep, '-')


def make_lanes(config, specs: Sequence[Spec], seeds: Optional[Sequence[int]] = None) -> list:
  """The grid's lanes (values x seeds, seeds innermost), configs preset-expanded."""
  config, _ = experiment_lib.expand_preset(config)
  keys = [s.key for s in specs]
  if len(set(keys)) != len(keys):
    raise ConfigError(f'--sweep: a key is given twice in {keys}')
  for key in keys:
    _check_effect(key, config)
  seeds = tuple(seeds) if seeds else (int(config.seed),)
  lanes = []
  for values in itertools.product(*[s.values for s in specs]):
    for seed in seeds:
      lane_config = copy.deepcopy(config)
      overrides = tuple(zip(keys, values))
      for key, value in overrides + (('seed', seed),):
        *parents, leaf = key.split('.')
        block = lane_config
        for p in parents:
          block = block[p]
        block[leaf] = value
      lanes.append(Lane(lane_name(overrides, seed), overrides, seed, lane_config))
  return lanes


def check_lanes(lanes) -> None:
  """Each lane's config as fedxr-train would check it (one ConfigError line)."""
  for lane in lanes:
    try:
      experiment_lib.validate(lane.config)
      checks.config_sizes(lane.config)
      guards.validate(lane.config)
      for name in ('client_optimizer', 'server_optimizer'):
        optimizers.make(lane.config[name], name)
    except ConfigError as e:
      raise ConfigError(f'sweep lane {lane.name}: {e}') from None


# ---------------------------------------------------------------------------
# Lanes on one build: their initial states.

def lane_server(exp, lane_config, server, keys):
  """The round-0 server state of a lane: its values of the swept data keys.

  Each piece is what the lane's own build would initialize (the same
  factories on its config), so a lane starts where its separate run does.
  """
  changes = {}
  if 'client_optimizer.learning_rate' in keys:
    changes['hyperparams'] = {**server.hyperparams, 'client_optimizer': local_lib.hyperparams_of(
        optimizers.make(lane_config.client_optimizer, 'client_optimizer'))}
  if 'server_optimizer.learning_rate' in keys:
    changes['opt_state'] = optimizers.make(lane_config.server_optimizer,
                                           'server_optimizer').init(server.shared)
  if any(k.startswith('algorithm.') for k in keys):
    plan = experiment_lib.present_plan(experiment_lib.make_plan(lane_config), exp.problem)
    facts = experiment_lib.run_facts(lane_config, plan, exp.spec.tasks)
    algorithm = experiment_lib.make_algorithm(lane_config, exp.federation.topology.kind, facts)
    changes['algorithm'] = algorithm.init_server_state(server.shared)
  return server.replace(**changes)


def _check_server_effect(exp, keys) -> None:
  if 'server_optimizer.learning_rate' in keys and not exp.federation.topology.uses_server_optimizer:
    raise ConfigError('--sweep=server_optimizer.learning_rate has no effect: topology.kind='
                      f'{exp.federation.topology.kind} has no server optimizer')


class LaneRunner(loop.Runner):
  """The loop's runner for one lane: the sweep's compiled calls, the lane's state."""

  def __init__(self, exp, per_step: int, shared: 'loop.Runner', keys):
    super().__init__(exp, per_step)
    self._init, self._calls = shared._init, shared._calls   # one executable per length
    self.keys = keys

  def initial(self):
    server, clients, frozen = super().initial()
    return self.place(lane_server(self.exp, self.config, server, self.keys)), clients, frozen


# ---------------------------------------------------------------------------
# Compile counting: XLA compiles of this process by function name, less
# the persistent compilation cache's hits.

COMPILES = {}     # fun_name -> compile requests
CACHE_HITS = [0]
_LISTENING = [False]
ROUND_FUNCTIONS = ('round_step', 'rounds', 'vmapped_round_step', 'vmapped_rounds')


def listen() -> None:
  """Starts counting (idempotent)."""
  if _LISTENING[0]:
    return

  def on_duration(event, duration, **kwargs):
    del duration
    if event == '/jax/core/compile/backend_compile_duration':
      name = str(kwargs.get('fun_name', '?'))
      name = name[4:-1] if name.startswith('jit(') and name.endswith(')') else name
      COMPILES[name] = COMPILES.get(name, 0) + 1

  def on_event(event, **kwargs):
    del kwargs
    if event == '/jax/compilation_cache/cache_hits':
      CACHE_HITS[0] += 1

  jax.monitoring.register_event_duration_secs_listener(on_duration)
  jax.monitoring.register_event_listener(on_event)
  _LISTENING[0] = True


def compile_counts() -> dict:
  """{'xla': compiles (cache hits excluded), 'round': of the round, 'cache_hits': ...}."""
  total = sum(COMPILES.values())
  return {'xla': total - CACHE_HITS[0], 'cache_hits': CACHE_HITS[0],
          'round_requests': sum(COMPILES.get(n, 0) for n in ROUND_FUNCTIONS)}


# ---------------------------------------------------------------------------
# One lane's workdir, as loop.run prepares it.

def _open_lane(config, workdir: str, fresh_only: bool):
  """(lock, Checkpoints, previous run config) of a lane's writable workdir."""
  if not workdir_lib.prepare(workdir):
    raise CheckpointError(f'{workdir} is not writable')
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  if fresh_only and (checkpoint_lib.step_dirs(ckpt_dir) or
                     os.path.exists(os.path.join(workdir, 'metrics.jsonl'))):
    raise CheckpointError(f'{workdir} already holds a run; a vmapped sweep starts every '
                          'lane at round 0: rerun with --novmap to resume each lane, or '
                          'give a new --workdir')
  lock = checkpoint_lib.lock_workdir(workdir)
  try:
    previous = checkpoint_lib.write_run_config(workdir, config.to_json(),
                                               loop.immutable_keys(config))
    ckpts = checkpoint_lib.Checkpoints(ckpt_dir, config.max_checkpoints)
  except BaseException:
    lock.close()
    raise
  return lock, ckpts, previous


def run_lane(exp, runner, workdir: str, progress: bool) -> list:
  """loop.run for a prebuilt experiment and runner (resumes like it): the lane's rows."""
  config = exp.config
  lock, ckpts, previous = _open_lane(config, workdir, False)
  try:
    loop.startup_checks(exp, checkpoint_lib.step_dirs(ckpts.directory))
    every = max(config.checkpoint_every, (previous or {}).get('checkpoint_every', 1))
    return loop._train(exp, workdir, ckpts, runner, progress, every)  # pylint: disable=protected-access
  finally:
    ckpts.close()
    lock.close()


# ---------------------------------------------------------------------------
# Vmapped lanes: one compiled program for a group of lanes.

def _stack(items):
  return jax.tree.map(lambda *xs: jnp.stack(xs), *items)


def _lane_fn(setup, k: int, keyed: bool):
  """(key_data, server, clients, frozen, source, plan, guard) -> one lane's call."""
  step = round_lib.round_step if k == 1 else round_lib.rounds

  def fn(key_data, server, clients, frozen, source, plan, guard):
    s = setup._replace(seed_key=jax.random.wrap_key_data(key_data)) if keyed else setup
    return step(s, server, clients, frozen, source, plan, guard)

  fn.__name__ = f'vmapped_{step.__name__}'   # what compile logs and counts see
  return fn


def seeds_share_program(exps: dict) -> Optional[str]:
  """None if every seed's round is one program up to its key and data; else why not."""
  texts = {}
  for seed, exp in exps.items():
    server, clients, frozen = jax.eval_shape(exp.federation.init, exp.world)
    plan, _ = exp.plan(0)
    key = jax.random.key_data(jax.random.key(seed))
    fn = _lane_fn(exp.federation.setup, 1, True)
    try:
      texts[seed] = jax.jit(fn).lower(key, server, clients, frozen, exp.world, plan,
                                      guards.make(exp.config, [])).as_text()
    except (TypeError, ValueError) as e:
      return f'seed {seed} does not lower with its key as data ({e})'
  first = next(iter(texts))
  for seed, text in texts.items():
    if text != texts[first]:
      return (f'seed {seed} compiles a different round than seed {first} beyond its key and '
              'data (the seed enters the build: a malicious set, a D2D graph, ...)')
  return None


class VmappedGroup:
  """Lanes trained together: states stacked [L, ...], one executable per call length."""

  def __init__(self, lanes, exps: dict, keys, per_step: int, stop: Optional[int] = None):
    self.lanes, self.keys, self.per_step = lanes, keys, per_step
    self.stop = lanes[0].config.num_rounds if stop is None else stop
    self.config = lanes[0].config
    self.exps = {lane.name: exps[lane.seed]._replace(config=lane.config) for lane in lanes}
    self.keyed = len({lane.seed for lane in lanes}) > 1
    self.base = exps[lanes[0].seed]
    self.calls, self.compile_s = {}, {}
    self.state = None

  def schedule(self):
    c = self.config
    return list(loop.call_lengths(0, self.stop, c.rounds_per_call, c.eval_every,
                                  c.checkpoint_every))

  def prepare(self) -> None:
    """Initial states, and every call length compiled and memory-checked (nothing written)."""
    self.state = self.initial()
    key_data = self.key_data()
    for first, k in self.schedule():
      if k in self.calls:
        continue
      plan, _, _ = self.plans(first, k)
      guard = _stack([guards.make(lane.config, []) for lane in self.lanes])
      t0 = time.perf_counter()
      ax = 0 if self.keyed else None
      fn = jax.vmap(_lane_fn(self.base.federation.setup, k, self.keyed),
                    in_axes=(ax, 0, 0, ax, ax, ax, 0))
      server, clients, frozen, source = self.state
      compiled = jax.jit(fn, donate_argnums=(1, 2)).lower(
          key_data, server, clients, frozen, source, plan, guard).compile()
      checks.call_memory(compiled, self.config, self.per_step * len(self.lanes),
                         chunk_size=self.base.federation.chunk_size)
      self.calls[k], self.compile_s[k] = compiled, time.perf_counter() - t0

  def initial(self):
    """Stacked (server, clients), frozen and source ([L, ...] where seeds vary)."""
    inits = {}
    servers, clients, frozens = [], [], []
    for lane in self.lanes:
      exp = self.exps[lane.name]
      if lane.seed not in inits:
        inits[lane.seed] = jax.jit(exp.federation.init)(exp.world)
      server, client, frozen = inits[lane.seed]
      servers.append(lane_server(exp, lane.config, server, self.keys))
      clients.append(client)
      frozens.append(frozen)
    if self.keyed:
      frozen = _stack(frozens)
      source = _stack([self.exps[lane.name].world for lane in self.lanes])
    else:
      frozen, source = frozens[0], self.base.world
    return _stack(servers), _stack(clients), frozen, source

  def key_data(self):
    if not self.keyed:
      return None
    return jnp.stack([jax.random.key_data(jax.random.key(lane.seed)) for lane in self.lanes])

  def plans(self, first: int, k: int):
    """(plan argument of a call, {lane: [graph stats]}, {lane: last cohort})."""
    per_seed = {}
    for lane in self.lanes:
      if lane.seed not in per_seed:
        exp = self.exps[lane.name]
        plans, stats = zip(*[exp.plan(r) for r in range(first, first + k)])
        per_seed[lane.seed] = (plans[0] if k == 1 else round_plan.stack(plans), stats,
                               plans[-1].cohort)
    stats = {lane.name: per_seed[lane.seed][1] for lane in self.lanes}
    cohorts = {lane.name: per_seed[lane.seed][2] for lane in self.lanes}
    if self.keyed:
      arg = jax.tree.map(lambda *xs: np.stack(xs),
                         *[per_seed[lane.seed][0] for lane in self.lanes])
    else:
      arg = per_seed[self.lanes[0].seed][0]
    return arg, stats, cohorts


def _lane_state(tree, i: int):
  return jax.tree.map(lambda x: x[i], tree)


def state_fits(exps: dict, lanes) -> Optional[str]:
  """None if L stacked run states fit the memory limit (before compiling); else why not."""
  total = 0
  for lane in lanes:
    exp = exps[lane.seed]
    total += trees.tree_bytes(jax.eval_shape(exp.federation.init, exp.world))
  limit, name = checks._limit(lanes[0].config, 0)   # pylint: disable=protected-access
  if limit is not None and total > limit:
    return (f'{len(lanes)} stacked run states need {checks.gb(total)} but {name} is '
            f'{checks.gb(limit)}')
  return None


def run_vmapped(group: VmappedGroup, workdir: str) -> tuple:
  """Trains a prepared group's lanes together: ({lane: rows}, {lane: stop message})."""
  opened = {}
  try:
    for lane in group.lanes:
      opened[lane.name] = _open_lane(lane.config, os.path.join(workdir, lane.name), True)
    return _train_vmapped(group, workdir, {n: o[1] for n, o in opened.items()})
  finally:
    for lock, ckpts, _ in opened.values():
      ckpts.close()
      lock.close()


def _train_vmapped(group, workdir, ckpts) -> tuple:
  lanes, config = group.lanes, group.config
  for seed in sorted({lane.seed for lane in lanes}):
    lane = next(lane for lane in lanes if lane.seed == seed)
    loop.startup_checks(group.exps[lane.name], [])
  server, clients, frozen, source = group.state
  group.state = None   # donated to the first call
  key_data = group.key_data()
  logs = {lane.name: metrics_log.MetricsLog(
      os.path.join(workdir, lane.name, 'metrics.jsonl'), 0) for lane in lanes}
  evaluators = {lane.name: evaluator.Evaluator(group.exps[lane.name],
                                                os.path.join(workdir, lane.name), 0)
                for lane in lanes}
  stopped, calls, cohorts = {}, [], {}
  compile_s = dict(group.compile_s)
  frozen_of = lambda i: _lane_state(frozen, i) if group.keyed else frozen
  try:
    for first, k in group.schedule():
      plan, stats, cohorts = group.plans(first, k)
      guard = _stack([guards.make(lane.config, logs[lane.name].rows) for lane in lanes])
      t0 = time.perf_counter()
      server, clients, metrics = group.calls[k](key_data, server, clients, frozen, source,
                                                plan, guard)
      metrics = jax.device_get(metrics)   # the call's one transfer
      seconds = time.perf_counter() - t0
      first_compile = compile_s.pop(k, None)
      calls.append((first_compile or 0.0, seconds, k))
      done = first + k
      for i, lane in enumerate(lanes):
        if lane.name in stopped:
          continue
        exp, log = group.exps[lane.name], logs[lane.name]
        for j in range(k):
          row = {'round': first + j + 1, **stats[lane.name][j],
                 **{key: float(v[i] if k == 1 else v[i, j]) for key, v in metrics.items()},
                 **exp.host_metrics(first + j + 1), 'time/round_s': seconds / k}
          if j == 0 and first_compile is not None:
            row['time/compile_s'] = first_compile
          if row[guards.DIVERGED]:
            if lane.config.on_divergence == 'stop':
              log.append(row)
              log.sync()
              stopped[lane.name] = guards.stop_message(
                  lane.config, row, log.rows, max(ckpts[lane.name].steps(), default=0),
                  ckpts[lane.name].directory)
              loop.warn(f'sweep lane {lane.name}: {stopped[lane.name]}')
              break
            loop.warn(f'sweep lane {lane.name}: '
                      f'{guards.skip_message(lane.config, row, log.rows)}')
          if row['round'] % config.eval_every == 0:
            state = (_lane_state(server, i), _lane_state(clients, i), frozen_of(i))
            loop.evaluate_row(evaluators[lane.name], exp, row, state, cohorts[lane.name],
                              log.rows)
          evaluators[lane.name].log_row(log.append(row))
        if lane.name not in stopped and (done % config.checkpoint_every == 0 or
                                         done == config.num_rounds):
          log.sync()   # rows first: a checkpoint implies its rows are on disk
          ckpts[lane.name].save(done, {'server': _lane_state(server, i),
                                       'clients': _lane_state(clients, i)})
      if len(stopped) == len(lanes):
        break
    for i, lane in enumerate(lanes):
      if lane.name not in stopped and group.stop == config.num_rounds:
        state = (_lane_state(server, i), _lane_state(clients, i), frozen_of(i))
        loop._finish(group.exps[lane.name], lane.config,  # pylint: disable=protected-access
                     os.path.join(workdir, lane.name), logs[lane.name], calls,
                     evaluators[lane.name], state, cohorts.get(lane.name))
  finally:
    for evaluator in evaluators.values():
      evaluator.close()
  return {lane.name: logs[lane.name].rows for lane in lanes}, stopped


# ---------------------------------------------------------------------------
# The sweep.

def _groups(lanes, exps, vmap, mesh) -> list:
  """[(mode, lanes, why)]: which lanes run vmapped together, which one after another."""
  if vmap is False:
    return [('sequential', lanes, '--novmap')]
  why = None
  if mesh is not None:
    why = f'not supported yet: --vmap with a client mesh of {mesh.size} devices'
  elif len(lanes) < 2:
    why = 'one lane'
  if why is not None:
    if vmap is True and len(lanes) > 1:
      raise ConfigError(why)
    return [('sequential', lanes, why)]
  seeds = sorted({lane.seed for lane in lanes})
  if len(seeds) > 1:
    why = seeds_share_program({s: exps[s] for s in seeds})
    if why is not None:   # the values of each seed together, seeds one after another
      return [('vmapped', [l for l in lanes if l.seed == s], f'values only, seeds one after '
               f'another: {why}') for s in seeds]
  return [('vmapped', lanes, None)]


def _final(workdir: str, rows) -> dict:
  """The lane's final row (summary.json: its last round, evaluated)."""
  path = os.path.join(workdir, workdir_lib.SUMMARY_FILE)
  final = dict(rows[-1]) if rows else {}
  if os.path.exists(path):
    with open(path) as f:
      final = json.load(f)
  return {'round': final.get('round'), **{k: final.get(k) for k in FINAL_KEYS}}


def summarize(lanes, results: dict) -> list:
  """Per value (over seeds): the mean and spread of each final metric."""
  by_value = {}
  for lane in lanes:
    by_value.setdefault(lane.overrides, []).append(results[lane.name]['final'])
  out = []
  for overrides, finals in by_value.items():
    entry = {'overrides': dict(overrides), 'seeds': len(finals)}
    for key in FINAL_KEYS:
      values = [f[key] for f in finals if f.get(key) is not None]
      entry[key] = {'mean': float(np.mean(values)) if values else None,
                    'std': float(np.std(values)) if values else None}
    out.append(entry)
  return out


def print_summary(summary: dict) -> None:
  compiles = summary['round_compiles']
  print(f"sweep: {len(summary['lanes'])} lane(s), "
        f"{'one build per lane' if compiles is None else f'{compiles} round compile(s)'}, "
        f"{summary['compiles']['xla']} XLA compiles in all, {summary['wall_s']:.1f} s")
  for group in summary['groups']:
    note = f" ({group['why']})" if group['why'] else ''
    print(f"  {group['mode']}: {len(group['lanes'])} lane(s){note}")
  width = max(len(n) for n in summary['lanes'])
  print(f"{'lane':<{width}}  " + '  '.join(f'{k:>14}' for k in FINAL_KEYS))
  for name, lane in summary['lanes'].items():
    cells = [('diverged' if lane['stopped'] else '-') if lane['final'].get(k) is None
             else f"{lane['final'][k]:.4f}" for k in FINAL_KEYS]
    print(f'{name:<{width}}  ' + '  '.join(f'{c:>14}' for c in cells))
  if any(v['seeds'] > 1 for v in summary['by_value']):
    print('mean +- std over seeds:')
    for v in summary['by_value']:
      cells = [f"{k} {v[k]['mean']:.4f}+-{v[k]['std']:.4f}" if v[k]['mean'] is not None
               else f'{k} -' for k in FINAL_KEYS]
      print(f"  {v['overrides']}: " + ', '.join(cells))


def _check_keys(keys, lanes, vmap) -> dict:
  """{key: why it is compiled in}; refused under vmap=True."""
  compiled = {k: why for k in keys if (why := not_data(k, lanes[0].config))}
  if compiled and vmap is True:
    raise ConfigError(f'--vmap: {next(iter(compiled.values()))}; drop --vmap to build and '
                      'compile each value on its own')
  return compiled


def _rebuilt(lanes, workdir: str, progress: bool) -> dict:
  """Every lane its own build and compile, as fedxr-train."""
  results = {}
  for lane in lanes:
    lane_dir = os.path.join(workdir, lane.name)
    rows, stopped = None, None
    try:
      rows = loop.run(lane.config, lane_dir, progress=progress)
    except guards.DivergenceError as e:
      stopped = str(e)
      rows = metrics_log.read_rows(os.path.join(lane_dir, 'metrics.jsonl'))
    results[lane.name] = {'rows': rows, 'stopped': stopped}
  return results


def _sequential(lanes, exps, keys, per_step, workdir, progress, shared) -> dict:
  """Lanes one after another through the loop, on their seed's one build."""
  results = {}
  for lane in lanes:
    base = exps[lane.seed]
    if lane.seed not in shared:
      shared[lane.seed] = loop.Runner(base, per_step[lane.seed])
    exp = base._replace(config=lane.config)
    runner = LaneRunner(exp, per_step[lane.seed], shared[lane.seed], keys)
    lane_dir = os.path.join(workdir, lane.name)
    rows, stopped = None, None
    try:
      rows = run_lane(exp, runner, lane_dir, progress)
    except guards.DivergenceError as e:
      stopped = str(e)
      rows = metrics_log.read_rows(os.path.join(lane_dir, 'metrics.jsonl'))
    results[lane.name] = {'rows': rows, 'stopped': stopped}
  return results


def run(config, workdir: str, specs: Sequence[Spec], seeds: Optional[Sequence[int]] = None,
        vmap: Optional[bool] = None, progress: bool = False, report: bool = True,
        stop_after: Optional[int] = None) -> dict:
  """Runs the sweep; returns (and writes as WORKDIR/sweep.json) its summary.

  vmap: None (vmapped where it can and fits), True (vmapped, or refused),
  False (one lane after another). report: print the summary. stop_after=K:
  every lane trains only rounds 1..K of its configured run (vmapped lanes
  only; no final evaluation), as `loop.run(stop_after=K)`.
  """
  listen()
  compiles0, t0 = compile_counts(), time.perf_counter()
  lanes = make_lanes(config, specs, seeds)
  check_lanes(lanes)
  keys = [s.key for s in specs]
  compiled_keys = _check_keys(keys, lanes, vmap)
  if stop_after is not None and vmap is not True:
    raise ConfigError('not supported yet: stop_after with lanes run one after another')
  os.makedirs(workdir, exist_ok=True)
  results, groups, round_compiles = {}, [], 0
  if compiled_keys:
    results = _rebuilt(lanes, workdir, progress)
    groups.append({'mode': 'rebuilt', 'lanes': [l.name for l in lanes],
                   'why': next(iter(compiled_keys.values()))})
    round_compiles = None
  else:
    exps = {}
    for seed in sorted({lane.seed for lane in lanes}):
      exps[seed] = experiment_lib.build(next(l for l in lanes if l.seed == seed).config)
      _check_server_effect(exps[seed], keys)
    per_step = {s: checks.step_bytes(e) for s, e in exps.items()}
    plan = _groups(lanes, exps, vmap, exps[lanes[0].seed].mesh)
    if any(mode == 'vmapped' for mode, _, _ in plan):
      why = state_fits(exps, plan[0][1])   # the largest group: all, or one seed's
      if why is not None:
        if vmap is True:
          raise ConfigError(f'--vmap: {why}; drop --vmap to run the lanes one after another')
        plan = [('sequential', lanes, why)]
    shared = {}
    for mode, group_lanes, why in plan:
      if mode == 'vmapped':
        group = VmappedGroup(group_lanes, exps, keys, per_step[group_lanes[0].seed],
                             stop=stop_after)
        try:
          group.prepare()   # compiles; the memory check refuses before anything is written
        except ConfigError as e:
          if vmap is True:
            raise
          mode, why, group = 'sequential', f'the vmapped program does not fit: {e}', None
        if group is not None:
          rows, stopped = run_vmapped(group, workdir)
          round_compiles += len(group.calls)
          results.update({lane.name: {'rows': rows[lane.name], 'stopped': stopped.get(lane.name)}
                          for lane in group_lanes})
      if mode == 'sequential':
        results.update(_sequential(group_lanes, exps, keys, per_step, workdir, progress, shared))
      groups.append({'mode': mode, 'lanes': [l.name for l in group_lanes], 'why': why})
    round_compiles += sum(len(r._calls) for r in shared.values())  # pylint: disable=protected-access
  for lane in lanes:
    results[lane.name]['final'] = _final(os.path.join(workdir, lane.name),
                                         results[lane.name]['rows'])
  summary = {
      'keys': keys, 'seeds': sorted({lane.seed for lane in lanes}), 'groups': groups,
      'round_compiles': round_compiles,
      'compiles': {k: v - compiles0[k] for k, v in compile_counts().items()},
      'wall_s': time.perf_counter() - t0,
      'lanes': {lane.name: {'workdir': os.path.join(workdir, lane.name), 'seed': lane.seed,
                            'overrides': dict(lane.overrides),
                            'rounds': len(results[lane.name]['rows']),
                            'stopped': results[lane.name]['stopped'],
                            'final': results[lane.name]['final']} for lane in lanes},
      'by_value': summarize(lanes, results)}
  path = os.path.join(workdir, SUMMARY_FILE)
  with open(path + '.tmp', 'w') as f:
    json.dump(summary, f, indent=2, sort_keys=True)
  os.replace(path + '.tmp', path)
  if report:
    print_summary(summary)
    print(f'sweep summary: {path}')
  return summary
