"""The leaderboard: known rankings with statistical ties, invalid files and
duplicates listed not ranked, escaping, badges only from the maintainers'
records, entries whose re-run differs unranked, time to accuracy, Pareto
plots on axes that vary, the pages researchers read, the CLI."""
import dataclasses
import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from bench_helpers import (ACCURACY, ACCURACY_ORDER, ACCURACY_RANKS, BUDGETED, FACTS, HARDWARE,
                           LATENCY, LATENCY_ORDER, LATENCY_RANKS, SCRIPT, TRACKS, VERSIONS,
                           accuracy_doc, board_rows, make_doc, make_submissions, tampered)
from fedxr_jax.bench import leaderboard
from fedxr_jax.bench import model_facts
from fedxr_jax.bench import plateau
from fedxr_jax.bench import ranking
from fedxr_jax.bench import site as site_lib
from fedxr_jax.bench import submission
from fedxr_jax.bench import targets
from fedxr_jax.bench import tracks as tracks_lib
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
  assert [e.rank for e in board.entries[ACCURACY.key]] == ACCURACY_RANKS
  assert [e.rank for e in board.entries[LATENCY.key]] == LATENCY_RANKS
  index = (root / 'site' / 'index.html').read_text()
  rows = board_rows(index)
  assert rows == {'xr-accuracy v1': ACCURACY_ORDER, 'xr-latency v2': LATENCY_ORDER}
  assert 'No valid entries yet.' in index                 # the GPU track has none
  assert board_rows((root / 'site' / 'track-xr-latency-v2.html').read_text()) == {
      'xr-latency v2': LATENCY_ORDER}
  assert '0.9100 ± 0.0100' in index and '0.8200 ± 0' in index


def test_statistical_ties_known_answer():
  assert ranking.t_quantile(2) == pytest.approx(4.302653, abs=1e-6)
  low, high = ranking.interval(0.82, 0.02, 3)
  assert (low, high) == (pytest.approx(0.82 - 4.302653 * 0.02 / 3 ** 0.5),
                         pytest.approx(0.82 + 4.302653 * 0.02 / 3 ** 0.5))
  assert ranking.interval(0.5, None, 1) == (0.5, 0.5)
  # [0.9, 1.0] and [0.85, 0.95] overlap; [0.7, 0.8] is below both.
  assert ranking.tied_ranks([(0.9, 1.0), (0.85, 0.95), (0.7, 0.8)], True) == [1, 1, 3]
  assert ranking.tied_ranks([(0.9, 1.0), (0.85, 0.95), (0.7, 0.8)], False) == [2, 2, 1]


def test_a_wide_interval_never_ranks_above_a_better_mean():
  class Entry:   # the role-specific v2 case: the middle entry's interval is narrow
    def __init__(self, method, mean, std):
      self.method, self.path, self._stat = method, method + '.json', dict(mean=mean, std=std, n=3)
    def stat(self, _):
      return self._stat
  entries = [Entry('wide', 0.244, 0.030), Entry('leader', 0.324, 0.008),
             Entry('narrow', 0.260, 0.004)]
  # 'wide' alone overlaps the leader's interval: 1 + 0 better; 'narrow' has one better.
  assert ranking.tied_ranks([ranking.interval(e.stat('')['mean'], e.stat('')['std'], 3)
                             for e in entries], True) == [1, 1, 2]
  assert [(r, e.method) for r, e in ranking.rank(entries, 'x', True)] == [
      (1, 'leader'), (2, 'narrow'), (2, 'wide')]


def test_ties_break_deterministically():
  key = lambda m, p: ranking.sort_key(0.5, 0.1, m, p, True)
  assert sorted([key('b', 'x.json'), key('a', 'z.json'), key('a', 'y.json')]) == [
      key('a', 'y.json'), key('a', 'z.json'), key('b', 'x.json')]
  assert ranking.sort_key(0.5, None, 'a', 'a', True) > ranking.sort_key(0.5, 9.0, 'z', 'z', True)


