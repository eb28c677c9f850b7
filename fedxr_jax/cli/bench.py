r"""fedxr-bench: run a benchmark track, validate submissions, verify one by re-running it.

  fedxr-bench tracks                       # the registered tracks and their open keys
  fedxr-bench run --track=xr-default --output_dir=subs --method=my-fedprox \
      [--config.algorithm.name=fedprox --config.algorithm.fedprox.mu=0.01] [--external_data]
  fedxr-bench validate subs/*.json
  fedxr-bench hash subs/xr-default-v4__my-fedprox__0123456789ab.json
  fedxr-bench verify FILE.json --verified_dir=leaderboard/verified [--verify_seeds=N] [--rounds=K]
      [--any_processor]

`run` trains every seed of the track's newest version (--version=N for
another; an archived version is refused in one line naming the one to run),
its frozen part fixed: --config.KEY=VALUE may set only the track's open
keys, within their limits, and infrastructure keys such as chunk_size. It
writes one submission JSON named TRACK-vN__METHOD__HASH12.json (never over
an existing file) with the model's parameter counts and FLOPs.
--seeds=vmapped trains the seeds in one compiled program, sequential one
after another (the default on CPU).
`validate` checks files against the schema and the track registry (exit 2
if any is invalid). `hash` prints a file's content hash and whether it holds
(exit 2 if not).
`verify` re-runs every round of every seed (--verify_seeds=N: the first N of an
order drawn from $FEDXR_VERIFY_KEY, else today's date, over the content hash;
--rounds=K: rounds 1-K only, shown as "rounds 1-K reproduced", never as
verified), says the recorded and current software and the tolerance that
applies, compares bit for bit on the same software and device kind
(relative 1e-3 otherwise; a cpu entry on another processor model is refused in one
line unless --any_processor: its run diverges), writes the record into --verified_dir (the only
place the leaderboard reads records from), and exits 1 naming the first
differing seed, round and key.
"""
import sys

from absl import app
from absl import flags

from fedxr_jax.cli import common
from fedxr_jax.errors import FedXRError

PROG = 'fedxr-bench'
COMMANDS = ('run', 'validate', 'verify', 'hash', 'tracks')
_TRACK = flags.DEFINE_string('track', None, 'run: the track id (fedxr-bench tracks).')
_VERSION = flags.DEFINE_integer('version', None, 'run: the track version (default: newest).')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', 'submissions',
                                  'run: where the submission and its runs go.')
_METHOD = flags.DEFINE_string('method', None, 'run: the entry name (default: the '
                              'algorithm name).')
_DESCRIPTION = flags.DEFINE_string('description', '', 'run: one line about the entry.')
_EXTERNAL = flags.DEFINE_bool('external_data', False, 'run: the entry used data beyond the '
                              "track's own.")
_ROUNDS = flags.DEFINE_integer('rounds', None, 'verify: re-run rounds 1..K only (default: '
                               'every round; partial records earn no verified badge).')
_VERIFY_SEEDS = flags.DEFINE_integer('verify_seeds', None, 'verify: re-run the first N seeds '
                                     'of the key\'s order (default: every seed).')
_ANY_PROCESSOR = flags.DEFINE_bool('any_processor', False, 'verify: re-run a cpu entry on '
                                   'another processor model than the recorded one (refused '
                                   'by default: a long run diverges).')
VERIFIED_DIR_HELP = ("The maintainers' folder of verification records: fedxr-bench verify "
                     'writes its record there (none: no record), fedxr-leaderboard reads '
                     'records only from there.')
if 'verified_dir' not in flags.FLAGS:   # fedxr-leaderboard defines the same flag
  flags.DEFINE_string('verified_dir', None, VERIFIED_DIR_HELP)
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
  command = ' '.join(['fedxr-bench', 'run', f'--track={_TRACK.value}',
                      *([f'--version={_VERSION.value}'] if _VERSION.value else []),
                      *(['--external_data'] if _EXTERNAL.value else []), *overrides_args])
  method = {'name': name, **({'description': _DESCRIPTION.value} if _DESCRIPTION.value else {}),
            'command': command}
  path = run_lib.run_track(_TRACK.value, _OUTPUT_DIR.value, overrides, method=method,
                           progress=_PROGRESS.value, seeds=_SEEDS.value,
                           version=_VERSION.value, external_data=_EXTERNAL.value)
  print(f'{PROG}: wrote {path}')


def _verify(paths):
  from fedxr_jax.bench import verify as verify_lib   # pylint: disable=g-import-not-at-top
  from fedxr_jax.core import compilation_cache   # pylint: disable=g-import-not-at-top
  if len(paths) != 1:
    _fail(f'verify takes one submission file, got {len(paths)}')
  compilation_cache.enable()
  outcome = verify_lib.verify(paths[0], verified_dir=flags.FLAGS.verified_dir,
                              rounds=_ROUNDS.value, seeds=_VERIFY_SEEDS.value,
                              any_processor=_ANY_PROCESSOR.value)
  for line in outcome.lines:
    print(f'{PROG}: {line}')
  where = (f'record {outcome.record_path}' if outcome.record_path else
           'no record written (no --verified_dir)')
  problem = verify_lib.first_mismatch(outcome.comparison)
  if problem:
    print(f'{PROG}: verify FAILED: {problem}; {where}', file=sys.stderr)
    sys.exit(1)
  r = outcome.record
  scope = ('the final evaluation included' if r['covers_final'] else
           f'rounds 1-{max(r["rounds"])} only: not the final evaluation')
  print(f'{PROG}: verified {paths[0]}: {len(r["rounds"])} rounds x {len(r["seeds"])} seeds '
        f'equal within the tolerance ({scope}; max |difference| '
        f'{r["max_abs_diff"] or 0.0:.3g}); {where}')


def _hash(paths):
  from fedxr_jax.bench import files   # pylint: disable=g-import-not-at-top
  from fedxr_jax.bench import submission   # pylint: disable=g-import-not-at-top
  if not paths:
    _fail('hash needs at least one FILE')
  status = 0
  for path in paths:
    try:
      doc = files.read_json(path)
      if not isinstance(doc, dict):
        raise FedXRError(f'the top level is a JSON {type(doc).__name__}, not an object')
      actual = submission.content_hash(doc)
    except FedXRError as e:
      print(f'{PROG}: error: {path}: {e}', file=sys.stderr)
      status = 2
      continue
    recorded = doc.get(submission.HASH_FIELD)
    if recorded == actual:
      print(f'{actual}  {path} (content_sha256 holds)')
    else:
      print(f'{PROG}: error: {path}: content hash is {actual}; the file records '
            f'{str(recorded)[:64]!r}', file=sys.stderr)
      status = 2
  sys.exit(status)


def _tracks():
  from fedxr_jax.bench import tracks   # pylint: disable=g-import-not-at-top
  for t in tracks.all_tracks():
    flags_ = [t.status, f'{t.tier} tier'] + ([f'needs {" or ".join(t.requires)}']
                                             if t.requires else [])
    print(f'{t.id} v{t.version} ({", ".join(flags_)}): {t.description}')
    print(f"  seeds {list(t.seeds)}; ranks by {t.primary_metric}; open: "
          f"{', '.join(sorted(t.open))}")
    if t.note:
      print(f'  {t.note}')


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
    elif command == 'hash':
      _hash(rest)
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
