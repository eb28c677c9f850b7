r"""Baselines for the paper's research directions (issue 23), each on the SHIFT setting it targets.

  python benchmarks/solutions.py                                  # every entry, 3 seeds
  python benchmarks/solutions.py --entries=S1/crossmodal_distill --seeds=1 --rounds=8
  python benchmarks/solutions.py --table                          # the markdown again

The S1-S3 entries (5 methods, 8 compiled programs: two methods' common baseline trains
once) take about 11 minutes of CPU (2 cores), most of it compiling; the rounds are cheap
(about 0.3 s for 3 seeds). S4, S5 and TAP have their own script and results
(benchmarks/solutions_continual.py).

`EXPERIMENTS` maps '<direction>/<method>' to an `Entry` (benchmarks/solutions_lib.py):
the method's config keys, its plain baseline's, the SHIFT setting both run on (over a
small base federation: `base_config`), the Table 6 metrics the direction is about
and the Table 7 trade-off they show. S1-S3 are here; S4, S5 and TAP come from
benchmarks/solutions_continual.py (its `EXPERIMENTS`). Every arm (method or baseline)
trains its seeds as lanes of one compiled program (`training.runner.Runner`, the
loop's lanes), then each metric function reads the lanes' final states (per-client
evaluation of the population's and of new users' held-out data). Arms with the same
config (two methods' common baseline) train once. Writes --out/solutions.json (every
seed's numbers) and solutions.md (mean +- std over seeds, the method against its
baseline seed by seed, and whether it beats it on the entry's primary metric, i.e. is
better on every seed: a method that does not is reported as such).
"""
import json
import os

from absl import app
from absl import flags
import jax
import numpy as np

import solutions_continual
import solutions_lib
from solutions_lib import Arm, Entry, accuracy, devices_named, mean_train, of_devices
from fedxr_jax.algorithms import resource_aware
from fedxr_jax.configs import default as default_config
from fedxr_jax.data import catalog
from fedxr_jax.metrics import latency

_ENTRIES = flags.DEFINE_list('entries', [], 'Entries to run (default: all).')
_SEEDS = flags.DEFINE_integer('seeds', 3, 'Seeds per arm (lanes of one program).')
_ROUNDS = flags.DEFINE_integer('rounds', 30, 'Rounds per run.')
_POPULATION = flags.DEFINE_integer('population', 48, 'Users of the federation.')
_COHORT = flags.DEFINE_integer('cohort', 12, 'Users per round.')
_UNSEEN = flags.DEFINE_integer('unseen', 48, 'New users evaluated.')
_OUT = flags.DEFINE_string('out', 'benchmarks/results', 'Output folder.')
_TABLE = flags.DEFINE_bool('table', False, 'Only rewrite the markdown from --out/solutions.json.')

GLASSES = ('ray_ban_meta', 'xreal_air', 'vuzix_blade_2')   # modality-poor (Table 1)
OFFLOADERS = ('ray_ban_meta', 'vuzix_blade_2')             # compute tier ~0.01 (Table 1)
# A glasses-heavy mix of the default devices (3 headsets, 3 glasses): 3 of 4 users wear glasses.
GLASSES_HEAVY = (1.0, 1.0, 1.0, 3.0, 3.0, 3.0)
# The simulated model stands for one 150x costlier (data.hardware.model_scale): its full
# forward on smart glasses (1e10 FLOP/s) then misses intent's 11 ms budget, its first exit
# does not.
MODEL_SCALE = 150.0


# -- metrics -------------------------------------------------------------------

def _per_program(fn):
  """`fn(arm, lane)` computed once per trained arm (its lanes share one program)."""
  cache = {}

  def cached(arm: Arm, lane: int):
    key = id(arm.exps[0])
    if key not in cache:
      cache[key] = (arm, fn(arm, lane))   # the arm is kept so that its id stays its own
    return cache[key][1]
  return cached


@_per_program
def step_gflops(arm: Arm, lane: int) -> float:
  """GFLOPs (XLA) of one local step of the run's local objective, at its batch size."""
  exp = arm.exps[lane]
  problem, plan = exp.problem, exp.federation.plan
  algorithm = exp.federation.setup.stage.algorithm
  params = problem.init_params(jax.random.key(0))
  shared = {r: params[r] for r in params if plan.get(r) == 'shared'}
  objective = problem.loss if algorithm.objective is None else algorithm.objective(
      problem, shared, algorithm.init_client_state(shared), algorithm.init_server_state(shared))
  trained = {r: params[r] for r in params if plan.get(r, 'frozen') != 'frozen'}
  fixed = {r: params[r] for r in params if r not in trained}
  data = jax.eval_shape(lambda: problem.client_data(exp.world, jax.numpy.int32(0), 'train', 0))
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct((exp.config.batch_size,) + x.shape[1:],
                                                      x.dtype), data['examples'])
  meta = {k: v for k, v in data.items() if k != 'examples'}
  grad = jax.grad(lambda t, f, b, m: objective({**f, **t}, b, m)[0])
  cost = jax.jit(grad).lower(trained, fixed, batch, meta).cost_analysis()
  return float(cost.get('flops', 0.0)) * exp.config.data.hardware.model_scale / 1e9