def test_invalid_files_are_listed_not_ranked(site):
  root, _, board = site
  reasons = {i.file: i.reason for i in board.invalid}
  assert reasons == {
      'copy-of-a.json': 'a duplicate of a.json: the same track, config, seeds and curves '
                        '(the earliest is ranked)',
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
  assert '<td class="num cost" data-metric="comm/uplink_bits">8 ± 0</td>' in index   # Mbit
  assert '<th>uplink (Mbit), lower is better</th>' in index
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
  acc = [p for p in plots if p.startswith('xr-accuracy-v1-') and 'curves' not in p]
  assert len(acc) == 2                              # uplink bits and energy are reported
  for name in acc:
    assert f'src="plots/{name}"' in page
    tree = ET.parse(root / 'site' / 'plots' / name)
    assert tree.getroot().tag.endswith('svg')
    assert 'fedprox' not in (root / 'site' / 'plots' / name).read_text()


def _record(folder, doc, rerun, rounds_note=''):
  """A maintainer's record for `doc` from re-run rows, written into `folder`."""
  result = verification.compare(doc, rerun, primary='eval/accuracy')
  record = verification.build_record(
      doc, result, hardware=HARDWARE, versions=VERSIONS, tolerance='bit for bit',
      selection={'method': 'hmac-sha256', 'key_kind': 'date', 'key_id': '2026-12-06',
                 'order': [0, 1, 2]})
  return verification.write_record(record, str(folder))


def _final_rows(doc):
  return {r['seed']: [r['curve'][-1]] for r in doc['runs']}


def test_badges_come_only_from_matching_records_in_the_maintainers_folder(tmp_path):
  subs, verified = tmp_path / 'subs', tmp_path / 'verified'
  docs = make_submissions(subs)
  a, b, c, d = (docs[n] for n in ('a.json', 'b.json', 'c.json', 'd.json'))
  _record(verified, a, _final_rows(a))                                  # full, passes
  _record(verified, b, {0: [{'round': 4, 'eval/accuracy': 0.95}]})      # differs
  # c's record is about another version of c; and a passing record beside c is ignored.
  old_c = tampered(c, lambda x: x['method'].update(name='C old'), rehash=True)
  _record(verified, old_c, _final_rows(old_c))
  beside = _record(tmp_path / 'beside', c, _final_rows(c))
  os.replace(beside, subs / 'c.verified.json')
  # D: rounds 1-2 only: partial.
  _record(verified, d, {r['seed']: r['curve'][:2] for r in d['runs']})
  # A damaged record is listed, and counts for nothing.
  broken = verified / 'broken.json'
  broken.write_text('{"format": "fedxr_jax.verification"}')
  board = leaderboard.build_site(str(subs), str(tmp_path / 'site'), TRACKS,
                                 verified_dir=str(verified))
  states = {e.submission.method: e.verification.state for e in board.entries[ACCURACY.key]}
  assert states == {'A fedavg': 'verified', 'C steady': 'none', SCRIPT: 'partial'}
  # B's re-run differs: unranked, listed apart with the first differing round and key.
  [unranked] = board.unranked[ACCURACY.key]
  assert unranked.submission.method == 'B fedprox' and unranked.rank is None
  assert unranked.verification.detail == 'seed 0 round 4 eval/accuracy: 0.9 submitted, 0.95 re-run'
  assert [e.rank for e in board.entries[ACCURACY.key]] == [1, 1, 3]
  assert [(i.file, i.reason) for i in board.bad_records] == [
      ('broken.json', 'verification schema version None is not supported')]
  index = (tmp_path / 'site' / 'index.html').read_text()
  assert board_rows(index)['xr-accuracy v1'] == ['C steady', 'A fedavg', SCRIPT]
  assert index.count('badge verified') == 1 and 'round 1-2 reproduced' not in index
  assert 'rounds 1-2 reproduced</span>' in index and '1 unranked (re-run differs)' in index
  page = (tmp_path / 'site' / 'track-xr-accuracy-v1.html').read_text()
  assert ('<td>seed 0 round 4 eval/accuracy: 0.9 submitted, 0.95 re-run</td>' in page)
  assert not any('verified.json' in i.file for i in board.invalid)   # old sidecars: not entries


def test_duplicates_with_other_names_dates_and_timings_are_one_entry(tmp_path):
  subs = tmp_path / 'subs'
  subs.mkdir()
  first = accuracy_doc('fedadam', [0.8, 0.82, 0.84])
  again = tampered(first, lambda d: (d.update(created_utc='2026-01-01T00:00:00Z'),
                                     d['method'].update(name='my fedadam'),
                                     d['timing'].update(wall_s=99.0)), rehash=True)
  submission.write(again, str(subs / 'a-again.json'))
  submission.write(first, str(subs / 'z-first.json'))
  board = leaderboard.collect(str(subs), TRACKS)
  assert [e.submission.method for e in board.entries[ACCURACY.key]] == ['fedadam']
  assert [i.file for i in board.invalid] == ['a-again.json']
  assert board.invalid[0].reason.startswith('a duplicate of z-first.json')


def test_time_to_target_known_answer():
  curve = [{'round': 1, 'cost/latency_s': 0.5, 'eval/accuracy': 0.5},
           {'round': 2, 'cost/latency_s': 1.5},
           {'round': 3, 'cost/latency_s': 2.0, 'eval/accuracy': 0.85},
           {'round': 4, 'cost/latency_s': 1.0, 'eval/accuracy': 0.9}]
  assert targets.reach(curve, 'eval/accuracy', 0.8) == (3, 4.0)
  assert targets.reach(curve, 'eval/accuracy', 0.95) is None
  assert targets.reach(curve, 'eval/accuracy', 0.6, higher_is_better=False) == (1, 0.5)
  gap = [curve[0], curve[2]]                       # round 2 missing: its latency unknown
  assert targets.reach(gap, 'eval/accuracy', 0.8) == (3, None)
  two = targets.summarize([curve, curve[:3]], 'eval/accuracy', 0.8)
  assert two == {'reached': 2, 'n': 2, 'rounds': 3.0, 'seconds': 4.0}
  assert targets.summarize([curve, curve[:2]], 'eval/accuracy', 0.8) == {
      'reached': 1, 'n': 2, 'rounds': None, 'seconds': None}
  # An asynchronous run's rows carry the virtual clock: its server steps overlap, so
  # the time is the row's clock, not a sum of latencies (and a gap costs nothing).
  clocked = [dict(r, **{'time/virtual_s': v}) for r, v in zip(gap, (0.25, 0.75))]
  assert targets.reach(clocked, 'eval/accuracy', 0.8) == (3, 0.75)


def test_plateau_rule_on_synthetic_curves():
  flat = [(r, 0.80 + 0.001 * r / 50) for r in range(5, 55, 5)]     # +0.1% over the tail
  rising = [(r, 0.5 + 0.01 * r) for r in range(5, 55, 5)]
  assert plateau.check(flat, 50).reached is True
  verdict = plateau.check(rising, 50)
  # Windows of 10 rounds: 41-50 (0.95, 1.0) against 31-40 (0.85, 0.9): 0.975 / 0.875.
  assert (verdict.reached, verdict.start, verdict.end) == (False, 31, 50)
  assert verdict.gain == pytest.approx(0.975 / 0.875 - 1)
  assert 'still improving: +11.43% from rounds 31-40 to rounds 41-50' in verdict.describe()
  assert plateau.check([(10, 0.5), (20, 0.6)], 20).reached is None   # nothing in 13-16
  assert 'no evaluation in rounds 13-16' in plateau.check([(10, 0.5), (20, 0.6)], 20).why
  assert plateau.check([(10, 0.6)], 20).why == 'round 20 was not evaluated'
  assert plateau.mean_curve([[{'round': 1, 'm': 0.2}, {'round': 2, 'm': 0.4}],
                             [{'round': 2, 'm': 0.6}]], 'm') == [(2, 0.5)]
  # Rising by 0.1 every 10 rounds to round 30, then flat. Cut at 30, rounds 25-30 (0.6)
  # against 19-24 (0.5): +20%; cut at 40, rounds 33-40 (0.6) against 25-32 (0.6): 0.
  saturating = [(10, 0.4), (20, 0.5), (30, 0.6), (40, 0.6), (50, 0.6)]
  assert plateau.window_gain(saturating, 30) == pytest.approx(0.2)
  assert plateau.first_plateau(saturating) == 40
  assert plateau.first_plateau(rising) is None
  # A rising curve with one low point at round 40 (0.45 after 0.5 at 30): compared
  # point to point it would pass there; the windows (0.55, 0.45 against 0.45, 0.5: +5.3%)
  # do not, nor anywhere later.
  dip = [(r, 0.45 if r == 40 else 0.2 + 0.01 * r) for r in range(5, 65, 5)]
  assert plateau.window_gain(dip, 40) == pytest.approx(0.5 / 0.475 - 1)
  assert plateau.first_plateau(dip) is None
  assert plateau.window_gain([(10, 0.5)], 10) is None       # no window before


def test_stretch_rule_reads_the_gain_seed_by_seed():
  # Seeds at 0.40, 0.50 after N rounds; stretched over 2N: 0.404 (+1%), 0.52 (+4%).
  verdict = plateau.stretched([0.40, 0.50], [0.404, 0.52], 100, 200)
  assert verdict.gains == pytest.approx((0.01, 0.04))
  assert verdict.gain == pytest.approx(0.025) and verdict.reached is False
  assert '100 rounds not enough' in verdict.describe() and '+1.0%, +4.0%' in verdict.describe()
  assert plateau.stretched([0.40, 0.50], [0.404, 0.505], 100, 200).reached is True
  # A seed that loses counts against the others' gains, not as zero.
  assert plateau.stretched([0.5, 0.5], [0.55, 0.48], 100, 200).gain == pytest.approx(0.03)
  with pytest.raises(ValueError, match='one final value per seed'):
    plateau.stretched([0.4], [0.4, 0.5], 100, 200)
  with pytest.raises(ValueError, match='must be longer'):
    plateau.stretched([0.4], [0.4], 100, 100)


def test_track_pages_show_targets_budgets_curves_and_units(site, tmp_path):
  root, _, board = site
  page = (root / 'site' / 'track-xr-accuracy-v1.html').read_text()
  assert '<h2>Learning curves</h2>' in page and 'learning_curves' in page
  assert 'gesture (accuracy, fraction)' not in page                # no per-task metric here
  budget = make_doc(BUDGETED, 'small', {s: {'eval/accuracy': 0.9, 'eval/gesture/accuracy': 0.8,
                                            'eval_unseen/accuracy': 0.7}
                                        for s in BUDGETED.seeds})
  subs = tmp_path / 'subs'
  submission.write(budget, str(subs / 'b.json')) if subs.mkdir() is None else None
  board = leaderboard.build_site(str(subs), str(tmp_path / 'site'), TRACKS)
  [entry] = board.entries[BUDGETED.key]
  # Rounds 1-4 at 0.5 simulated s each; accuracy 0.9 >= the 0.8 target first at round 4.
  assert entry.to_target == {'reached': 3, 'n': 3, 'rounds': 4.0, 'seconds': 2.0}
  page = (tmp_path / 'site' / 'track-xr-budget-v2.html').read_text()
  for heading in ('gesture (accuracy, fraction)', 'unseen users (accuracy, fraction)',
                  'rounds to eval/accuracy \u2265 0.8 (rounds)',
                  'time to eval/accuracy \u2265 0.8 (simulated s)',
                  'trainable parameters (count)', 'Budget (per device, frozen)'):
    assert heading in page, heading
  assert ('<td class="num to-target" data-reached="3">4</td>'
          '<td class="num to-target-s">2</td>') in page
  entry_page = (tmp_path / 'site' / site_lib.entry_page(entry.submission)).read_text()
  assert 'img class="plot" src="plots/entry-' in entry_page and '900' in entry_page


def test_v1_track_pages_hide_dormant_keys(tmp_path):
  board = leaderboard.build_site(str(tmp_path), str(tmp_path / 'site'),
                                 tracks_lib.all_tracks()[:1])
  t = tracks_lib.get('xr-default', 1)
  assert 'aggregator.krum.num_byzantine' in t.frozen                  # in the v1 hash...
  page = (tmp_path / 'site' / 'track-xr-default-v1.html').read_text()
  assert 'aggregator.krum.num_byzantine' not in page                  # ...not on the page
  assert '<code>aggregator.name</code>' in page and 'keys of blocks this track' in page
  assert 'archived' in page and board.entries[t.key] == []


def _cli_source(name):
  with open(os.path.join(REPO, 'fedxr_jax', 'cli', f'{name}.py')) as f:
    return f.read()


def test_the_how_to_submit_commands_parse():
  # Read the CLIs' flags from their source: importing both would define a flag twice.
  sources = {'fedxr-bench': _cli_source('bench'), 'fedxr-leaderboard': _cli_source('leaderboard')}
  commands = re.search(r"^COMMANDS = (\(.*?\))$", sources['fedxr-bench'], re.M).group(1)
  for _, command in site_lib.SUBMIT_STEPS:
    words = shlex.split(command.replace('FEDXR_VERIFY_KEY=... ', ''))
    if words[0] == 'cp':
      continue
    assert words[0] in sources, command
    if words[0] == 'fedxr-bench':
      assert repr(words[1]) in commands, command
    for word in words:
      if word.startswith('--') and not word.startswith('--config.'):
        name = word[2:].split('=')[0]
        assert re.search(rf"DEFINE_\w+\('{name}'", sources[words[0]]), (name, command)
    track = tracks_lib.get('xr-default')
    for word in words:
      if word.startswith('--config.'):
        key, value = word[len('--config.'):].split('=')
        track.check_override(key, float(value) if value[0].isdigit() else value)


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
  assert ok.stdout.startswith('fedxr-leaderboard: 7 entries ranked in 4 tracks, 0 unranked '
                              '(re-run differs), 3 invalid')
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


def test_pareto_plots_only_on_costs_that_vary(tmp_path):
  subs = tmp_path / 'subs'
  subs.mkdir()
  submission.write(accuracy_doc('one', [0.8, 0.8, 0.8], uplink=1e6, energy=2.0),
                   str(subs / 'one.json'))
  submission.write(accuracy_doc('two', [0.7, 0.7, 0.7], uplink=1e6, energy=1.0),
                   str(subs / 'two.json'))
  leaderboard.build_site(str(subs), str(tmp_path / 'site'), [ACCURACY])
  plotted = sorted(p for p in os.listdir(tmp_path / 'site' / 'plots') if 'curves' not in p
                   and not p.startswith('entry-'))
  assert [p.split('-')[3] for p in plotted] == ['energy_joules']   # uplink equal: no plot
  page = (tmp_path / 'site' / 'track-xr-accuracy-v1.html').read_text()
  assert '<th title="labels the plots">row</th>' in page


def test_entries_outside_the_guarantee_are_ranked_apart(tmp_path):
  # A private-like track: the personal entry scores higher but is ranked in its own table.
  track = dataclasses.replace(ACCURACY, rank_apart='personal parameters outside epsilon')
  shared = model_facts.count({'base': 'frozen', 'lora': 'shared'}, {'base': 50, 'lora': 8},
                             1.0, 1.0)
  ditto_like = model_facts.count({'base': 'frozen', 'lora': 'shared'},
                                 {'base': 50, 'lora': 8}, 1.0, 1.0, personal_model=True)
  assert not shared['personal_training'] and ditto_like['personal_training']
  # An older entry without the fact: a personal tree in its plan says it.
  old = {k: v for k, v in FACTS.items() if k != 'personal_training'}
  assert model_facts.personal_training(old)
  subs = tmp_path / 'subs'
  subs.mkdir()
  for name, acc, facts in (('dp', 0.5, shared), ('personal', 0.9, ditto_like)):
    submission.write(accuracy_doc(name, [acc] * 3, facts=facts), str(subs / f'{name}.json'))
  board = leaderboard.build_site(str(subs), str(tmp_path / 'site'), [track])
  assert [(e.submission.method, e.rank) for e in board.entries[track.key]] == [('dp', 1)]
  assert [(e.submission.method, e.rank) for e in board.apart[track.key]] == [('personal', 1)]
  page = (tmp_path / 'site' / 'track-xr-accuracy-v1.html').read_text()
  assert 'Ranked apart' in page and 'personal parameters outside epsilon' in page
  # Without rank_apart the same files are one ranking, the personal entry first.
  board = leaderboard.collect(str(subs), [ACCURACY])
  assert [e.submission.method for e in board.entries[ACCURACY.key]] == ['personal', 'dp']
  assert board.apart[ACCURACY.key] == []


def test_the_baseline_table_rows_are_the_boards_entries(site):
  from fedxr_jax.bench import baselines   # pylint: disable=g-import-not-at-top
  _, _, board = site
  lines = baselines.table(board, [ACCURACY.key])
  end = lines.index('')
  rows = [line.split(' | ') for line in lines[2:end]]
  assert lines[end + 1:] == []   # no 'fedavg' entry: no reference curve
  # With a reference entry, its mean curve against the plateau rule below the table.
  with_reference = dataclasses.replace(board, tracks={
      **board.tracks, ACCURACY.key: dataclasses.replace(ACCURACY, reference='A fedavg')})
  verdict = with_reference.plateau(ACCURACY.key)
  assert verdict is not None
  assert baselines.table(with_reference, [ACCURACY.key])[end + 1:] == [
      f'- xr-accuracy: A fedavg mean curve {verdict.describe()}']
  # One row per ranked entry, in the board's order, with its rank and mean +- std.
  assert [r[2] for r in rows] == [e.submission.method for e in board.entries[ACCURACY.key]]
  assert [r[1] for r in rows] == [str(e.rank) for e in board.entries[ACCURACY.key]]
  for row, entry in zip(rows, board.entries[ACCURACY.key]):
    acc = [run['final']['eval/accuracy'] for run in entry.submission.doc['runs']]
    mean = sum(acc) / len(acc)
    std = (sum((a - mean) ** 2 for a in acc) / (len(acc) - 1)) ** 0.5
    assert row[3] == f'{mean:.3f} ± {std:.3f}'
  assert all(len(r) == len(lines[0].split(' | ')) for r in rows)
