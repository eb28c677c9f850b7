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

  python benchmarks/track_rounds.py --version=3 --stretch --tracks=xr-default \
      --entries=leaderboard/submissions --json=benchmarks/results/track_rounds_v3.json

A version 3 track decays its rate over the run, so its rounds are sized by
the stretch rule (`plateau.stretched`): the track's FedAvg entry (its final
panel accuracy, seed by seed) against the same config with the schedule
stretched over `factor` x the rounds, run here.
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
_VERSION = flags.DEFINE_integer('version', 2, 'The tracks\' version.')
_STRETCH = flags.DEFINE_bool('stretch', False, 'The stretch rule (version 3): run the '
                             'schedule over factor x the rounds, against the FedAvg entry.')
_ENTRIES = flags.DEFINE_string('entries', 'leaderboard/submissions',
                               'Where the FedAvg entries are (--stretch).')

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


def stretch(track_id: str, factor: int, workdir: str, entries: str) -> dict:
  """The stretch rule on a track: its FedAvg entry against factor x the rounds."""
  import glob
  from fedxr_jax.bench import plateau
  from fedxr_jax.bench import tracks
  from fedxr_jax.training import loop
  track = tracks.get(track_id, _VERSION.value)
  paths = glob.glob(os.path.join(entries, f'{track_id}-v{track.version}__fedavg__*.json'))
  if len(paths) != 1:
    raise SystemExit(f'track_rounds: want one FedAvg entry of {track.name} in {entries}, '
                     f'found {len(paths)}')
  with open(paths[0]) as f:
    doc = json.load(f)
  seeds = [r['seed'] for r in doc['runs']]
  finals = [r['final'][track.primary_metric] for r in doc['runs']]
  base = tracks.base_config(track)
  rounds = base.num_rounds
  configs, dirs = [], []
  for seed in seeds:
    config = copy.deepcopy(base)
    config.num_rounds, config.seed = factor * rounds, seed   # the schedule's horizon too
    configs.append(config)
    dirs.append(os.path.join(workdir, f'{track_id}-v{track.version}-stretch{factor}',
                             f'seed{seed}'))
  start = time.time()
  results = loop.run_lanes(configs, dirs, progress=False, vmap=False)
  longer = [[row for row in r.rows if track.primary_metric in row][-1][track.primary_metric]
            for r in results]
  verdict = plateau.stretched(finals, longer, rounds, factor * rounds)
  return {'track': track_id, 'version': track.version, 'seeds': seeds, 'rounds': rounds,
          'stretched_rounds': factor * rounds, 'finals': finals, 'stretched': longer,
          'verdict': verdict.describe(), 'reached': verdict.reached,
          'entry': os.path.basename(paths[0]), 'wall_s': time.time() - start}


def write_stretch_table(results: dict, path: str) -> None:
  lines = ['# Rounds of each version 3 track by the stretch rule', '',
           f"{results['machine']}. The track's FedAvg entry (final panel accuracy per seed) "
           'against its config with the cosine schedule stretched over more rounds '
           '(`fedxr_jax.bench.plateau.stretched`: enough when the mean relative gain over '
           'the seeds is < 2%).', '',
           '| track | seeds | rounds | final (entry) | stretched rounds | final (stretched) '
           '| verdict | wall s |', '|---|---|---|---|---|---|---|---|']
  for r in sorted(results['tracks'].values(), key=lambda r: r['track']):
    fmt = lambda xs: ' / '.join(f'{x:.3f}' for x in xs)
    lines.append(f"| {r['track']} | {','.join(map(str, r['seeds']))} | {r['rounds']} | "
                 f"{fmt(r['finals'])} | {r['stretched_rounds']} | {fmt(r['stretched'])} | "
                 f"{r['verdict']} | {r['wall_s']:.0f} |")
  harness.write_markdown(path, lines, results.get('note'))


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
    harness.retable(_JSON.value, _NOTE.value,
                    write_stretch_table if _STRETCH.value else write_table)
    return
  results = harness.load_results(_JSON.value, {'tracks': {}})
  seeds = [int(s) for s in _SEEDS.value]
  table = write_stretch_table if _STRETCH.value else write_table
  for track_id in _TRACKS.value:
    measured = (stretch(track_id, _FACTOR.value, _WORKDIR.value, _ENTRIES.value)
                if _STRETCH.value else
                size(track_id, _FACTOR.value, seeds, _WORKDIR.value, _FROM_RUNS.value))
    results['tracks'][track_id] = {
        **measured, 'command': 'python benchmarks/track_rounds.py ' + ' '.join(sys.argv[1:])}
    results.update(
        machine=f'{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})',
        note=_NOTE.value)
    with open(_JSON.value, 'w') as f:   # after each track: a kill keeps the finished ones
      json.dump(results, f, indent=2, sort_keys=True)
    table(results, md)
  print(open(md).read())


if __name__ == '__main__':
  app.run(main)
