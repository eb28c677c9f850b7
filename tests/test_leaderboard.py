"""The leaderboard: known rankings, invalid files listed not ranked, escaping,
verified badges only with a matching record, Pareto fronts, the CLI."""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from bench_helpers import (ACCURACY, ACCURACY_ORDER, HARDWARE, LATENCY, LATENCY_ORDER, SCRIPT,
                           TRACKS, VERSIONS, board_rows, make_submissions, tampered)
from fedxr_jax.bench import leaderboard
from fedxr_jax.bench import ranking
from fedxr_jax.bench import submission
from fedxr_jax.bench import validate
from fedxr_jax.bench import verification

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
@pytest.fixture(scope='module')
def site(tmp_path_factory):
  root = tmp_path_factory.mktemp('board')
  docs = make_submissions(root / 'subs')
  board = leaderboard.build_site(str(root / 'subs'), str(root / 'site'), TRACKS)
  return root, docs, board


def test_ranks_known_order_for_higher_and_lower_is_better(site):
  root, _, board = site
  assert [e.submission.method for e in board.entries[ACCURACY.key]] == ACCURACY_ORDER
  assert [e.submission.method for e in board.entries[LATENCY.key]] == LATENCY_ORDER
  assert [e.rank for e in board.entries[ACCURACY.key]] == [1, 2, 3, 4]
  index = (root / 'site' / 'index.html').read_text()
  rows = board_rows(index)
  assert rows == {'xr-accuracy v1': ACCURACY_ORDER, 'xr-latency v2': LATENCY_ORDER}
  assert 'No valid entries yet.' in index                 # the GPU track has none
  assert board_rows((root / 'site' / 'track-xr-latency-v2.html').read_text()) == {
      'xr-latency v2': LATENCY_ORDER}
  assert '0.9100 ± 0.0100' in index and '0.8200 ± 0' in index


def test_ties_break_deterministically():
  key = lambda m, p: ranking.sort_key(0.5, 0.1, m, p, True)
  assert sorted([key('b', 'x.json'), key('a', 'z.json'), key('a', 'y.json')]) == [
      key('a', 'y.json'), key('a', 'z.json'), key('b', 'x.json')]
  assert ranking.sort_key(0.5, None, 'a', 'a', True) > ranking.sort_key(0.5, 9.0, 'z', 'z', True)


def test_invalid_files_are_listed_not_ranked(site):
  root, _, board = site
  reasons = {i.file: i.reason for i in board.invalid}
  assert reasons == {
      'copy-of-a.json': 'the same content as a.json',
      'garbage.json': 'not UTF-8 text (binary data at byte 0)',
      'tampered.json': "seed 0: final 'eval/accuracy' is 0.99 but the curve ends "
                       '(round 4) at 0.9'}
  ranked = {os.path.basename(e.submission.path) for v in board.entries.values() for e in v}
  assert ranked.isdisjoint(reasons)
  page = (root / 'site' / 'invalid.html').read_text()
  for name, reason in reasons.items():
    assert f'<code>{name}</code></td><td class="reason">{reason}</td>' in page.replace(
        '&#x27;', "'")
  assert '3 invalid files' in (root / 'site' / 'index.html').read_text()


def test_submitted_strings_are_escaped_everywhere(site):
  root, _, _ = site
  index = (root / 'site' / 'index.html').read_text()
  assert '&lt;script&gt;alert(1)&lt;/script&gt;' in index
  for folder, _, names in os.walk(root / 'site'):
    for name in names:   # pages, plots, and the published entries alike
      text = open(os.path.join(folder, name), encoding='utf-8').read()
      assert '<script' not in text.lower(), name
  published = sorted(os.listdir(root / 'site' / 'entries'))
  assert len(published) == 7
  s = validate.validate_file(str(root / 'site' / 'entries' / published[0]), TRACKS)
  assert s.content_sha256 == submission.content_hash(s.doc)     # same hash as the original


def test_cost_columns_show_reported_metrics_and_a_dash_otherwise(site):
  root, _, _ = site
  index = (root / 'site' / 'index.html').read_text()
  assert '<td class="num cost" data-metric="comm/uplink_bits">8.000e+06 ± 0</td>' in index
  assert '<td class="num cost" data-metric="energy/joules">-</td>' in index   # D
  assert '<td class="num cost" data-metric="privacy/epsilon">-</td>' in index


def test_pareto_front_known_answer():
  points = [(1.0, 0.5), (2.0, 0.9), (3.0, 0.8), (2.0, 0.6), (1.0, 0.5)]
  assert ranking.pareto_front(points, True) == [True, True, False, False, True]
  assert ranking.pareto_front([(1, 10), (2, 5), (3, 7)], False) == [True, True, False]


