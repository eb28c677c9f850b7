r"""A benchmark track's seeds one after another against all of them in one compiled program.

  python benchmarks/track_seeds.py                          # xr-default, --repeats=2
  python benchmarks/track_seeds.py --track=d2d --repeats=3
  python benchmarks/track_seeds.py --table                  # rewrite the markdown only

Each (variant, repeat) is `fedxr_jax.bench.run.run_track` in a fresh process
without the persistent compilation cache, round-robin over the repeats (the
machine is shared: the variants see the same load):
  sequential  --seeds=sequential: one fedxr-train run per seed (each builds and
              compiles its round)
  vmapped     --seeds=vmapped: one build per seed, the round vmapped over a seed
              axis compiled once, every seed trained in one call per round
Per run: the submission's wall and compile seconds (from the first build to
the written file). Medians over the repeats, and how far the two variants'
curves are apart (vmapping changes float rounding, not the run). Results
merge into --json (benchmarks/results/track_seeds.json) and its markdown.
"""
import json
import os
import sys
import tempfile

from absl import app
from absl import flags

import harness

_TRACK = flags.DEFINE_string('track', 'xr-default', 'The track.')
_VARIANTS = flags.DEFINE_list('variants', ['sequential', 'vmapped'], 'Variants to run.')
_REPEATS = flags.DEFINE_integer('repeats', 2, 'Repeats of each variant (median).')
_JSON = flags.DEFINE_string('json', 'benchmarks/results/track_seeds.json', 'Results file.')
_TABLE = flags.DEFINE_bool('table', False, 'Only rewrite the markdown from --json.')
_CHILD = flags.DEFINE_string('child', '', 'Internal: run one variant, print its JSON.')
_NOTE = flags.DEFINE_string('note', '', 'A line for the markdown (e.g. the machine load).')



def child(track: str, variant: str) -> dict:
  from fedxr_jax.bench import run as run_lib
  with tempfile.TemporaryDirectory() as root:
    path = run_lib.run_track(track, root, {}, method={'name': 'fedavg'}, seeds=variant)
    with open(path) as f:
      doc = json.load(f)
  return {'variant': variant, 'ran': doc['timing'].get('seeds', 'sequential'),
          'wall_s': doc['timing']['wall_s'], 'compile_s': doc['timing']['compile_s'],
          'seeds': doc['seeds'], 'device': doc['hardware'].get('device_kind'),
          'curves': {str(r['seed']): r['curve'] for r in doc['runs']},
          'primary': {str(r['seed']): r['final'].get('eval/accuracy') for r in doc['runs']}}


def write_table(results: dict, path: str) -> None:
  runs = results['runs']
  lines = [f"# {results['track']}: seeds one after another vs in one compiled program", '',
           f"`{results['command']}`: every seed of track {results['track']} "
           f"({results['seeds']}), FedAvg, {results['machine']}. Medians of "
           f"{results['repeats']} repeats, each a fresh process without the persistent "
           'compilation cache, the variants interleaved.', '',
           '| variant | ran | compile s | wall s | wall vs sequential |', '|---|---|---|---|---|']
  base = harness.median([r['wall_s'] for r in runs['sequential']]) if runs.get('sequential') else None
  for variant in ('sequential', 'vmapped'):
    rs = runs.get(variant)
    if rs:
      wall, comp = harness.median([r['wall_s'] for r in rs]), harness.median([r['compile_s'] or 0 for r in rs])
      ratio = f'{base / wall:.2f}x faster' if base and variant != 'sequential' else '-'
      lines.append(f"| {variant} | {rs[0]['ran']} | {comp:.1f} | {wall:.1f} | {ratio} |")
  gap = results.get('gap')
  if gap:
    lines += ['', 'Curves of the two variants (first repeat, every logged value): '
              f'{harness.describe_gap(gap)}.']
  harness.write_markdown(path, lines, results.get('note'))


def main(argv):
  del argv
  if _CHILD.value:
    print(harness.RESULT + json.dumps(child(_TRACK.value, _CHILD.value)))
    return
  md = os.path.splitext(_JSON.value)[0] + '.md'
  if _TABLE.value:
    harness.retable(_JSON.value, _NOTE.value, write_table)
    return
  import platform
  command = lambda variant: [sys.executable, os.path.abspath(__file__), f'--child={variant}',
                             f'--track={_TRACK.value}']
  runs = harness.interleaved(_VARIANTS.value, _REPEATS.value, command,
                             _JSON.value + '.partial', lambda r: f"wall {r['wall_s']:.1f} s")
  first = {v: rs[0] for v, rs in runs.items()}
  results = {
      'track': _TRACK.value, 'repeats': _REPEATS.value,
      'seeds': next(iter(first.values()))['seeds'],
      'command': 'python benchmarks/track_seeds.py ' + ' '.join(sys.argv[1:]),
      'machine': f'{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), '
                 f"{next(iter(first.values()))['device']}",
      'gap': (harness.rows_gap(first['sequential']['curves'], first['vmapped']['curves'])
              if len(first) == 2 else None),
      'runs': {v: [{k: r[k] for k in r if k != 'curves'} for r in rs] for v, rs in runs.items()},
      'note': _NOTE.value}
  with open(_JSON.value, 'w') as f:
    json.dump(results, f, indent=2, sort_keys=True)
  os.remove(_JSON.value + '.partial')
  write_table(results, md)
  print(open(md).read())


if __name__ == '__main__':
  app.run(main)
