r"""A 5-value learning-rate sweep: separate builds against one compile, sequential or vmapped.

  python benchmarks/sweep.py                        # every variant, --repeats=3
  python benchmarks/sweep.py --variants=vmapped --repeats=1 --rounds=4
  python benchmarks/sweep.py --table                # rewrite the markdown only

The sweep: client_optimizer.learning_rate over --values on fedxr_jax/configs/test.py
(24 users, cohort 8, 2 local steps), --rounds rounds, evaluated and checkpointed at
the last round only. Variants, each (variant, repeat) in a fresh process with
the persistent compilation cache off, round-robin over the repeats:
  separate    one fedxr-train run per value (`training.loop.run`): five builds,
              five compiles of the round (what a shell loop over fedxr-train does)
  sequential  `training.sweep.run(vmap=False)`: one build, the round compiled
              once, the values one after another through the training loop
  vmapped     `training.sweep.run(vmap=True)`: one build, the round vmapped over
              the five values compiled once, all trained in one call per round
Per run: wall time from the first build to the last summary (interpreter start
and imports excluded), XLA compiles (all of them: the round, init, evaluation,
small eager ops) and their seconds, compiles of the round itself, and the
training calls' seconds (compute: the vmapped call counts once for all
lanes). Medians over the repeats; every variant's final eval/accuracy per
value is kept to show they are the same runs. Results merge into --json
(benchmarks/results/sweep.json) and its markdown (.md).
"""
import json
import os
import sys
import tempfile
import time

from absl import app
from absl import flags

import harness

_VARIANTS = flags.DEFINE_list('variants', ['separate', 'sequential', 'vmapped'],
                              'Variants to run.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Repeats of each variant (median).')
_ROUNDS = flags.DEFINE_integer('rounds', 8, 'Rounds per value.')
_VALUES = flags.DEFINE_list('values', ['0.01', '0.02', '0.05', '0.1', '0.2'],
                            'client_optimizer.learning_rate values.')
_JSON = flags.DEFINE_string('json', 'benchmarks/results/sweep.json', 'Results file.')
_TABLE = flags.DEFINE_bool('table', False, 'Only rewrite the markdown from --json.')
_CHILD = flags.DEFINE_string('child', '', 'Internal: run one variant, print its JSON.')
_NOTE = flags.DEFINE_string('note', '', 'A line for the markdown (e.g. the machine load).')

KEY = 'client_optimizer.learning_rate'


def _config(rounds: int):
  from fedxr_jax.configs import test
  config = test.get_config()
  config.num_rounds = rounds
  config.eval_every = rounds
  config.checkpoint_every = rounds
  return config


def child(variant: str, values, rounds: int) -> dict:
  """One variant in this process: its wall time, compiles and final metrics."""
  import jax
  from fedxr_jax.training import loop
  from fedxr_jax.training import metrics_log
  from fedxr_jax.training import sweep
  from fedxr_jax.core import compilation_cache
  seconds = []

  def on_duration(event, duration, **kwargs):
    del kwargs
    if event == '/jax/core/compile/backend_compile_duration':
      seconds.append(duration)

  jax.monitoring.register_event_duration_secs_listener(on_duration)
  compilation_cache.listen()
  config = _config(rounds)
  values = [float(v) for v in values]
  with tempfile.TemporaryDirectory() as root:
    t0 = time.perf_counter()
    if variant == 'separate':
      for v in values:
        c = _config(rounds)
        c.client_optimizer.learning_rate = v
        loop.run(c, os.path.join(root, f'{KEY}={v}_seed={c.seed}'), progress=False)
    else:
      sweep.run(config, root, [sweep.Spec(KEY, tuple(values))], vmap=variant == 'vmapped')
    wall = time.perf_counter() - t0
    final, compute, lane_rows = {}, 0.0, {}
    for v in values:
      found, _ = metrics_log.read(os.path.join(root, f'{KEY}={v}_seed={config.seed}',
                                               'metrics.jsonl'))
      rows = [found[r] for r in sorted(found)]
      final[str(v)] = rows[-1].get('eval/accuracy')
      lane_rows[str(v)] = [metrics_log.comparable(r) for r in rows]
      call_s = sum(r['time/round_s'] for r in rows)
      compute = max(compute, call_s) if variant == 'vmapped' else compute + call_s
  counts = compilation_cache.compile_counts()
  return {'variant': variant, 'wall_s': wall, 'xla_compiles': counts['xla'],
          'round_compiles': counts['round_requests'], 'compile_s': sum(seconds),
          'train_calls_s': compute, 'final_eval_accuracy': final,
          'devices': str(jax.devices()[0].platform), 'rounds': rounds, 'rows': lane_rows}


