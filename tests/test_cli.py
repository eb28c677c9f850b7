"""fedxr-train: bad input exits non-zero with one clear line, no traceback."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_CONFIG = os.path.join(REPO, 'fedxr_jax', 'configs', 'test.py')


def _train(*args, workdir):
  return subprocess.run(
      [sys.executable, '-m', 'fedxr_jax.cli.train', f'--workdir={workdir}',
       '--progress=false', *args],
      capture_output=True, text=True, cwd=REPO, timeout=600)


@pytest.mark.parametrize('args, message', [
    (['--config.nonexistent=1'], "unknown config key 'nonexistent'"),
    (['--config.cohort_size=0'], 'cohort_size must be >= 1'),
    (['--config.population_size=4'], 'larger than population_size=4'),
    (["--config.data.modalities=('vision','smell')"], "unknown modality 'smell'"),
    (["--config.data.tasks=('gestur',)"], "did you mean 'gesture'"),
    (['--config=missing.py'], "config file 'missing.py' does not exist"),
])
def test_bad_input_is_one_clear_line(args, message, tmp_path):
  if not any(a.startswith('--config=') for a in args):
    args = [f'--config={TEST_CONFIG}', *args]
  result = _train(*args, workdir=tmp_path)
  assert result.returncode != 0
  assert 'Traceback' not in result.stderr
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and message in lines[0], result.stderr


def test_corrupt_checkpoint_via_cli(tmp_path):
  ok = _train(f'--config={TEST_CONFIG}', '--config.num_rounds=2', workdir=tmp_path)
  assert ok.returncode == 0, ok.stderr
  assert 'participating' in ok.stdout
  for root, _, files in os.walk(tmp_path / 'checkpoints' / '2'):
    for name in files:
      with open(os.path.join(root, name), 'wb') as f:
        f.write(b'broken')
  bad = _train(f'--config={TEST_CONFIG}', '--config.num_rounds=4', workdir=tmp_path)
  assert bad.returncode != 0
  assert 'Traceback' not in bad.stderr
  lines = [l for l in bad.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and 'corrupt or from another run' in lines[0], bad.stderr


def test_host_devices_shards_and_matches_one_device(tmp_path):
  rows = {}
  for n in (1, 2):
    result = _train(f'--config={TEST_CONFIG}', f'--host_devices={n}',
                    workdir=tmp_path / str(n))
    assert result.returncode == 0, result.stderr
    with open(tmp_path / str(n) / 'metrics.jsonl') as f:
      rows[n] = [json.loads(line) for line in f]
  assert [r['round'] for r in rows[1]] == [r['round'] for r in rows[2]]
  for a, b in zip(rows[1], rows[2]):
    # Same math over 2 devices: float32 reassociation only.
    assert a['train/loss'] == pytest.approx(b['train/loss'], rel=1e-5)