def s1_metrics(arm: Arm, lane: int) -> dict:
  exp = arm.exps[lane]
  poor = devices_named(exp, GLASSES)
  pop = arm.per_client(lane, arm.population(lane))
  new = arm.per_client(lane, arm.unseen(lane), from_population=False)
  return {'poor_accuracy': accuracy(pop, of_devices(pop, poor)),
          'poor_unseen_accuracy': accuracy(new, of_devices(new, poor)),
          'rich_accuracy': accuracy(pop, ~of_devices(pop, poor)),
          'accuracy': accuracy(pop),
          'train_gflops_per_step': step_gflops(arm, lane)}


@_per_program
def _full_flops(arm: Arm, lane: int) -> float:
  exp = arm.exps[lane]
  return float(resource_aware.exit_flops(exp.problem, exp.model, exp.world)[-1])


def _path_costs(arm: Arm, lane: int, stats: dict) -> dict:
  """Per-client inference costs: the path's (resource_aware's evaluation stats) or, for a
  model without paths, every block's, by the same formula (`resource_aware.Policy.costs`)."""
  exp = arm.exps[lane]
  if 'path_blocks' not in stats:
    flops = _full_flops(arm, lane)
    seconds = exp.config.data.hardware.model_scale * flops / stats['train_flops']
    power = np.asarray([catalog.DEVICES[d].compute_power_w for d in exp.spec.devices])
    budgets, _ = latency.budgets(exp.spec.tasks)
    n = float(exp.config.data.test_examples)
    stats = {**stats, 'path_examples': np.full(seconds.shape, n),
             'path_blocks': np.full(seconds.shape, n * exp.model.depth),
             'path_latency_ms': n * 1e3 * seconds,
             'path_energy_j': n * seconds * power[stats['device']],
             'path_over': stats['count'] * (1e3 * seconds[:, None] > budgets[None, :]),
             'path_pairs': stats['count']}
  return stats


def s2_paths_metrics(arm: Arm, lane: int) -> dict:
  exp = arm.exps[lane]
  pop = _path_costs(arm, lane, arm.per_client(lane, arm.population(lane)))
  examples = pop['path_examples'].sum()
  glasses = of_devices(pop, devices_named(exp, GLASSES))
  return {'accuracy': accuracy(pop),
          'glasses_accuracy': accuracy(pop, glasses),
          'violation_rate': float(pop['path_over'].sum() / pop['path_pairs'].sum()),
          'energy_mj_per_inference': float(1e3 * pop['path_energy_j'].sum() / examples),
          'latency_ms_per_inference': float(pop['path_latency_ms'].sum() / examples),
          'blocks_per_inference': float(pop['path_blocks'].sum() / examples)}


def s2_offload_metrics(arm: Arm, lane: int) -> dict:
  exp = arm.exps[lane]
  poor = devices_named(exp, OFFLOADERS)
  pop = arm.per_client(lane, arm.population(lane))
  get = lambda key: mean_train(arm, lane, key) if key in arm.rows[lane][0] else 0.0
  return {'offloader_accuracy': accuracy(pop, of_devices(pop, poor)),
          'accuracy': accuracy(pop),
          'offload_mb_per_round': get('algorithm/offload_bits') / 8e6,
          'offload_energy_mj_per_round': 1e3 * get('algorithm/offload_energy_j'),
          'helper_steps_per_round': get('algorithm/helper_steps'),
          'device_energy_j_per_round': get('cost/energy_j')}


def s3_metrics(arm: Arm, lane: int) -> dict:
  exp = arm.exps[lane]
  pop = arm.per_client(lane, arm.population(lane))
  new = arm.per_client(lane, arm.unseen(lane), from_population=False)
  per_user = [np.sum(pop['correct'][i]) / max(np.sum(pop['count'][i]), 1)
              for i in range(len(pop['device']))]
  personal = {r: v for r, v in arm.states[lane][1].personal.items()}
  return {'personalized_accuracy': accuracy(pop),
          'unseen_accuracy': accuracy(new),
          'worst_user_accuracy': float(np.min(per_user)),
          'personal_params_per_user': solutions_lib.tree_params(personal)
          // exp.config.population_size,
          'upload_mb_per_round': mean_train(arm, lane, 'comm/uplink_bits') / 8e6}


