r"""Virtual time to a target accuracy: synchronous rounds against asynchronous server steps.

  python benchmarks/async_fl.py                       # every variant, 3 seeds
  python benchmarks/async_fl.py --variants=fedasync   # one variant (merged into --json)
  python benchmarks/async_fl.py --table               # rewrite the markdown only

The hetero-hardware scenario (bench/tracks/definitions.py hetero_hardware:
20% stragglers 4x slower, availability from battery and time of day, the
default 500-user federation on six Table 1 devices) with the variants
  sync           FedAvg, 32 clients a round; the round waits for the slowest
  sync_deadline  the same with the track's 10 ms compute deadline: slow
                 devices run fewer steps, those that cannot run one sit out
  fedbuff_k8     FedBuff, --concurrency clients in flight, a server step per 8
  fedbuff_k32    arrivals (32), staleness 1/sqrt(1 + tau)
  fedasync       FedAsync: a step per arrival, alpha 0.6, the same staleness
Every variant gets the same budget of client updates (--updates: rounds x 32,
steps x K) and is evaluated every --eval_updates; the seeds of a variant are
lanes of one program (`training.loop.run_lanes`, as fedxr-bench runs a
track). Virtual seconds are the cost model's clock (`time/virtual_s`: a
round's slowest download + compute + upload, a step's last arrival). A
variant reaches the target when every seed does (MLPerf's rule,
bench/targets.py); its time is the mean over seeds, with each seed's.
"""
import json
import os
import shutil
import sys
import tempfile
import time

from absl import app
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'benchmarks'))

import harness  # noqa: E402

VARIANTS = ('sync', 'sync_deadline', 'fedbuff_k8', 'fedbuff_k32', 'fedasync')
_VARIANTS = flags.DEFINE_list('variants', list(VARIANTS), f'Of {VARIANTS}.')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds (lanes of one program).')
_UPDATES = flags.DEFINE_integer('updates', 1280, 'Client updates per run (rounds x 32).')
_EVAL = flags.DEFINE_integer('eval_updates', 128, 'Client updates between evaluations.')
_CONCURRENCY = flags.DEFINE_integer('concurrency', 64, 'Async: clients in flight.')
_TARGET = flags.DEFINE_float('target', 0.45, 'Target eval/accuracy.')
_JSON = flags.DEFINE_string('json', os.path.join(REPO, 'benchmarks', 'results',
                                                 'async_fl.json'), 'Results file.')
_TABLE = flags.DEFINE_bool('table', False, 'Only rewrite the markdown from --json.')
_NOTE = flags.DEFINE_string('note', '', 'A line saved with the results (machine, load).')

COHORT = 32


