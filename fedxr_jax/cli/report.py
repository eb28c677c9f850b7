r"""fedxr-report: the Table 6 metrics of one run, or of several side by side.

  fedxr-report runs/a                       # writes runs/a/report/
  fedxr-report runs/a runs/b --out=cmp      # both runs side by side in cmp/

Writes report.md, one self-contained report.html (plots embedded, works
offline) and the PNGs: curves, per-device-class bars, Table 7 trade-offs.
"""
import os
import sys

from absl import app
from absl import flags

from fedxr_jax.cli import common
from fedxr_jax.errors import FedXRError

PROGRAM = 'fedxr-report'
_OUT = flags.DEFINE_string(
    'out', None, 'Output folder (default: WORKDIR/report for one run, ./report for '
    'several).')


def main(argv):
  from fedxr_jax.metrics import report   # after flags: keeps --help fast
  workdirs = argv[1:]
  if not workdirs:
    common.fail(PROGRAM, 'give at least one WORKDIR (a fedxr-train --workdir)')
  out = _OUT.value or (os.path.join(workdirs[0], 'report') if len(workdirs) == 1
                       else 'report')
  try:
    written = report.write_report(workdirs, out)
  except FedXRError as e:
    common.fail(PROGRAM, str(e))
  except OSError as e:
    common.fail(PROGRAM, f'cannot write {e.filename or out}: {e.strerror}')
  for note in written.notes:
    print(f'{PROGRAM}: warning: {note}', file=sys.stderr)
  print(f'markdown: {written.markdown}')
  print(f'html: {written.html}')
  for caption, path in written.images.items():
    print(f'{caption}: {path}')


def entry():
  common.entry(PROGRAM, __doc__, __name__, main)


if __name__ == '__main__':
  entry()