# -- the registry ----------------------------------------------------------------

def _glasses_heavy():
  return {'data.device_weights': GLASSES_HEAVY}


def _hetero_low_battery():
  """Hetero hardware with batteries: stragglers, availability from battery and time of
  day, a model 150x the simulated one's cost (model_scale)."""
  return {'data.hardware.straggler_prob': 0.2, 'data.hardware.availability': True,
          'data.hardware.model_scale': MODEL_SCALE, 'data.device_weights': GLASSES_HEAVY}


EXPERIMENTS = {
    'S1/crossmodal_distill': Entry(
        method={'algorithm.name': 'crossmodal_distill'}, baseline={'algorithm.name': 'fedavg'},
        shift=_glasses_heavy(), metrics=s1_metrics, primary='poor_accuracy',
        tradeoff='accuracy of modality-poor devices (glasses) vs. training compute on the '
                 'rich ones (GFLOPs per local step: teacher + student passes); Table 7 '
                 'nearest: local personalization vs. global generalization'),
    'S2/resource_aware': Entry(
        method={'resource_aware.policy': 'resource'}, baseline={'algorithm.name': 'fedavg'},
        shift=_hetero_low_battery(), metrics=s2_paths_metrics, primary='violation_rate',
        higher_is_better=False,
        tradeoff='accuracy vs. latency-budget violations and energy per inference; Table 7: '
                 'modular (shallow) vs. monolithic (deep) deployment'),
    'S2/offload': Entry(
        method={'algorithm.name': 'offload'}, baseline={'algorithm.name': 'fedavg'},
        shift=_glasses_heavy(), metrics=s2_offload_metrics, primary='offloader_accuracy',
        tradeoff='accuracy of the resource-poor devices vs. raw data sent over the personal '
                 'link (MB, transmit energy); Table 7: privacy preservation vs. model '
                 'performance (the data leaves the device, not the user)'),
    'S3/module_library': Entry(
        method={'model.m3t.library_size': 4}, baseline={'algorithm.name': 'fedavg'},
        shift={'data.style_scale': 1.5}, metrics=s3_metrics, primary='personalized_accuracy',
        tradeoff='personalized accuracy vs. new users\' accuracy and per-user state; Table 7: '
                 'local personalization vs. global generalization'),
    'S3/signature_prompts': Entry(
        method={'model.m3t.signature_tokens': 2}, baseline={'algorithm.name': 'fedavg'},
        shift={'data.style_scale': 1.5}, metrics=s3_metrics, primary='personalized_accuracy',
        tradeoff='personalized accuracy vs. new users\' accuracy (no update on their '
                 'device); Table 7: local personalization vs. global generalization'),
    **solutions_continual.EXPERIMENTS,
}


# -- running ---------------------------------------------------------------------

def base_config():
  """The small federation every entry starts from (the default XR data and model)."""
  config = default_config.get_config()
  config.population_size = _POPULATION.value
  config.cohort_size = _COHORT.value
  config.num_rounds = _ROUNDS.value
  config.eval_unseen_clients = _UNSEEN.value
  config.plot = False
  return config


def arm_config(entry: Entry, arm: dict, seed: int):
  config = base_config()
  for key, value in {**entry.shift, **arm, 'seed': seed}.items():
    *parents, leaf = key.split('.')
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


# -- writing ---------------------------------------------------------------------

def _summary(seeds: list, key: str):
  values = [s[key] for s in seeds if s.get(key) is not None]
  return (float(np.mean(values)), float(np.std(values))) if values else (None, None)


def _paired(base: list, method: list, key: str) -> list:
  """method - baseline per seed (the same seed: the same users, data and cohorts)."""
  return [m[key] - b[key] for b, m in zip(base, method)
          if m.get(key) is not None and b.get(key) is not None]


def verdict(base: list, method: list, key: str, higher_is_better: bool) -> str:
  """Whether the method beats its baseline on `key`: better on every seed (paired)."""
  gains = [d if higher_is_better else -d for d in _paired(base, method, key)]
  if gains and all(g > 0 for g in gains):
    return 'beats its baseline'
  if gains and all(g < 0 for g in gains):
    return 'does not beat its baseline (worse on every seed)'
  return 'does not beat its baseline (better on some seeds, not on all)'


