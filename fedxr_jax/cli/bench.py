r"""fedxr-bench: run a benchmark track, validate submissions, verify one by re-running it.

  fedxr-bench run --track=xr-default --output_dir=subs [--method=fedadam] \
      [--config.algorithm.name=fedadam --config.server_optimizer.learning_rate=0.01]
  fedxr-bench validate subs/*.json
  fedxr-bench verify subs/xr-default-v1__fedadam.json [--rounds=4]
  fedxr-bench tracks                       # the registered tracks and their open keys

`run` trains every seed of the track (its frozen part fixed; --config.KEY=
VALUE may set only the track's open keys, within their limits, and
infrastructure keys such as chunk_size) and writes one submission JSON;
--seeds=vmapped trains the seeds in one compiled program (a vmapped seed
axis; the default on accelerators where they compile the same round and fit),
--seeds=sequential one after another (the default on CPU).
`validate` checks files against the schema and the track registry (exit 2
if any is invalid). `verify` re-runs the first --rounds rounds of the first
seed and compares them with the submitted curve (bit for bit on the same
software and device kind), writes NAME.verified.json, and exits 1 naming the
first differing round and key.
"""
import os
import sys

from absl import app
from absl import flags

from fedxr_jax.cli import common
from fedxr_jax.errors import FedXRError

PROG = 'fedxr-bench'
COMMANDS = ('run', 'validate', 'verify', 'tracks')
_TRACK = flags.DEFINE_string('track', None, 'run: the track id (fedxr-bench tracks).')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', 'submissions',
                                  'run: where the submission and its runs go.')
_METHOD = flags.DEFINE_string('method', None, 'run: the entry name (default: the '
                              'algorithm name).')
_DESCRIPTION = flags.DEFINE_string('description', '', 'run: one line about the entry.')
_ROUNDS = flags.DEFINE_integer('rounds', 2, 'verify: rounds to re-run.')
_PROGRESS = flags.DEFINE_bool('progress', False, 'run: show progress bars.')
_SEEDS = flags.DEFINE_enum('seeds', 'auto', ['auto', 'vmapped', 'sequential'],
                           'run: the seeds in one compiled program (vmapped) or one after '
                           'another; auto: sequential on CPU, else vmapped where they compile '
                           'one program and fit.')


def _fail(message: str, code: int = 2):
  print(f'{PROG}: error: {message}', file=sys.stderr)
  sys.exit(code)


def _run(overrides_args):
  from fedxr_jax.bench import run as run_lib   # pylint: disable=g-import-not-at-top
  from fedxr_jax.core import compilation_cache   # pylint: disable=g-import-not-at-top
  if not _TRACK.value:
    _fail('run needs --track (see fedxr-bench tracks)')
  compilation_cache.enable()
  overrides = run_lib.parse_overrides(overrides_args)
  name = _METHOD.value or str(overrides.get('algorithm.name', 'fedavg'))
  method = {'name': name, **({'description': _DESCRIPTION.value} if _DESCRIPTION.value else {}),
            'command': ' '.join(['fedxr-bench', 'run', f'--track={_TRACK.value}',
                                 *overrides_args])}
  path = run_lib.run_track(_TRACK.value, _OUTPUT_DIR.value, overrides, method=method,
                           progress=_PROGRESS.value, seeds=_SEEDS.value)
  print(f'{PROG}: wrote {path}')


def _verify(paths):
  from fedxr_jax.bench import run as run_lib   # pylint: disable=g-import-not-at-top
  from fedxr_jax.core import compilation_cache   # pylint: disable=g-import-not-at-top
  if len(paths) != 1:
    _fail(f'verify takes one submission file, got {len(paths)}')
  compilation_cache.enable()
  comparison = run_lib.verify(paths[0], _ROUNDS.value)
  problem = run_lib.first_mismatch(comparison)
  if problem:
    print(f'{PROG}: verify FAILED: {problem}', file=sys.stderr)
    sys.exit(1)
  print(f'{PROG}: verified {paths[0]}: {len(comparison.rounds)} rounds x '
        f'{len(comparison.metrics)} metrics of seed {comparison.seeds[0]} equal '
        f'(max |difference| {comparison.max_abs_diff or 0.0:.3g})')


def _tracks():
  from fedxr_jax.bench import tracks   # pylint: disable=g-import-not-at-top
  for t in tracks.TRACKS:
    needs = f" (needs {' or '.join(t.requires)})" if t.requires else ''
    print(f'{t.id} v{t.version}{needs}: {t.description}')
    print(f"  seeds {list(t.seeds)}; ranks by {t.primary_metric}; open: "
          f"{', '.join(sorted(t.open))}")


def main(argv):
  command, rest = argv[1], argv[2:]
  common.quiet_logs()
  try:
    if command == 'run':
      if [a for a in rest if not a.startswith('--config.')]:
        _fail(f'run takes only flags, got {rest}')
      _run(rest)
    elif command == 'validate':
      from fedxr_jax.bench import tracks, validate   # pylint: disable=g-import-not-at-top
      if not rest:
        _fail('validate needs at least one FILE')
      sys.exit(validate.main(rest, tracks.all_tracks(), prog=PROG))
    elif command == 'verify':
      _verify(rest)
    else:
      _tracks()
  except FedXRError as e:
    _fail(str(e))
  except OSError as e:
    _fail(f'{e.filename or ""}: {e.strerror or e}')


def entry():
  argv = sys.argv
  if len(argv) > 1 and argv[1] in ('--help', '-h', 'help'):
    print(__doc__)
    sys.exit(0)
  if len(argv) < 2 or argv[1] not in COMMANDS:
    _fail(f'usage: {PROG} {{{"|".join(COMMANDS)}}} ... (fedxr-bench --help)')
  overrides = [a for a in argv[2:] if a.startswith('--config.')]
  try:
    app.define_help_flags()
    remaining = flags.FLAGS([argv[0]] + [a for a in argv[2:] if not a.startswith('--config.')])
  except flags.Error as e:
    _fail(str(e))
  app.run(main, flags_parser=lambda _: [remaining[0], argv[1]] + remaining[1:] + overrides)


if __name__ == '__main__':
  entry()
