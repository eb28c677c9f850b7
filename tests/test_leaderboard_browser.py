"""The leaderboard site in a real headless browser (Debian's chromium).

Opens site/index.html, a track page and the how-to-submit page from disk
with no network, reads the DOM the browser built, checks each track's ranked
rows are in the known order (statistical ties sharing a rank), the verified
badge only where a maintainer's record covers the final evaluation, the
forged-looking entry unranked, and no script element anywhere, and saves
screenshots (to pytest's tmp_path; FEDXR_SCREENSHOTS=DIR keeps copies).
Skipped, with the reason, where chromium is not installed (.ci/run installs
it with apt).
"""
import os
import shutil
import signal
import subprocess

import pytest

from bench_helpers import (ACCURACY_ORDER, HARDWARE, LATENCY_ORDER, SCRIPT, TRACKS, VERSIONS,
                           board_rows, make_submissions)
from fedxr_jax.bench import leaderboard
from fedxr_jax.bench import verification

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


def _record(folder, doc, rows):
  record = verification.build_record(
      doc, verification.compare(doc, rows, primary='eval/accuracy'), hardware=HARDWARE,
      versions=VERSIONS, tolerance='bit for bit',
      selection={'method': 'hmac-sha256', 'key_kind': 'date', 'key_id': '2026-12-06',
                 'order': [0, 1, 2]})
  verification.write_record(record, str(folder))


def _shot(tmp_path, name, page):
  shot = tmp_path / f'{name}.png'
  _chromium(tmp_path, f'--screenshot={shot}', '--window-size=1280,1400', page)
  data = shot.read_bytes()
  assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 10_000, name
  keep = os.environ.get('FEDXR_SCREENSHOTS')
  if keep:
    os.makedirs(keep, exist_ok=True)
    shutil.copy(shot, os.path.join(keep, shot.name))


def test_site_renders_ranked_rows_in_chromium(tmp_path):
  docs = make_submissions(tmp_path / 'subs')
  a, b = docs['a.json'], docs['b.json']
  _record(tmp_path / 'verified', a, {r['seed']: [r['curve'][-1]] for r in a['runs']})
  _record(tmp_path / 'verified', b, {0: [{'round': 4, 'eval/accuracy': 0.5}]})   # differs
  leaderboard.build_site(str(tmp_path / 'subs'), str(tmp_path / 'site'), TRACKS,
                         verified_dir=str(tmp_path / 'verified'))
  index = (tmp_path / 'site' / 'index.html').as_uri()

  dom = _chromium(tmp_path, '--dump-dom', index)
  ranked = [m for m in ACCURACY_ORDER if m != 'B fedprox']
  assert board_rows(dom) == {'xr-accuracy v1': ranked, 'xr-latency v2': LATENCY_ORDER}
  assert '<script' not in dom.lower()                 # the method name stayed text
  assert SCRIPT.replace('<', '&lt;').replace('>', '&gt;') in dom
  assert '3 invalid files' in dom and '1 unranked (re-run differs)' in dom
  assert dom.count('class="badge verified"') == 1
  _shot(tmp_path, 'index', index)

  track = (tmp_path / 'site' / 'track-xr-accuracy-v1.html').as_uri()
  dom = _chromium(tmp_path, '--dump-dom', track)
  assert 'Unranked: the re-run differs' in dom and '<script' not in dom.lower()
  assert 'seed 0 round 4 eval/accuracy: 0.9 submitted, 0.5 re-run' in dom
  assert 'Learning curves' in dom and 'Frozen config' in dom and 'Open config' in dom
  _shot(tmp_path, 'track', track)

  submit = (tmp_path / 'site' / 'submit.html').as_uri()
  dom = _chromium(tmp_path, '--dump-dom', submit)
  assert 'fedxr-bench run --track=xr-default' in dom and 'fedxr-bench hash' in dom
  _shot(tmp_path, 'submit', submit)
