"""What benchmarks/solutions.py and its direction modules share: the entry type, a trained
arm's lanes, and the metric helpers.

An `Entry` is one method of one research direction measured against its plain baseline
on the SHIFT setting the direction targets; `EXPERIMENTS` dicts of entries live in
benchmarks/solutions.py (S1-S3) and benchmarks/solutions_continual.py (S4, S5, TAP).
A metric function gets the trained `Arm` (every seed a lane of one compiled program)
and a lane index, and returns {name: value} for that seed; solutions.py reports the
mean and spread over seeds.
"""
import json
import time
from typing import Callable, NamedTuple

import jax
import numpy as np

from fedxr_jax.compose import experiment
from fedxr_jax.training import checks
from fedxr_jax.training import runner as runner_lib


class Entry(NamedTuple):
  """One method of one direction: what runs, against what, where, measured how."""
  method: dict        # dotted config keys of the method (applied over the shift)
  baseline: dict      # dotted config keys of its plain baseline (over the shift)
  shift: dict         # the SHIFT setting: dotted config keys over the benchmark's base
  metrics: Callable   # (Arm, lane index) -> {metric: value}, the Table 6 metrics reported
  tradeoff: str       # the Table 7 trade-off it spans, and which metrics show each side
  primary: str        # the metric that says whether the method beats its baseline
  higher_is_better: bool = True
  snapshot_rounds: tuple = ()   # rounds after which each lane's state is kept (curves)


class Arm(NamedTuple):
  """A trained configuration: its experiments (one per seed) and their final states."""
  exps: list          # compose.experiment.Experiment per seed
  states: list        # (server, clients, frozen) per seed, after the last round
  rows: list          # per seed: the training metrics of every round
  snapshots: list     # per seed: {round: (server, clients, frozen)} (Entry.snapshot_rounds)
  evaluate: Callable  # the program's jitted Federation.evaluate

  def per_client(self, lane: int, ids, *, state=None, from_population: bool = True,
                 split: str = 'test') -> dict:
    """Per-client evaluation stats (numpy) of clients `ids` at the lane's final state
    (or `state`), each with its 'device' index."""
    exp = self.exps[lane]
    server, clients, frozen = self.states[lane] if state is None else state
    out = self.evaluate(server, clients, frozen, exp.world,
                        jax.device_put(np.asarray(ids, np.int32)), split,
                        personal_from_population=from_population, per_client=True)
    return jax.tree.map(np.asarray, jax.device_get(out))

  def population(self, lane: int) -> np.ndarray:
    return np.arange(self.exps[lane].config.population_size, dtype=np.int32)

  def unseen(self, lane: int) -> np.ndarray:
    c = self.exps[lane].config
    return np.arange(c.population_size, c.population_size + c.eval_unseen_clients,
                     dtype=np.int32)


def accuracy(stats: dict, select=None):
  """Mean over tasks of the task's success rate over the selected clients (None: none held)."""
  keep = np.ones(len(stats['device']), bool) if select is None else np.asarray(select)
  correct, count = stats['correct'][keep].sum(0), stats['count'][keep].sum(0)
  held = count > 0
  return float(np.mean(correct[held] / count[held])) if held.any() else None


def devices_named(exp, names) -> np.ndarray:
  """Indices of the run's devices (data.devices) among `names`."""
  return np.asarray([i for i, d in enumerate(exp.spec.devices) if d in names], np.int32)


def of_devices(stats: dict, indices) -> np.ndarray:
  return np.isin(stats['device'], indices)


def mean_train(arm: Arm, lane: int, key: str) -> float:
  """A training metric's mean over the lane's rounds."""
  return float(np.mean([row[key] for row in arm.rows[lane]]))


def tree_params(tree) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))



def train_arm(configs, snapshot_rounds=()) -> Arm:
  """The seeds' configs as lanes of one program, trained `num_rounds` rounds; each
  snapshot is copied out of the state the next call donates."""
  first = experiment.build(configs[0])
  exps = [first] + [experiment.for_lane(first, c) or experiment.build(c) for c in configs[1:]]
  runner = runner_lib.Runner(exps, checks.step_bytes(first))
  state = runner.initial()
  rows, snapshots = [[] for _ in exps], [{} for _ in exps]
  for r in range(first.config.num_rounds):
    prepared = runner.prepare(r, 1)
    state, metrics, _ = runner.call(state, prepared, runner.guard(rows))
    for lane, lane_rows in enumerate(runner.rows(runner_lib.fetch(metrics), prepared, 0.0,
                                                 None)):
      rows[lane] += lane_rows
    if r + 1 in snapshot_rounds:
      for lane in range(len(exps)):
        snapshots[lane][r + 1] = jax.tree.map(jax.numpy.copy, runner.lane(state, lane))
  return Arm(exps, [runner.lane(state, i) for i in range(len(exps))], rows, snapshots,
             runner.evaluate)


def run_entry(name: str, entry: Entry, cache: dict, arm_config: Callable,
              seeds: int) -> dict:
  """Baseline and method of `entry`, each over `seeds` lanes (arm_config(entry, arm,
  seed) -> config); an arm another entry already trained comes from `cache`."""
  out = {}
  for role, arm in (('baseline', entry.baseline), ('method', entry.method)):
    configs = [arm_config(entry, arm, seed) for seed in range(seeds)]
    key = (experiment.program_key(configs[0]), seeds, entry.snapshot_rounds)
    t0 = time.perf_counter()
    if key not in cache:
      cache[key] = train_arm(configs, entry.snapshot_rounds)
    trained = cache[key]
    per_seed = [entry.metrics(trained, lane) for lane in range(len(configs))]
    out[role] = {'config': arm, 'seeds': per_seed, 'seconds': time.perf_counter() - t0}
    print(f'{name} {role}: {json.dumps(per_seed)}', flush=True)
  return {'shift': entry.shift, 'tradeoff': entry.tradeoff, 'primary': entry.primary,
          'higher_is_better': entry.higher_is_better, **out}
