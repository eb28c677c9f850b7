"""Damaged workdirs resume through fedxr-train and lose no finished round.

A finished round is one with a checkpoint at or after it. Every case runs
the real CLI (`cli_harness`) on a copy of one 8-round run (checkpoints 4, 6,
8 kept) and compares rows without their wall times (`metrics_log.comparable`)
with that run's. Rows refer to issue 13's table.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import pytest

from fedxr_jax.configs import test as test_config
from fedxr_jax.training import checkpoint as checkpoint_lib
from fedxr_jax.training import checks
from fedxr_jax.compose import experiment
from fedxr_jax.training import loop
from fedxr_jax.training import runner as runner_lib
from fedxr_jax.training import metrics_log
import cli_harness

TEST_CONFIG = os.path.join(cli_harness.REPO, 'fedxr_jax', 'configs', 'test.py')
BASE = (f'--config={TEST_CONFIG}', '--config.num_rounds=8')


@pytest.fixture(scope='module')
def cli():
  with cli_harness.Harness() as harness:
    yield harness


@pytest.fixture(scope='module')
def trained(cli, tmp_path_factory):
  """(workdir, rows) of one 8-round run."""
  workdir = tmp_path_factory.mktemp('trained') / 'run'
  result = cli.train(*BASE, f'--workdir={workdir}')
  assert result.rc == 0 and result.lines == [], result
  assert checkpoint_lib.step_dirs(str(workdir / 'checkpoints')) == [4, 6, 8]
  return workdir, rows_of(workdir)


def rows_of(workdir):
  """The rows of metrics.jsonl, read as strict JSON (a NaN token fails)."""
  def refuse(token):
    raise ValueError(f'not JSON: {token}')
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line, parse_constant=refuse) for line in f]


def math_of(rows):
  return [metrics_log.comparable(r) for r in rows]


@pytest.fixture
def copy(trained, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(trained[0], workdir)
  return workdir


def _damage_line(workdir, number):
  path = workdir / 'metrics.jsonl'
  lines = path.read_text().splitlines(keepends=True)
  lines[number - 1] = '{"round": 5, "train/lo\x00\x00 garbage\n'
  path.write_text(''.join(lines))


# test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one resumes by default.
@pytest.mark.slow
def test_a_damaged_row_in_the_middle_is_recomputed(cli, trained, copy):
  # row 2: garbage in line 5 of the run, then resume to 10 rounds
  _damage_line(copy, 5)
  result = cli.train(*BASE, f'--workdir={copy}', '--config.num_rounds=10')
  assert result.rc == 0 and 'Traceback' not in result.stderr, result
  assert result.lines == [f'fedxr-train: warning: {copy / "metrics.jsonl"}: the rows of '
                          'rounds 5 are damaged or missing; recomputing them from the '
                          'checkpoints']
  rows = rows_of(copy)
  assert [r['round'] for r in rows] == list(range(1, 11))
  assert math_of(rows[:8]) == math_of(trained[1])          # row 5 as it was
  assert rows[:4] + rows[5:8] == trained[1][:4] + trained[1][5:]   # the rest untouched


@pytest.mark.slow   # the same replay as the row above, plus the evaluation row 4 also redoes
def test_a_damaged_last_row_with_an_evaluation_is_recomputed(cli, trained, copy):
  # row 3: the last line is an evaluated round with a checkpoint
  _damage_line(copy, 8)
  result = cli.train(*BASE, f'--workdir={copy}')
  assert result.rc == 0 and len(result.lines) == 1 and 'rounds 8 are damaged' in result.stderr
  rows = rows_of(copy)
  assert math_of(rows) == math_of(trained[1])
  assert 'eval/accuracy' in rows[-1] and 'time/eval_s' in rows[-1]


@pytest.mark.slow   # test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one is default
def test_a_deleted_metrics_file_is_recomputed(cli, trained, copy):
  # row 4
  os.remove(copy / 'metrics.jsonl')
  result = cli.train(*BASE, f'--workdir={copy}', '--config.num_rounds=9')
  assert result.rc == 0 and len(result.lines) == 1 and 'rounds 1-8 are damaged' in result.stderr
  assert math_of(rows_of(copy)[:8]) == math_of(trained[1])


def test_a_checkpoints_path_that_is_a_file_is_one_line_and_changes_nothing(cli, copy):
  # row 5: before, metrics.jsonl was truncated and training restarted (then a hang)
  shutil.rmtree(copy / 'checkpoints')
  (copy / 'checkpoints').write_text('not a directory')
  before = (copy / 'metrics.jsonl').read_bytes()
  result = cli.train(*BASE, f'--workdir={copy}', '--config.num_rounds=10', timeout=300)
  assert result.rc == 2 and len(result.lines) == 1 and 'Traceback' not in result.stderr, result
  assert 'checkpoints is a file, not a checkpoint directory' in result.lines[0]
  assert (copy / 'metrics.jsonl').read_bytes() == before


def test_deleted_checkpoints_with_their_rows_still_there_are_one_line(cli, copy):
  # Retraining would rewrite rows 1-8; the user decides.
  shutil.rmtree(copy / 'checkpoints')
  before = (copy / 'metrics.jsonl').read_bytes()
  result = cli.train(*BASE, f'--workdir={copy}')
  assert result.rc == 2 and len(result.lines) == 1, result
  assert 'metrics.jsonl holds rounds up to 8 but the newest checkpoint' in result.lines[0]
  assert 'move metrics.jsonl aside to train again from round 0' in result.lines[0]
  assert (copy / 'metrics.jsonl').read_bytes() == before


def test_entries_orbax_did_not_write_are_one_line(cli, copy):
  (copy / 'checkpoints' / 'notes.txt').write_text('mine')
  (copy / 'checkpoints' / '10').write_text('a file named like a round')
  before = (copy / 'metrics.jsonl').read_bytes()
  result = cli.train(*BASE, f'--workdir={copy}', '--config.num_rounds=10', timeout=300)
  assert result.rc == 2 and len(result.lines) == 1, result
  assert "holds entries orbax did not write: ['10', 'notes.txt']" in result.lines[0]
  assert (copy / 'metrics.jsonl').read_bytes() == before


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(cli, trained, copy):
  for root, _, files in os.walk(copy / 'checkpoints' / '8'):
    for name in files:
      with open(os.path.join(root, name), 'wb') as f:
        f.write(b'\x00garbage')
  result = cli.train(*BASE, f'--workdir={copy}', '--config.num_rounds=10')
  assert result.rc == 0 and len(result.lines) == 1, result
  assert 'checkpoints/8 is corrupt or from another run' in result.lines[0]
  assert 'moved it to' in result.lines[0] and 'resuming from round 6' in result.lines[0]
  assert os.path.isdir(copy / 'damaged_checkpoints' / '8')
  rows = rows_of(copy)
  assert [r['round'] for r in rows] == list(range(1, 11))
  assert math_of(rows[:8]) == math_of(trained[1])   # rounds 7-8 retrained, same numbers


def test_a_workdir_of_another_run_or_unreadable_config_is_one_line(cli, copy):
  result = cli.train(*BASE, f'--workdir={copy}', '--config.seed=3')
  assert result.rc == 2 and len(result.lines) == 1
  assert "holds a run with different ['seed']" in result.lines[0]
  (copy / 'config.json').write_text('{"seed": ')
  result = cli.train(*BASE, f'--workdir={copy}')
  assert result.rc == 2 and len(result.lines) == 1 and 'config.json is unreadable' in result.stderr


@pytest.mark.skipif(not cli_harness.can_mount_read_only(),
                    reason='needs unshare and bind mounts to make a read-only workdir')
# Two CLI runs; test_a_checkpoints_path_that_is_a_file_is_one_line_and_changes_nothing is default.
@pytest.mark.slow
def test_read_only_workdirs(cli, trained, tmp_path):
  # row 7: fresh, to resume, or finished
  finished, partial, empty = tmp_path / 'finished', tmp_path / 'partial', tmp_path / 'empty'
  shutil.copytree(trained[0], finished)
  result = cli.train(*BASE, f'--workdir={partial}', '--config.num_rounds=2')
  assert result.rc == 0, result
  empty.mkdir()
  with cli_harness.Harness(read_only=[str(finished), str(partial), str(empty)]) as ro:
    done = ro.train(*BASE, f'--workdir={finished}')
    assert done.rc == 0 and done.stderr == '', done
    assert f'{finished}: already trained 8 rounds (read-only; nothing written)' in done.stdout
    assert 'participating' in done.stdout   # the summary table of its last evaluation
    for workdir, message in (
        (partial, 'is not writable and its run stopped at round 2 of 8; copy it somewhere '
                  'writable to resume'),
        (empty, 'is not writable; give a writable directory'),
        (empty / 'new', 'cannot create --workdir'),
    ):
      result = ro.train(*BASE, f'--workdir={workdir}')
      assert result.rc == 2 and len(result.lines) == 1, result
      assert message in result.lines[0] and 'Traceback' not in result.stderr
  assert math_of(rows_of(finished)) == math_of(trained[1])


# tests/test_guards.py::test_a_nan_round_is_flagged_and_skip_round_keeps_the_old_state is default.
@pytest.mark.slow
def test_lr_inf_stops_at_round_1_in_one_line_with_valid_json(cli, tmp_path):
  # row 1: it trained to the end on NaN before, writing bare NaN tokens. A NaN rate is now
  # refused before anything is built; an infinite one trains NaN.
  result = cli.train(f'--config={TEST_CONFIG}', f'--workdir={tmp_path}',
                     '--config.client_optimizer.learning_rate=inf')
  assert result.rc == 3 and len(result.lines) == 1 and 'Traceback' not in result.stderr, result
  assert result.lines[0].startswith(
      'fedxr-train: error: training diverged at round 1: its training loss is not finite; '
      'likely cause: client_optimizer.learning_rate=inf is not finite. Stopped; no '
      'checkpoint was saved')
  (row,) = rows_of(tmp_path)
  assert row['train/loss'] is None and 'train/loss' in row['nonfinite']
  assert row['guard/diverged'] == 1.0
  assert checkpoint_lib.step_dirs(str(tmp_path / 'checkpoints')) == []


@pytest.mark.slow
@pytest.mark.parametrize('lr, cause', [('inf', 'learning_rate=inf is not finite'),
                                       ('1e6', 'learning_rate=1e+06 is large')])
def test_a_huge_learning_rate_stops_in_one_line(cli, tmp_path, lr, cause):
  result = cli.train(f'--config={TEST_CONFIG}', f'--workdir={tmp_path}',
                     f'--config.client_optimizer.learning_rate={lr}')
  assert result.rc == 3 and len(result.lines) == 1, result
  assert 'training diverged at round' in result.lines[0] and cause in result.lines[0]
  rows_of(tmp_path)   # strict JSON


@pytest.mark.slow   # tests/test_guards.py covers divergence by default
def test_divergence_keeps_the_last_good_checkpoint_and_resumes(cli, trained, tmp_path):
  # Loss limit 0.5 x round 1's loss: round 2 diverges. Stopped there, the run
  # keeps checkpoint 1; resumed without the limit it loses nothing.
  args = (*BASE, f'--workdir={tmp_path}', '--config.num_rounds=4',
          '--config.checkpoint_every=1')
  result = cli.train(*args, '--config.divergence_factor=0.5')
  assert result.rc == 3 and len(result.lines) == 1, result
  assert 'training diverged at round 2: its training loss' in result.lines[0]
  assert 'exceeds divergence_factor=0.5 x the first loss' in result.lines[0]
  assert f'the last good checkpoint is round 1 in {tmp_path}/checkpoints' in result.lines[0]
  assert checkpoint_lib.step_dirs(str(tmp_path / 'checkpoints')) == [1]
  assert [r['guard/diverged'] for r in rows_of(tmp_path)] == [0.0, 1.0]
  result = cli.train(*args, '--config.divergence_factor=0')
  assert result.rc == 0 and result.lines == [], result
  assert math_of(rows_of(tmp_path)) == math_of(trained[1][:4])


@pytest.mark.slow
def test_skip_round_discards_every_nan_round_and_finishes(cli, tmp_path):
  result = cli.train(f'--config={TEST_CONFIG}', f'--workdir={tmp_path}',
                     '--config.client_optimizer.learning_rate=inf',
                     '--config.on_divergence=skip_round')
  assert result.rc == 0, result
  assert len(result.lines) == 4 and all('its aggregate was discarded' in l for l in result.lines)
  assert [r['guard/diverged'] for r in rows_of(tmp_path)] == [1.0] * 4


def test_a_resumed_state_lowers_to_the_program_a_fresh_one_does(tmp_path):
  # row 16: the restored state got another cache key, so every first resume compiled.
  exp = experiment.build(test_config.get_config())
  runner = runner_lib.Runner([exp], checks.step_bytes(exp))
  server, clients, frozen = runner.initial()
  plan, _ = exp.plan(0)
  lower = lambda s, c: jax.jit(exp.federation.round, donate_argnums=(0, 1)).lower(
      s, c, frozen, exp.world, plan, None).as_text()
  ckpts = checkpoint_lib.Checkpoints(str(tmp_path / 'checkpoints'))
  ckpts.save(2, {'server': server, 'clients': clients})
  restored = ckpts.restore_newest({'server': server, 'clients': clients})
  ckpts.close()
  assert restored.round == 2 and restored.notes == ()
  again = runner.restored([restored.state], frozen)
  assert lower(*again[:2]) == lower(server, clients)


def test_a_sigterm_during_a_run_checkpoints_its_last_round_and_a_rerun_resumes(trained,
                                                                              tmp_path):
  # In process: the handler the loop installs is called (as the signal would) from
  # another thread as soon as it is installed, so the first call in flight is the last.
  # The CLI's exit code and message: the slow test below, through a real SIGTERM.
  config = test_config.get_config()
  config.num_rounds = 8   # BASE: `trained` is the uninterrupted run
  original = signal.getsignal(signal.SIGTERM)

  def terminate_once_installed():
    deadline = time.monotonic() + 60
    while signal.getsignal(signal.SIGTERM) is original and time.monotonic() < deadline:
      time.sleep(0.001)
    handler = signal.getsignal(signal.SIGTERM)
    if callable(handler) and handler is not original:
      handler(signal.SIGTERM, None)

  sender = threading.Thread(target=terminate_once_installed)
  sender.start()
  workdir = tmp_path / 'run'
  with pytest.raises(loop.Terminated, match='to resume from round') as info:
    loop.run(config, str(workdir), progress=False)
  sender.join()
  assert signal.getsignal(signal.SIGTERM) is original   # the run put the handler back
  done = int(str(info.value).split('after round ')[1].split(':')[0])
  assert 1 <= done < 8 and done in checkpoint_lib.step_dirs(str(workdir / 'checkpoints'))
  assert [r['round'] for r in rows_of(workdir)] == list(range(1, done + 1))
  loop.run(config, str(workdir), progress=False)
  assert math_of(rows_of(workdir)) == math_of(trained[1])


@pytest.mark.slow
def test_sigterm_checkpoints_the_last_round_and_the_same_command_resumes(cli, trained,
                                                                         tmp_path):
  """What batch schedulers send: the call in flight ends, the state is checkpointed
  (off the cadence), exit 143; the same command ends where an uninterrupted run does."""
  workdir = tmp_path / 'run'
  command = [sys.executable, '-m', 'fedxr_jax.cli.train', *BASE, f'--workdir={workdir}',
             '--progress=false']
  process = subprocess.Popen(command, cwd=cli_harness.REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
  metrics = workdir / 'metrics.jsonl'
  deadline = time.monotonic() + 300
  while time.monotonic() < deadline and not (
      metrics.exists() and len(metrics.read_text().splitlines()) >= 1):
    time.sleep(0.02)
  process.send_signal(signal.SIGTERM)
  _, err = process.communicate(timeout=300)
  assert process.returncode == 143, err
  done = int(err.split('after round ')[1].split(':')[0])
  assert 1 <= done < 8 and 'every lane saved its checkpoint' in err
  assert done in checkpoint_lib.step_dirs(str(workdir / 'checkpoints'))
  assert [r['round'] for r in rows_of(workdir)] == list(range(1, done + 1))
  # The same command again (in the harness: a fork, not a fresh interpreter).
  result = cli.train(*BASE, f'--workdir={workdir}')
  assert result.rc == 0 and result.stderr == '', result.stderr
  assert math_of(rows_of(workdir)) == math_of(trained[1])


@pytest.mark.slow
def test_kill_9_mid_run_resumes_to_the_same_rows(trained, tmp_path):
  workdir = tmp_path / 'run'
  command = [sys.executable, '-m', 'fedxr_jax.cli.train', *BASE, f'--workdir={workdir}',
             '--progress=false']
  process = subprocess.Popen(command, cwd=cli_harness.REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  metrics = workdir / 'metrics.jsonl'
  deadline = time.monotonic() + 300
  while time.monotonic() < deadline and not (
      metrics.exists() and len(metrics.read_text().splitlines()) >= 5):
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()
  result = subprocess.run(command, cwd=cli_harness.REPO, capture_output=True, text=True,
                          timeout=600)
  assert result.returncode == 0 and result.stderr == '', result.stderr
  assert math_of(rows_of(workdir)) == math_of(trained[1])
