"""metrics.jsonl: strict JSON, damaged rows found not dropped, rewritten only whole."""
import json
import math
import os
import subprocess
import sys

import pytest

from fedxr_jax.training import metrics_log


def _strict(line):
  def refuse(token):
    raise ValueError(f'not JSON: {token}')
  return json.loads(line, parse_constant=refuse)


def test_non_finite_values_are_null_and_named():
  line = metrics_log.encode({'round': 3, 'train/loss': math.nan, 'cost/energy_j': 1.5,
                             'eval/share': [0.5, math.inf]})
  assert _strict(line) == {'round': 3, 'train/loss': None, 'cost/energy_j': 1.5,
                           'eval/share': [0.5, None],
                           'nonfinite': ['eval/share', 'train/loss']}
  # Old files wrote bare NaN tokens: read as the same row.
  assert metrics_log.decode('{"round": 3, "train/loss": NaN}') == {
      'round': 3, 'train/loss': None, 'nonfinite': ['train/loss']}


@pytest.mark.parametrize('line', [b'garbage', b'{"round": 0}', b'[1, 2]', b'{"loss": 1.0}',
                                  b'\xff\xfe{', b'{"round": "3"}', b'{"round": 4, "tru'])
def test_a_line_without_a_row_is_no_row(line):
  assert metrics_log.decode(line) is None


def _write(path, rows, garbage_at=()):
  lines = [metrics_log.encode(r) for r in rows]
  for i in garbage_at:
    lines[i] = 'x' * 20
  path.write_text('\n'.join(lines) + '\n')


def test_damaged_rows_are_missing_and_the_file_waits_for_commit(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  rows = [{'round': r, 'train/loss': 1.0 / r} for r in range(1, 9)]
  _write(path, rows, garbage_at=(4,))            # line 5: round 5
  before = path.read_bytes()
  log = metrics_log.MetricsLog(str(path), resume_round=6)
  assert log.missing == [5] and log.unreadable == [5] and log.past == [7, 8]
  assert [r['round'] for r in log.rows] == [1, 2, 3, 4, 6]
  assert path.read_bytes() == before             # nothing dropped before it is recomputed
  log.put({'round': 5, 'train/loss': 0.2})
  assert log.missing == [] and [r['round'] for r in log.rows] == [1, 2, 3, 4, 5, 6]
  log.commit()
  assert [_strict(l)['round'] for l in path.read_text().splitlines()] == [1, 2, 3, 4, 5, 6]
  log.append({'round': 7, 'train/loss': math.inf})
  assert _strict(path.read_text().splitlines()[-1])['nonfinite'] == ['train/loss']


def test_an_intact_file_is_not_rewritten(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  _write(path, [{'round': r, 'train/loss': 0.5} for r in (1, 2)])
  mtime = path.stat().st_mtime_ns
  log = metrics_log.MetricsLog(str(path), resume_round=2)
  log.commit()
  assert log.missing == [] and path.stat().st_mtime_ns == mtime


def test_a_missing_file_misses_every_round_up_to_the_checkpoint(tmp_path):
  log = metrics_log.MetricsLog(str(tmp_path / 'metrics.jsonl'), resume_round=4)
  assert log.missing == [1, 2, 3, 4] and log.rows == []


def test_spans_and_comparable():
  assert metrics_log.spans([9, 1, 2, 3, 5, 10]) == '1-3, 5, 9-10'
  assert metrics_log.comparable({'round': 1, 'time/round_s': 0.1, 'train/loss': 2.0,
                                 'latency/measured_example_ms': 0.3,
                                 'latency/violation_rate': 0.0}) == {
      'round': 1, 'train/loss': 2.0, 'latency/violation_rate': 0.0}


def test_same_numbers_skips_wall_times_unless_told(tmp_path):
  script = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'benchmarks',
                        'same_numbers.py')
  for name, seconds in (('old', 0.5), ('new', 0.7)):
    (tmp_path / name).mkdir()
    (tmp_path / name / 'default.jsonl').write_text(metrics_log.encode(
        {'round': 1, 'train/loss': 1.25, 'time/round_s': seconds}) + '\n')
  compare = lambda *flags: subprocess.run(
      [sys.executable, script, 'compare', str(tmp_path / 'old'), str(tmp_path / 'new'), *flags],
      capture_output=True, text=True, timeout=120)
  same = compare()
  assert same.returncode == 0 and 'default: identical' in same.stdout, same
  strict = compare('--ignore=')
  assert strict.returncode == 1 and 'DIFFERS time/round_s: round 1 0.5 -> 0.7' in strict.stdout
