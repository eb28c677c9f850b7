"""Sweeps: a grid of hyperparameter values and seeds, each point a lane of the one loop.

  fedxr-sweep --config=fedxr_jax/configs/test.py --workdir=runs/sweep \
      --sweep=client_optimizer.learning_rate=0.01,0.03,0.1 --seeds=0,1

A sweep is the product of its `--sweep` keys' values and its seeds; each
point (a lane) writes a fedxr-train workdir of its own, WORKDIR/<lane>
(config.json, metrics.jsonl, summary.json, checkpoints), and the sweep
writes WORKDIR/sweep.json: every lane's final metrics and their mean over
seeds per value.

Lanes are trained by `training.loop.run_lanes`: lanes that differ only in
the seed and keys that are data of the compiled round
(`compose.experiment.DATA_KEYS`: learning rates, algorithm coefficients)
share one build and one program, vmapped over a lane axis where they fit
(`vmap` None or True) or one after another on the same executables
(`--novmap`); a key that sets shapes or structure gives each of its values
a build of its own (`vmap=True` refuses it). A stopped sweep resumes where
it stopped: run it again with the same --workdir.

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

from fedxr_jax.compose import experiment as experiment_lib
from fedxr_jax.compose import optimizers
from fedxr_jax.core import compilation_cache
from fedxr_jax.errors import ConfigError
from fedxr_jax.training import checks
from fedxr_jax.training import guards
from fedxr_jax.training import loop
from fedxr_jax.training import report as report_lib
from fedxr_jax.training import workdir as workdir_lib

SUMMARY_FILE = 'sweep.json'
FINAL_KEYS = ('train/loss', 'eval/accuracy')


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


def _final(workdir: str, rows) -> dict:
  """The lane's final row (summary.json: its last round, evaluated)."""
  path = os.path.join(workdir, workdir_lib.SUMMARY_FILE)
  final = dict(rows[-1]) if rows else {}
  if os.path.exists(path):
    with open(path) as f:
      final = json.load(f)
  return {'round': final.get('round'), **{k: final.get(k) for k in FINAL_KEYS}}


def _check_keys(keys, lanes, vmap) -> None:
  """A key compiled into the round is refused under vmap=True (one line)."""
  for key in keys:
    why = experiment_lib.not_data(key, lanes[0].config)
    if why is not None and vmap is True:
      raise ConfigError(f'--vmap: {why}; drop --vmap to build and compile each value on '
                        'its own')


def run(config, workdir: str, specs: Sequence[Spec], seeds: Optional[Sequence[int]] = None,
        vmap: Optional[bool] = None, progress: bool = False, report: bool = True,
        stop_after: Optional[int] = None) -> dict:
  """Runs the sweep; returns (and writes as WORKDIR/sweep.json) its summary.

  vmap: None (vmapped where lanes share a program and fit), True (refuses a
  key that is compiled in), False (one lane after another). report: print
  the summary. stop_after=K: every lane trains only rounds 1..K of its
  configured run (no final evaluation), as `loop.run(stop_after=K)`.
  """
  compilation_cache.listen()
  compiles0, t0 = compilation_cache.compile_counts(), time.perf_counter()
  lanes = make_lanes(config, specs, seeds)
  check_lanes(lanes)
  keys = [s.key for s in specs]
  _check_keys(keys, lanes, vmap)
  os.makedirs(workdir, exist_ok=True)
  dirs = [os.path.join(workdir, lane.name) for lane in lanes]
  outcome = loop.run_lanes([lane.config for lane in lanes], dirs, progress=progress,
                           stop_after=stop_after, vmap=vmap is not False)
  results = {lane.name: {'rows': r.rows, 'stopped': r.stopped,
                         'final': _final(r.workdir, r.rows)}
             for lane, r in zip(lanes, outcome)}
  for lane in lanes:
    if results[lane.name]['stopped']:
      loop.warn(f"sweep lane {lane.name}: {results[lane.name]['stopped']}")
  counts = {k: v - compiles0[k] for k, v in compilation_cache.compile_counts().items()}
  groups = {}
  for lane, r in zip(lanes, outcome):
    groups.setdefault(r.program, {'mode': 'vmapped' if r.vmapped else 'sequential',
                                  'lanes': [], 'why': r.why})['lanes'].append(lane.name)
  summary = {
      'keys': keys, 'seeds': sorted({lane.seed for lane in lanes}),
      'groups': [groups[p] for p in sorted(groups)],
      'round_compiles': counts['round_requests'], 'compiles': counts,
      'wall_s': time.perf_counter() - t0,
      'lanes': {lane.name: {'workdir': d, 'seed': lane.seed,
                            'overrides': dict(lane.overrides),
                            'rounds': len(results[lane.name]['rows']),
                            'stopped': results[lane.name]['stopped'],
                            'final': results[lane.name]['final']}
                for lane, d in zip(lanes, dirs)},
      'by_value': report_lib.sweep_by_value([l.overrides for l in lanes],
                                        [results[l.name]['final'] for l in lanes], FINAL_KEYS)}
  path = os.path.join(workdir, SUMMARY_FILE)
  with open(path + '.tmp', 'w') as f:
    json.dump(summary, f, indent=2, sort_keys=True)
  os.replace(path + '.tmp', path)
  if report:
    report_lib.print_sweep(summary, FINAL_KEYS)
    print(f'sweep summary: {path}')
  return summary
