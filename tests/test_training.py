"""The host loop: metrics.jsonl, checkpoints, resume, bad workdirs."""
import json
import os

import numpy as np
import pytest

from fedxr_jax.configs import default as default_config
from fedxr_jax.configs import test as test_config
from fedxr_jax.data import catalog
from fedxr_jax.errors import CheckpointError
from fedxr_jax.privacy import accounting
from fedxr_jax.training import checkpoint as checkpoint_lib
from fedxr_jax.training import loop
from fedxr_jax.training import metrics_log


def _rows(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def _math(rows):
  """Rows without their wall times: what a rerun reproduces bit for bit."""
  return [metrics_log.comparable(r) for r in rows]


def test_metrics_rows_hold_round_loss_and_task_accuracy(config, tmp_path):
  rows = loop.run(test_config.evaluated(config), str(tmp_path), progress=False)
  assert [r['round'] for r in rows] == [1, 2, 3, 4]   # costs every round
  assert _rows(tmp_path) == rows
  assert ['eval/accuracy' in r for r in rows] == [False, True, False, True]
  for row in rows:
    assert np.isfinite(row['train/loss'])
    assert row['comm/uplink_bits'] > 0 and row['cost/energy_j'] > 0
  for row in rows[1::2]:
    for t in config.data.tasks:
      assert 0.0 <= row[f'eval/{t}/accuracy'] <= 1.0
      assert 0.0 <= row[f'eval_unseen/{t}/accuracy'] <= 1.0
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2', '4']


@pytest.mark.slow   # tests/test_bench.py's partial verification stops after K rounds by default
def test_stop_after_trains_the_first_rounds_of_the_configured_run(config, tmp_path):
  # What `fedxr-bench verify --rounds=K` re-runs. num_rounds=K would calibrate the DP noise for
  # K rounds: stop_after keeps the sigma of the configured 4 and its epsilon after round 1.
  config.privacy.target_epsilon, config.privacy.delta = 4.0, 1e-5
  rows = loop.run(config, str(tmp_path), progress=False, stop_after=1)
  assert [r['round'] for r in rows] == [1]
  sizes = dict(rounds=4, cohort_size=config.cohort_size, population=config.population_size)
  sigma = accounting.calibrate_noise_multiplier(4.0, delta=1e-5, **sizes)
  epsilon = accounting.epsilon_per_round(sigma, delta=1e-5, **sizes)[0]
  assert epsilon < 3.0 and rows[0]['privacy/epsilon'] == pytest.approx(epsilon, rel=1e-6)
  assert not os.path.exists(tmp_path / 'summary.json')   # no final evaluation


def test_a_calibrated_dp_run_cannot_be_extended(config, tmp_path):
  # A run resumes with a larger num_rounds, except where sigma was calibrated for num_rounds.
  (tmp_path / 'metrics.jsonl').write_text('{"round": 1}\n')   # a run that trained
  (tmp_path / 'config.json').write_text(config.to_json())
  longer = config.copy_and_resolve_references()
  longer.num_rounds = 8
  checkpoint_lib.check_run_config(str(tmp_path), json.loads(longer.to_json()),
                                  loop.immutable_keys(longer))
  config.privacy.target_epsilon = longer.privacy.target_epsilon = 4.0
  (tmp_path / 'config.json').write_text(config.to_json())
  with pytest.raises(CheckpointError, match=r"different \['num_rounds'\]"):
    checkpoint_lib.check_run_config(str(tmp_path), json.loads(longer.to_json()),
                                    loop.immutable_keys(longer))


def test_a_run_whose_rate_schedule_spans_num_rounds_cannot_be_extended(config, tmp_path):
  # The schedule's horizon is num_rounds: a longer run had a higher rate in its first
  # rounds. A horizon of its own (schedule.rounds) leaves num_rounds free.
  (tmp_path / 'metrics.jsonl').write_text('{"round": 1}\n')
  config.client_optimizer.schedule.kind = 'cosine'
  (tmp_path / 'config.json').write_text(config.to_json())
  longer = config.copy_and_resolve_references()
  longer.num_rounds = 8
  with pytest.raises(CheckpointError, match=r"different \['num_rounds'\].*schedule spans"):
    checkpoint_lib.check_run_config(str(tmp_path), json.loads(longer.to_json()),
                                    loop.immutable_keys(longer))
  config.client_optimizer.schedule.rounds = longer.client_optimizer.schedule.rounds = 20
  (tmp_path / 'config.json').write_text(config.to_json())
  checkpoint_lib.check_run_config(str(tmp_path), json.loads(longer.to_json()),
                                  loop.immutable_keys(longer))


@pytest.mark.slow   # default suite: test_resume.py::test_kill_9_mid_run_resumes_to_the_same_rows
def test_interrupted_and_resumed_equals_uninterrupted(config, tmp_path):
  full = loop.run(config, str(tmp_path / 'full'), progress=False)
  config.num_rounds = 2
  first_two = loop.run(config, str(tmp_path / 'resumed'), progress=False)
  # A kill after writing a row but before its checkpoint leaves a row the
  # resumed run must recompute, not duplicate.
  with open(tmp_path / 'resumed' / 'metrics.jsonl', 'a') as f:
    f.write(json.dumps({'round': 3, 'train/loss': -1.0}) + '\n{"round": 4, "tru')
  config.num_rounds = 4
  resumed = loop.run(config, str(tmp_path / 'resumed'), progress=False)
  assert _math(resumed) == _math(full)   # bit for bit: every float equal
  assert _rows(tmp_path / 'resumed') == resumed
  # Rows 1-2 were checkpointed: kept as written, wall times included.
  assert resumed[:2] == first_two


# A CLI run twice; test_metrics_rows_hold_round_loss_and_task_accuracy is default.
@pytest.mark.slow
def test_rerun_of_a_finished_run_changes_nothing(config, tmp_path):
  first = loop.run(config, str(tmp_path), progress=False)
  assert loop.run(config, str(tmp_path), progress=False) == first


@pytest.mark.slow   # default suite: test_resume.py (damaged and foreign checkpoint entries)
def test_corrupt_checkpoint_is_a_clear_error(config, tmp_path):
  config.num_rounds = 2
  loop.run(config, str(tmp_path), progress=False)
  step = tmp_path / 'checkpoints' / '2'
  damaged = 0
  for root, _, files in os.walk(step):
    for name in files:
      with open(os.path.join(root, name), 'wb') as f:
        f.write(b'\x00garbage')
      damaged += 1
  assert damaged
  config.num_rounds = 4
  with pytest.raises(CheckpointError, match='corrupt or from another run'):
    loop.run(config, str(tmp_path), progress=False)


# Default suite: test_resume.py::test_a_workdir_of_another_run_or_unreadable_config_is_one_line.
@pytest.mark.slow
def test_workdir_of_another_run_is_refused(config, tmp_path):
  config.num_rounds = 2
  loop.run(config, str(tmp_path), progress=False)
  config.seed = 7
  with pytest.raises(CheckpointError, match=r"different \['seed'\]"):
    loop.run(config, str(tmp_path), progress=False)


@pytest.mark.slow   # the README's first command; 100 s on 2 cores
def test_default_run_learns(tmp_path):
  """The embedded default: every task clearly above chance, seen and unseen users."""
  config = default_config.get_config()
  config.plot = False
  rows = loop.run(config, str(tmp_path), progress=False)
  last = rows[-1]
  assert last['round'] == config.num_rounds
  assert last['train/loss'] < rows[0]['train/loss']
  assert 'eval/accuracy' in last
  for t in config.data.tasks:
    chance = 1.0 / catalog.TASKS[t].num_classes
    for prefix in ('eval', 'eval_unseen'):
      assert last[f'{prefix}/{t}/accuracy'] > chance + 0.2, (prefix, t, last)


# tests/test_resume.py::test_a_workdir_of_another_run_or_unreadable_config_is_one_line is default.
@pytest.mark.slow
def test_a_workdir_in_use_is_refused(config, tmp_path):
  from fedxr_jax.training import checkpoint
  held = checkpoint.lock_workdir(str(tmp_path))
  try:
    with pytest.raises(CheckpointError, match='in use by another'):
      loop.run(config, str(tmp_path), progress=False)
  finally:
    held.close()
  config.num_rounds = 1
  assert loop.run(config, str(tmp_path), progress=False)[-1]['round'] == 1