def test_pareto_plots_are_svg_files_without_submitted_text(site):
  root, _, _ = site
  page = (root / 'site' / 'track-xr-accuracy-v1.html').read_text()
  plots = sorted(os.listdir(root / 'site' / 'plots'))
  acc = [p for p in plots if p.startswith('xr-accuracy-v1-')]
  assert len(acc) == 2                              # uplink bits and energy are reported
  for name in acc:
    assert f'src="plots/{name}"' in page
    tree = ET.parse(root / 'site' / 'plots' / name)
    assert tree.getroot().tag.endswith('svg')
    assert 'fedprox' not in (root / 'site' / 'plots' / name).read_text()


def _sidecar(path, doc, rerun):
  result = verification.compare(doc, rerun)
  record = verification.build_record(doc, result, hardware=HARDWARE, versions=VERSIONS)
  return verification.write_record(record, path)


def test_verified_badge_only_with_a_matching_passing_record(tmp_path):
  subs = tmp_path / 'subs'
  docs = make_submissions(subs)
  a, b, c, d = (docs[n] for n in ('a.json', 'b.json', 'c.json', 'd.json'))
  _sidecar(str(subs / 'a.json'), a, {0: [{'round': 4, 'eval/accuracy': 0.80}]})
  _sidecar(str(subs / 'b.json'), b, {0: [{'round': 4, 'eval/accuracy': 0.95}]})  # fails
  # c's record is about another version of c: stale, so no badge.
  old_c = tampered(c, lambda x: x['method'].update(name='C old'), rehash=True)
  _sidecar(str(subs / 'c.json'), old_c, {0: [{'round': 4, 'eval/accuracy': 0.82}]})
  # d's record is damaged: its own hash no longer holds.
  sidecar = _sidecar(str(subs / 'd.json'), d, {0: [{'round': 4, 'eval/accuracy': 0.5}]})
  text = open(sidecar).read().replace('"result": "pass"', '"result": "fail"')
  open(sidecar, 'w').write(text)
  board = leaderboard.build_site(str(subs), str(tmp_path / 'site'), TRACKS)
  states = {e.submission.method: e.verification for e in board.entries[ACCURACY.key]}
  assert states == {'A fedavg': 'verified', 'B fedprox': 'failed', 'C steady': 'stale',
                    SCRIPT: 'invalid'}
  index = (tmp_path / 'site' / 'index.html').read_text()
  cells = [line.split('<td class="method">')[1].split('</td>')[0]
           for line in index.splitlines() if 'class="entry"' in line]
  assert [c for c in cells if 'badge verified' in c] == [
      'A fedavg<span class="badge verified" title="1 rounds x 1 seeds re-run on cpu">'
      'verified</span>']
  assert 'B fedprox<span class="badge failed" title="seed 0 round 4 eval/accuracy: 0.9 vs '
  're-run 0.95">re-run differs</span>' in cells
  assert 'C steady' in cells and '&lt;script&gt;alert(1)&lt;/script&gt;' in cells
  assert not any('verified.json' in i.file for i in board.invalid)   # sidecars are not entries


def test_site_needs_no_network_and_no_scripts(site):
  root, _, _ = site
  for name in os.listdir(root / 'site'):
    if name.endswith('.html'):
      text = (root / 'site' / name).read_text()
      assert 'src="http' not in text and '<link' not in text and '@import' not in text
      assert '<style>' in text


def _cli(*args):
  env = dict(os.environ, PYTHONPATH=os.path.join(REPO, 'tests'))
  return subprocess.run([sys.executable, '-m', 'fedxr_jax.cli.leaderboard', *args],
                        capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


def test_cli_builds_the_site_and_fails_in_one_line(tmp_path):
  make_submissions(tmp_path / 'subs')
  ok = _cli(str(tmp_path / 'subs'), f'--out={tmp_path / "site"}', '--tracks=bench_helpers',
            '--strict')
  assert ok.returncode == 1, ok.stderr                 # --strict: 3 files are invalid
  assert ok.stdout.startswith('fedxr-leaderboard: 7 entries ranked in 3 tracks, 3 invalid')
  assert (tmp_path / 'site' / 'index.html').exists()
  assert 'Traceback' not in ok.stderr and len(ok.stderr.splitlines()) == 3


@pytest.mark.parametrize('args, message', [
    (['nowhere'], "'nowhere' is not a folder"),
    (['a', 'b'], "expected one SUBMISSIONS_DIR, got ['a', 'b']"),
    (['.', '--tracks=no_such_registry'], "cannot import the track registry 'no_such_registry'"),
    (['.', '--bogus=1'], 'Unknown command line flag'),
])
def test_cli_errors_are_one_line(args, message, monkeypatch, capsys):
  from fedxr_jax.cli import leaderboard as cli   # in-process: a subprocess costs seconds
  monkeypatch.setattr(sys, 'argv', ['fedxr-leaderboard', *args])
  with pytest.raises(SystemExit) as info:
    cli.entry()
  assert info.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith('fedxr-leaderboard: error: ') and message in err, err
  assert len(err.strip().splitlines()) == 1
