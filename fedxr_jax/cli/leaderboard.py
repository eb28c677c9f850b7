r"""fedxr-leaderboard: build the static leaderboard site from a folder of submissions.

  fedxr-leaderboard submissions/ --verified_dir=verified/ --out=site/
  fedxr-leaderboard submissions/ --out=site/ --strict   # exit 1 if any file is invalid

Validates every *.json in the folder against the registered tracks
(`--tracks`: a module with a TRACKS list, default fedxr_jax.bench.tracks),
lists the invalid ones and duplicates on site/invalid.html, reads
verification records from --verified_dir only (the maintainers' folder;
records beside the submissions are ignored), unranks entries whose re-run
differs, ranks the rest per track (overlapping 95% intervals share a rank),
and writes site/index.html, a page per track and per entry, learning curves,
Pareto plots, the entries and a how-to-submit page. Open site/index.html in
any browser; it needs no network and no scripts.
"""
import importlib
import os
import sys

from absl import app
from absl import flags

from fedxr_jax.cli import common
from fedxr_jax.errors import FedXRError

PROG = 'fedxr-leaderboard'
_OUT = flags.DEFINE_string('out', 'site', 'Folder to write the site into.')
_TRACKS = flags.DEFINE_string('tracks', 'fedxr_jax.bench.tracks',
                              'Module whose TRACKS lists the registered tracks.')
_STRICT = flags.DEFINE_bool('strict', False, 'Exit 1 when any submission is invalid.')
if 'verified_dir' not in flags.FLAGS:   # fedxr-bench defines the same flag
  flags.DEFINE_string('verified_dir', None, "The maintainers' folder of verification "
                      'records: fedxr-bench verify writes its record there, '
                      'fedxr-leaderboard reads records only from there.')


def _fail(message: str, code: int = 2):
  print(f'{PROG}: error: {message}', file=sys.stderr)
  sys.exit(code)


def load_tracks(module_name: str):
  try:
    module = importlib.import_module(module_name)
  except ImportError as e:
    raise FedXRError(f'cannot import the track registry {module_name!r}: {e}') from None
  if not hasattr(module, 'TRACKS'):
    raise FedXRError(f'{module_name} has no TRACKS')
  return module.TRACKS


def main(argv):
  if len(argv) != 2:
    _fail(f'expected one SUBMISSIONS_DIR, got {argv[1:]} '
          '(usage: fedxr-leaderboard SUBMISSIONS_DIR --out=SITE_DIR)')
  if not os.path.isdir(argv[1]):
    _fail(f'{argv[1]!r} is not a folder')
  try:
    from fedxr_jax.bench import leaderboard   # after flags: keeps --help fast
    board = leaderboard.build_site(argv[1], _OUT.value, load_tracks(_TRACKS.value),
                                   verified_dir=flags.FLAGS.verified_dir)
  except FedXRError as e:
    _fail(str(e))
  except OSError as e:
    _fail(f'cannot write the site to {_OUT.value!r}: {e.strerror or e}')
  ranked = sum(len(v) for v in board.entries.values())
  unranked = sum(len(v) for v in board.unranked.values())
  print(f'{PROG}: {ranked} entries ranked in {len(board.tracks)} tracks, '
        f'{unranked} unranked (re-run differs), {len(board.invalid)} invalid; '
        f'open {_OUT.value.rstrip("/")}/index.html')
  for bad in board.invalid:
    print(f'{PROG}: invalid: {bad.file}: {bad.reason}', file=sys.stderr)
  if _STRICT.value and board.invalid:
    sys.exit(1)


def entry():
  common.entry(PROG, __doc__, __name__, main)


if __name__ == '__main__':
  entry()
