"""fedxr-train end to end: a run, a lost only checkpoint, and sharding over host devices.

Bad input is in test_bad_input.py, damaged workdirs in test_resume.py.
"""
import json
import os

import pytest

import cli_harness

TEST_CONFIG = os.path.join(cli_harness.REPO, 'fedxr_jax', 'configs', 'test.py')


@pytest.fixture(scope='module')
def cli():
  with cli_harness.Harness() as harness:
    yield harness


def _rows(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


# tests/test_resume.py::test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one is
# default.
@pytest.mark.slow
def test_a_damaged_only_checkpoint_is_one_line(cli, tmp_path):
  ok = cli.train(f'--config={TEST_CONFIG}', '--config.num_rounds=2', f'--workdir={tmp_path}')
  assert ok.rc == 0 and ok.lines == [], ok
  assert 'participating' in ok.stdout
  for root, _, files in os.walk(tmp_path / 'checkpoints' / '2'):
    for name in files:
      with open(os.path.join(root, name), 'wb') as f:
        f.write(b'broken')
  bad = cli.train(f'--config={TEST_CONFIG}', '--config.num_rounds=4', f'--workdir={tmp_path}')
  assert bad.rc == 2 and 'Traceback' not in bad.stderr and len(bad.lines) == 1, bad
  assert 'corrupt or from another run' in bad.lines[0]
  assert 'no older good checkpoint: move' in bad.lines[0]
  assert [r['round'] for r in _rows(tmp_path)] == [1, 2]   # nothing lost meanwhile


@pytest.mark.slow   # two 2-device CLI runs; the sharded path's tests are all slow (-m slow)
def test_host_devices_shards_compiles_once_and_matches_one_device(cli, tmp_path):
  # row 16: round 2 compiled again (the state's sharding changed after round 1)
  rows = {}
  for n in (1, 2):
    result = cli.train(f'--config={TEST_CONFIG}', f'--host_devices={n}',
                       f'--workdir={tmp_path / str(n)}')
    assert result.rc == 0 and result.lines == [], result
    rows[n] = _rows(tmp_path / str(n))
    assert ['time/compile_s' in r for r in rows[n]] == [True, False, False, False]
  assert [r['round'] for r in rows[1]] == [r['round'] for r in rows[2]]
  for a, b in zip(rows[1], rows[2]):
    # Same math over 2 devices: float32 reassociation only.
    assert a['train/loss'] == pytest.approx(b['train/loss'], rel=1e-5)
