"""The leaderboard site in a real headless browser (Debian's chromium).

Opens site/index.html from disk with no network, reads the DOM the browser
built, checks each track's ranked rows are in the known order and no script
element exists, and saves screenshots (to pytest's tmp_path). Skipped, with
the reason, where chromium is not installed (.ci/run installs it with apt).
"""
import os
import shutil
import signal
import subprocess

import pytest

from bench_helpers import ACCURACY_ORDER, LATENCY_ORDER, SCRIPT, TRACKS, board_rows, make_submissions
from fedxr_jax.bench import leaderboard

FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         '--hide-scrollbars')
TIMEOUT_S = 90


def _find_chromium():
  for name in (os.environ.get('FEDXR_CHROMIUM', ''), 'chromium', '/usr/bin/chromium',
               'chromium-browser', 'google-chrome'):
    path = name and shutil.which(name)
    if path:
      return path
  return None


CHROMIUM = _find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason='chromium not found (apt-get install -y chromium, or set '
    'FEDXR_CHROMIUM): the leaderboard browser test needs a real browser')


def _chromium(tmp_path, *args) -> str:
  """stdout of one headless chromium run with a new empty profile."""
  profile = tmp_path / f'profile-{len(list(tmp_path.glob("profile-*")))}'
  profile.mkdir()
  proc = subprocess.Popen([CHROMIUM, *FLAGS, f'--user-data-dir={profile}', *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True)   # its own group: kill helpers too
  try:
    out, err = proc.communicate(timeout=TIMEOUT_S)
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    pytest.fail(f'chromium did not finish within {TIMEOUT_S} s: {args}')
  assert proc.returncode == 0, err[-2000:]
  return out


def test_site_renders_ranked_rows_in_chromium(tmp_path):
  make_submissions(tmp_path / 'subs')
  leaderboard.build_site(str(tmp_path / 'subs'), str(tmp_path / 'site'), TRACKS)
  index = (tmp_path / 'site' / 'index.html').as_uri()

  dom = _chromium(tmp_path, '--dump-dom', index)
  assert board_rows(dom) == {'xr-accuracy v1': ACCURACY_ORDER,
                             'xr-latency v2': LATENCY_ORDER}
  assert '<script' not in dom.lower()                 # the method name stayed text
  assert SCRIPT.replace('<', '&lt;').replace('>', '&gt;') in dom
  assert '3 invalid files' in dom

  shot = tmp_path / 'index.png'
  _chromium(tmp_path, f'--screenshot={shot}', '--window-size=1280,1400', index)
  data = shot.read_bytes()
  assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 10_000