def write_table(results: dict, path: str) -> None:
  runs = results['runs']
  lines = [
      '# Learning-rate sweep: compiles and wall time',
      '',
      f"`{results['command']}` — {len(results['values'])} values of {KEY} "
      f"({', '.join(results['values'])}) on `configs/test.py`, {results['rounds']} rounds "
      f"each, {results['machine']}. Medians of {results['repeats']} repeats, each a fresh "
      'process without the persistent compilation cache.',
      '',
      '| variant | round compiles | XLA compiles | compile s | training calls s | wall s | '
      'wall vs separate |',
      '|---|---|---|---|---|---|---|']
  base = harness.median([r['wall_s'] for r in runs.get('separate', [])]) if runs.get('separate') else None
  for variant in ('separate', 'sequential', 'vmapped'):
    rs = runs.get(variant)
    if not rs:
      continue
    m = {k: harness.median([r[k] for r in rs]) for k in ('round_compiles', 'xla_compiles', 'compile_s',
                                                  'train_calls_s', 'wall_s')}
    ratio = f"{m['wall_s'] / base:.2f}x" if base else '-'
    lines.append(f"| {variant} | {m['round_compiles']:g} | {m['xla_compiles']:g} | "
                 f"{m['compile_s']:.1f} | {m['train_calls_s']:.2f} | {m['wall_s']:.1f} | "
                 f'{ratio} |')
  lines += ['', 'Final eval/accuracy per value (first repeat):', '',
            '| variant | ' + ' | '.join(results['values']) + ' |',
            '|---|' + '---|' * len(results['values'])]
  for variant in ('separate', 'sequential', 'vmapped'):
    if runs.get(variant):
      acc = runs[variant][0]['final_eval_accuracy']
      lines.append(f'| {variant} | ' + ' | '.join(
          f"{acc[str(float(v))]:.4f}" for v in results['values']) + ' |')
  lines += ['', 'Against the separate runs (every metrics.jsonl value but time/*, first repeat):', '']
  for variant, gap in results.get('against_separate', {}).items():
    lines.append(f'- {variant}: {harness.describe_gap(gap)}')
  harness.write_markdown(path, lines, results.get('note'))


def main(argv):
  del argv
  if _CHILD.value:
    print(harness.RESULT + json.dumps(child(_CHILD.value, _VALUES.value, _ROUNDS.value)))
    return
  md = os.path.splitext(_JSON.value)[0] + '.md'
  if _TABLE.value:
    harness.retable(_JSON.value, _NOTE.value, write_table)
    return
  import platform
  command = lambda variant: [sys.executable, os.path.abspath(__file__), f'--child={variant}',
                             f'--rounds={_ROUNDS.value}', f"--values={','.join(_VALUES.value)}"]
  runs = harness.interleaved(
      _VARIANTS.value, _REPEATS.value, command, _JSON.value + '.partial',
      lambda r: (f"wall {r['wall_s']:.1f} s, {r['round_compiles']} round compiles, "
                 f"{r['xla_compiles']} XLA compiles"))
  first = {v: rs[0].pop('rows') for v, rs in runs.items()}
  for rs in runs.values():
    for r in rs:
      r.pop('rows', None)
  against = {v: harness.rows_gap(first['separate'], first[v]) for v in first
             if v != 'separate' and 'separate' in first}
  results = {'command': 'python benchmarks/sweep.py ' + ' '.join(sys.argv[1:]),
             'against_separate': against,
             'values': _VALUES.value, 'rounds': _ROUNDS.value, 'repeats': _REPEATS.value,
             'machine': f'{platform.machine()} CPU, {os.cpu_count()} cores',
             'note': _NOTE.value,
             'runs': runs}
  os.makedirs(os.path.dirname(_JSON.value) or '.', exist_ok=True)
  with open(_JSON.value, 'w') as f:
    json.dump(results, f, indent=2, sort_keys=True)
  write_table(results, md)
  print(open(md).read())


if __name__ == '__main__':
  app.run(main)
