r"""How many rounds each v2 track needs for its FedAvg curve to plateau.

  python benchmarks/track_rounds.py --tracks=xr-default,d2d --factor=3 --seeds=0
  python benchmarks/track_rounds.py --table          # rewrite the markdown only

For each track: its base config (FedAvg, the track's defaults) run for
`factor` x the track's rounds, evaluated as often as the track evaluates,
on the given seeds (each a lane of the one training loop, resumable from
--workdir). The plateau rule is the tracks' (`fedxr_jax.bench.plateau`: the
mean over the last 20% of rounds < 0.5% above the mean over the 20% before)
on the mean curve over the seeds, computed from the saved curve:
  at its rounds   the verdict for the track as defined today;
  first plateau   the fewest evaluated rounds at which a run that long would
                  have plateaued (`plateau.first_plateau`), and what the
                  curve still gains from there to the longest run;
  at the longest  the verdict for a track of `factor` x its rounds;
  eval-to-eval    the mean relative change between consecutive evaluations
                  over the last 20% of the longest run: the noise the rule's
                  0.5% bar is read against.
Results merge into --json (benchmarks/results/track_rounds.json) and its
markdown. With --from_runs the FedAvg entries' runs are continued: their
first rounds are the entries' own.
"""
import copy
import json
import os
import platform
import shutil
import sys
import time

from absl import app
from absl import flags

import harness

_TRACKS = flags.DEFINE_list('tracks', ['xr-default'], 'v2 tracks to size.')
_FACTOR = flags.DEFINE_integer('factor', 3, "Run this many times the track's rounds.")
_SEEDS = flags.DEFINE_list('seeds', ['0'], 'Seeds (their mean curve is checked).')
_WORKDIR = flags.DEFINE_string('workdir', '/tmp/fedxr_track_rounds',
                               'Run directories (a rerun resumes from them).')
_FROM_RUNS = flags.DEFINE_string(
    'from_runs', '', "Continue the FedAvg entries' own runs (OUTPUT_DIR/runs of "
    "`fedxr-bench run`, e.g. leaderboard/runs/runs): each seed's run directory is copied "
    'into --workdir and trained on from its last round.')
_JSON = flags.DEFINE_string('json', 'benchmarks/results/track_rounds.json', 'Results file.')
_TABLE = flags.DEFINE_bool('table', False, 'Only rewrite the markdown from --json.')
_NOTE = flags.DEFINE_string('note', '', 'A line for the markdown (e.g. the machine load).')

METRIC = 'eval/accuracy'


def size(track_id: str, factor: int, seeds: list, workdir: str, from_runs: str) -> dict:
  from fedxr_jax.bench import plateau
  from fedxr_jax.bench import run as run_lib
  from fedxr_jax.bench import tracks
  from fedxr_jax.training import loop
  track = tracks.get(track_id, 2)
  base = tracks.base_config(track)
  rounds = base.num_rounds
  configs, dirs = [], []
  for seed in seeds:
    config = copy.deepcopy(base)
    dirs.append(os.path.join(workdir, f'{track_id}-x{factor}', f'seed{seed}'))
    if from_runs:   # the entry's run as recorded (settings added since are left out)
      entry = os.path.join(from_runs, f'{track_id}-v2', 'fedavg', f'seed{seed}')
      if not os.path.isfile(os.path.join(entry, 'config.json')):
        raise SystemExit(f'track_rounds: --from_runs has no run {entry}')
      if not os.path.exists(dirs[-1]):
        shutil.copytree(entry, dirs[-1])
      with open(os.path.join(entry, 'config.json')) as f:
        config = run_lib.rerun_config({'track': {'id': track_id, 'version': 2},
                                       'config': json.load(f)})
    config.num_rounds = factor * rounds
    config.seed = seed
    configs.append(config)
  start = time.time()
  loop.run_lanes(configs, dirs, progress=False, vmap=False)
  curves = [[row for row in run_lib._rows(d) if METRIC in row] for d in dirs]   # pylint: disable=protected-access
  points = plateau.mean_curve(curves, METRIC)
  return {'track': track_id, 'rounds': rounds, 'longest': factor * rounds, 'seeds': seeds,
          'eval_every': base.eval_every, 'curve': points,
          'wall_s': time.time() - start}


def write_table(results: dict, path: str) -> None:
  from fedxr_jax.bench import plateau
  lines = ['# Rounds to the plateau of each v2 track\'s FedAvg curve', '',
           f"{results['machine']}; commands: "
           + ', '.join(sorted({f"`{r['command']}`" for r in results['tracks'].values()}))
           + ". FedAvg with each track's "
           'defaults, the plateau rule of the tracks (< 0.5% gain of eval/accuracy over the '
           'last 20% of rounds against the 20% before, window means) on the mean curve over '
           'the seeds, every verdict computed from the saved curve.', '',
           '| track | seeds | rounds today | verdict at them | first plateau (rounds) | '
           'accuracy gain from there to the longest run | verdict at the longest run | '
           'accuracy at today\'s rounds / longest | eval-to-eval change, last 20% | wall s |',
           '|---|---|---|---|---|---|---|---|---|---|']
  for r in sorted(results['tracks'].values(), key=lambda r: r['track']):
    points = [(int(k), v) for k, v in r['curve']]
    value = dict(points)
    first = plateau.first_plateau(points)
    cells = []
    for end in (r['rounds'], r['longest']):
      v = plateau.check([p for p in points if p[0] <= end], end)
      cells.append('-' if v.reached is None else
                   f"{'plateaued' if v.reached else 'improving'} ({100 * v.gain:+.1f}%)")
    after = ('-' if first is None else
             f"{100 * (value[r['longest']] - value[first]) / abs(value[first]):+.1f}%")
    tail = [v for _, v in points[-max(1, len(points) // 5) - 1:]]
    jitter = sum(abs(b - a) / abs(a) for a, b in zip(tail, tail[1:])) / max(1, len(tail) - 1)
    lines.append(f"| {r['track']} | {','.join(map(str, r['seeds']))} | {r['rounds']} | "
                 f"{cells[0]} | {first if first is not None else '> ' + str(r['longest'])} | "
                 f"{after} | {cells[1]} | {value.get(r['rounds'], float('nan')):.3f} / "
                 f"{value[r['longest']]:.3f} | {100 * jitter:.1f}% | {r['wall_s']:.0f} |")
  harness.write_markdown(path, lines, results.get('note'))


def main(argv):
  del argv
  md = os.path.splitext(_JSON.value)[0] + '.md'
  if _TABLE.value:
    harness.retable(_JSON.value, _NOTE.value, write_table)
    return
  results = harness.load_results(_JSON.value, {'tracks': {}})
  seeds = [int(s) for s in _SEEDS.value]
  for track_id in _TRACKS.value:
    results['tracks'][track_id] = {
        **size(track_id, _FACTOR.value, seeds, _WORKDIR.value, _FROM_RUNS.value),
        'command': 'python benchmarks/track_rounds.py ' + ' '.join(sys.argv[1:])}
    results.update(
        machine=f'{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})',
        note=_NOTE.value)
    with open(_JSON.value, 'w') as f:   # after each track: a kill keeps the finished ones
      json.dump(results, f, indent=2, sort_keys=True)
    write_table(results, md)
  print(open(md).read())


if __name__ == '__main__':
  app.run(main)