def variant_config(name: str, seed: int):
  """The hetero-hardware config of a variant (its num_rounds are server steps for async)."""
  from fedxr_jax.bench.tracks import definitions
  config = definitions.hetero_hardware()
  config.seed = seed
  config.cohort_size = COHORT
  config.eval.measure_latency = False   # host wall time: not a function of the seed
  config.eval.tensorboard = False
  config.plot = False
  if name != 'sync_deadline':
    config.data.hardware.deadline_s = 0.0
  per_step = COHORT
  if name.startswith('fedbuff') or name == 'fedasync':
    a = config.asynchrony
    a.kind = 'fedbuff' if name.startswith('fedbuff') else 'fedasync'
    a.concurrency = _CONCURRENCY.value
    a.buffer = int(name.split('_k')[1]) if name.startswith('fedbuff') else 1
    a.staleness = 'polynomial'
    a.staleness_a = 0.5
    per_step = a.buffer
  config.num_rounds = _UPDATES.value // per_step
  config.eval_every = max(1, _EVAL.value // per_step)
  config.rounds_per_call = config.eval_every
  config.checkpoint_every = config.num_rounds
  return config


def reach(rows, target: float):
  """(step, virtual seconds, joules) at the first evaluation >= target, or None."""
  energy = 0.0
  for row in sorted(rows, key=lambda r: r['round']):
    energy += row.get('cost/energy_j') or 0.0
    acc = row.get('eval/accuracy')
    if acc is not None and acc >= target:
      return row['round'], row['time/virtual_s'], energy
  return None


def run_variant(name: str, seeds) -> dict:
  from fedxr_jax.training import loop
  configs = [variant_config(name, s) for s in seeds]
  base = tempfile.mkdtemp(prefix=f'async_fl_{name}_')
  t0 = time.perf_counter()
  try:
    results = loop.run_lanes(configs, [os.path.join(base, f'seed{s}') for s in seeds])
  finally:
    cpu = time.perf_counter() - t0
  per_seed = []
  for seed, result in zip(seeds, results):
    rows = result.rows
    curve = [(r['round'], r['time/virtual_s'], r['eval/accuracy']) for r in rows
             if r.get('eval/accuracy') is not None]
    hit = reach(rows, _TARGET.value)
    last = rows[-1]
    per_seed.append({
        'seed': seed, 'curve': curve, 'reached': hit is not None,
        'steps_to_target': hit[0] if hit else None,
        'virtual_s_to_target': hit[1] if hit else None,
        'energy_j_to_target': hit[2] if hit else None,
        'final_accuracy': curve[-1][2] if curve else None,
        'virtual_s_total': last['time/virtual_s'],
        'staleness_mean': _mean([r.get('async/staleness_mean') for r in rows]),
        'idle_fraction': last.get('async/idle_fraction'),
        'participation': _mean([r.get('train/participation') for r in rows]),
        'lanes_vmapped': result.vmapped})
  shutil.rmtree(base, ignore_errors=True)
  every = all(s['reached'] for s in per_seed)
  mean = lambda key: _mean([s[key] for s in per_seed]) if every else None
  config = configs[0]
  return {'variant': name, 'seeds': list(seeds), 'num_rounds': config.num_rounds,
          'eval_every': config.eval_every, 'updates_per_step': _UPDATES.value // config.num_rounds,
          'concurrency': (config.asynchrony.concurrency if config.asynchrony.kind != 'none'
                          else COHORT),
          'reached': sum(s['reached'] for s in per_seed),
          'virtual_s_to_target': mean('virtual_s_to_target'),
          'steps_to_target': mean('steps_to_target'),
          'energy_j_to_target': mean('energy_j_to_target'),
          'final_accuracy': _mean([s['final_accuracy'] for s in per_seed]),
          'cpu_s': cpu, 'per_seed': per_seed}


def _mean(xs):
  xs = [x for x in xs if x is not None]
  return sum(xs) / len(xs) if xs else None


def _fmt(x, digits=3):
  return '-' if x is None else f'{x:.{digits}g}'


def write_table(results: dict, path: str) -> None:
  lines = ['# Asynchronous FL: virtual time to accuracy (hetero-hardware)', '',
           f"Target eval/accuracy {results['target']}; {results['updates']} client updates per "
           f"run, evaluated every {results['eval_updates']}; seeds {results['seeds']} (lanes of "
           'one program). Virtual seconds: the cost model\'s clock (time/virtual_s). A variant '
           'reaches the target when every seed does; times are means over seeds. '
           'Participation: the share of applied clients that were available (a server step '
           'starts available candidates first; a round samples uniformly and unavailable '
           'clients sit it out). Idle fraction: of a client\'s time from its start to the '
           'step that applied it, the share it spent finished and waiting (async only). '
           'CPU s: wall seconds of the variant on this machine (build, compiles, training, '
           'evaluations).', '',
           '| variant | in flight | updates / step | steps | reached | virtual s to target '
           '| per seed | steps to target | energy J to target | final accuracy '
           '| participation | staleness | idle fraction | CPU s |',
           '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
  for name in VARIANTS:
    r = results['variants'].get(name)
    if r is None:
      continue
    seeds = ', '.join(_fmt(s['virtual_s_to_target']) for s in r['per_seed'])
    lines.append(
        f"| {name} | {r['concurrency']} | {r['updates_per_step']} | {r['num_rounds']} | "
        f"{r['reached']}/{len(r['seeds'])} | {_fmt(r['virtual_s_to_target'])} | {seeds} | "
        f"{_fmt(r['steps_to_target'])} | {_fmt(r['energy_j_to_target'])} | "
        f"{_fmt(r['final_accuracy'])} | "
        f"{_fmt(_mean([s['participation'] for s in r['per_seed']]))} | "
        f"{_fmt(_mean([s['staleness_mean'] for s in r['per_seed']]))} | "
        f"{_fmt(_mean([s['idle_fraction'] for s in r['per_seed']]))} | {r['cpu_s']:.0f} |")
  harness.write_markdown(path, lines, results.get('note', ''))


def main(argv):
  del argv
  if _TABLE.value:
    harness.retable(_JSON.value, _NOTE.value, write_table)
    return
  results = harness.load_results(_JSON.value, {'variants': {}})
  settings = {'target': _TARGET.value, 'updates': _UPDATES.value,
              'eval_updates': _EVAL.value, 'concurrency': _CONCURRENCY.value,
              'seeds': [int(s) for s in _SEEDS.value]}
  if any(results.get(k) != v for k, v in settings.items()):
    results = {'variants': {}}   # other settings: the old variants are not comparable
  results.update(settings)
  if _NOTE.value:
    results['note'] = _NOTE.value
  for name in _VARIANTS.value:
    if name not in VARIANTS:
      raise SystemExit(f'--variants: {name!r} is not one of {VARIANTS}')
    r = run_variant(name, settings['seeds'])
    results['variants'][name] = r
    print(f"{name}: {r['reached']}/{len(r['seeds'])} reached, virtual s to target "
          f"{_fmt(r['virtual_s_to_target'])}, final accuracy {_fmt(r['final_accuracy'])}, "
          f"{r['cpu_s']:.0f} CPU s", flush=True)
    os.makedirs(os.path.dirname(_JSON.value), exist_ok=True)
    with open(_JSON.value, 'w') as f:
      json.dump(results, f, indent=2, sort_keys=True)
    write_table(results, os.path.splitext(_JSON.value)[0] + '.md')


if __name__ == '__main__':
  app.run(main)