def write_table(results: dict, path: str) -> None:
  lines = ['# Baselines for the research directions (issue 23)', '',
           'Each entry names the run that measured it. Mean +- std over seeds; '
           'population users on their held-out data unless a metric says "unseen" (new '
           'users, never trained). Delta: method - baseline on the same seed (the same '
           'users, data and cohorts), mean +- std over seeds. A method beats its baseline '
           'when its primary metric is better on every seed.', '']
  fmt = lambda m, s: '-' if m is None else f'{m:.4g} +- {s:.2g}'
  lines += ['| entry | primary metric | baseline | method | delta (paired) | verdict |',
            '|---|---|---|---|---|---|']
  for name, r in results['entries'].items():
    base, method, key = r['baseline']['seeds'], r['method']['seeds'], r['primary']
    deltas = _paired(base, method, key)
    lines.append(f"| {name} | {key} ({'higher' if r['higher_is_better'] else 'lower'} "
                 f"is better) | {fmt(*_summary(base, key))} | {fmt(*_summary(method, key))} "
                 f"| {fmt(float(np.mean(deltas)), float(np.std(deltas))) if deltas else '-'} "
                 f"| {verdict(base, method, key, r['higher_is_better'])} |")
  lines.append('')
  for name, r in results['entries'].items():
    base, method = r['baseline']['seeds'], r['method']['seeds']
    run = r.get('run', results)
    lines += [f"## {name}", '', f"Run: `{run['command']}` ({run['settings']}; "
              f"{run['device']}, {run['wall_s']:.0f} s wall"
              + (f", {run['cpu_s']:.0f} s CPU" if 'cpu_s' in run else '')
              + ' for the whole run).', '',
              f"SHIFT: `{r['shift']}`; method `{r['method']['config']}` "
              f"vs baseline `{r['baseline']['config']}`.", '',
              f"Trade-off: {r['tradeoff']}.", '',
              '| metric | baseline | method | delta (paired) |', '|---|---|---|---|']
    for key in method[0]:
      deltas = _paired(base, method, key)
      delta = fmt(float(np.mean(deltas)), float(np.std(deltas))) if deltas else '-'
      mark = ' (primary)' if key == r['primary'] else ''
      lines.append(f'| {key}{mark} | {fmt(*_summary(base, key))} | '
                   f'{fmt(*_summary(method, key))} | {delta} |')
    (bm, _), (mm, _) = _summary(base, r['primary']), _summary(method, r['primary'])
    lines += ['', f"**{name.split('/')[1]} "
              f"{verdict(base, method, r['primary'], r['higher_is_better'])}** on "
              f"{r['primary']} ({mm:.4g} vs {bm:.4g}, "
              f"{'higher' if r['higher_is_better'] else 'lower'} is better).", '']
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))


def main(argv):
  del argv
  json_path = os.path.join(_OUT.value, 'solutions.json')
  md_path = os.path.join(_OUT.value, 'solutions.md')
  if _TABLE.value:
    with open(json_path) as f:
      write_table(json.load(f), md_path)
    return
  names = _ENTRIES.value or list(EXPERIMENTS)
  unknown = sorted(set(names) - set(EXPERIMENTS))
  if unknown:
    raise SystemExit(f'unknown entries {unknown}; known: {sorted(EXPERIMENTS)}')
  t0, cpu0, cache, entries = time.perf_counter(), time.process_time(), {}, {}
  for name in names:
    entries[name] = solutions_lib.run_entry(name, EXPERIMENTS[name], cache, arm_config,
                                            _SEEDS.value)
  args = ((('entries', ','.join(names)),) if _ENTRIES.value else ()) + (
      ('seeds', _SEEDS.value), ('rounds', _ROUNDS.value), ('population', _POPULATION.value),
      ('cohort', _COHORT.value), ('unseen', _UNSEEN.value))
  run = {'command': 'python benchmarks/solutions.py ' + ' '.join(
             f'--{k}={v}' for k, v in args),
         'settings': f'{_POPULATION.value} users, {_COHORT.value} a round, '
                     f'{_ROUNDS.value} rounds, {_SEEDS.value} seeds, {_UNSEEN.value} '
                     f'new users, the default model and data (configs/default.py)',
         'device': jax.devices()[0].device_kind, 'wall_s': time.perf_counter() - t0,
         'cpu_s': time.process_time() - cpu0}
  # Each entry keeps the run that measured it (entries of other runs stay beside it).
  entries = {name: {**r, 'run': run} for name, r in entries.items()}
  results = {**run, 'entries': entries}
  os.makedirs(_OUT.value, exist_ok=True)
  previous = {}
  if os.path.exists(json_path):   # other entries' results stay
    with open(json_path) as f:
      previous = json.load(f).get('entries', {})
  results['entries'] = {**previous, **entries}
  with open(json_path, 'w') as f:
    json.dump(results, f, indent=2)
  write_table(results, md_path)


if __name__ == '__main__':
  app.run(main)
