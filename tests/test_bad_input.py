"""fedxr-train on input that cannot work: exit 2, one line on stderr, nothing trained.

Each case runs the real CLI entry in its own process (`cli_harness`: one
interpreter's imports, a fork per run). Rows refer to issue 13's table.
"""
import os

import pytest

from fedxr_jax.cli import common
import cli_harness

TEST_CONFIG = os.path.join(cli_harness.REPO, 'fedxr_jax', 'configs', 'test.py')


@pytest.fixture(scope='module')
def cli():
  with cli_harness.Harness() as harness:
    yield harness


def assert_one_line(result, code, *parts):
  assert result.rc == code, result
  assert 'Traceback' not in result.stderr, result.stderr
  assert len(result.lines) == 1, result.stderr
  for part in parts:
    assert part in result.lines[0], result.lines[0]


@pytest.mark.parametrize('args, message', [
    # row 8 and row 9: ids past int32 (the second one only through its unseen users)
    (['--config.population_size=3000000000', '--config.eval_unseen_clients=8'],
     'population_size + eval_unseen_clients = 3000000008 client ids do not fit the int32 ids'),
    (['--config.population_size=2147483645', '--config.eval_unseen_clients=8'],
     'population_size + eval_unseen_clients = 2147483653 client ids do not fit'),
    (['--config.local_steps=3000000000'], 'local_steps=3000000000 does not fit the int32'),
    (['--config.seed=1099511627776'], 'PRNG keys are 32-bit'),
    # row 14: the hint, in one clean line
    (['--config.cohrt_size=4'],
     "unknown config key 'cohrt_size' in --config.cohrt_size (did you mean 'cohort_size'?)"),
    (['--config.model.m3t.widht=4'], "unknown config key 'widht' in --config.model.m3t.widht "
                                     "(did you mean 'width'?)"),
    (['--config.nonexistent=1'], "unknown config key 'nonexistent'"),
    (['--config.cohort_size=0'], 'cohort_size must be >= 1'),
    (['--config.population_size=4'], 'larger than population_size=4'),
    (["--config.data.modalities=('vision','smell')"], "unknown modality 'smell'"),
    (["--config.data.tasks=('gestur',)"], "did you mean 'gesture'"),
    (['--config.on_divergence=ignore'], "on_divergence='ignore' is not one of"),
    (['--host_devices=0'], '--host_devices must be >= 1'),
    (['stray'], "unexpected arguments: ['stray']"),
    # issue 18: a moved key names where it went
    (['--config.topology.gamma=2'],
     "unknown config key 'gamma' in --config.topology.gamma (did you mean 'topology.semi.gamma'?)"),
    (['--config.server_optimizer.momentum=0.9'], "did you mean 'server_optimizer.sgd.momentum'?"),
    # issue 18: a DP setting that cannot mean what it says is never a run without DP
    (['--config.privacy.target_epsilon=-1'], 'privacy.target_epsilon=-1.0 must be a finite'),
    (['--config.privacy.target_epsilon=nan'], 'privacy.target_epsilon=nan must be a finite'),
    (['--config.privacy.noise_multiplier=-1'], 'privacy.noise_multiplier=-1.0 must be a finite'),
])
def test_a_bad_setting_is_one_line_before_anything_is_built(cli, tmp_path, args, message):
  assert_one_line(cli.train(f'--config={TEST_CONFIG}', f'--workdir={tmp_path}/w', *args),
                  2, message)
  assert not os.path.exists(tmp_path / 'w' / 'metrics.jsonl')


def test_an_error_inside_the_config_file_names_its_file_and_line(cli, tmp_path):
  bad = tmp_path / 'bad_config.py'
  bad.write_text('from fedxr_jax.configs import test\n\ndef get_config():\n'
                 '  config = test.get_config()\n  config.num_rounds = not_defined\n'
                 '  return config\n')
  assert_one_line(cli.train(f'--config={bad}', f'--workdir={tmp_path}/w'), 2,
                  f'({bad}:5): NameError', "'not_defined' is not defined")


@pytest.mark.parametrize('program', ['report', 'leaderboard', 'bench', 'sweep'])
def test_every_program_answers_help_with_exit_0(cli, program):
  result = cli.run(program, '--help')
  assert result.rc == 0 and result.stderr == '' and 'fedxr-' in result.stdout, result


def test_a_missing_config_file_is_one_line(cli, tmp_path):
  assert_one_line(cli.train('--config=missing.py', f'--workdir={tmp_path}'), 2,
                  "config file 'missing.py' does not exist")


@pytest.mark.parametrize('args, message', [
    # row 10: a batch larger than any client's data
    (['--config.batch_size=100000'],
     'batch_size=100000 exceeds the 16 examples a client holds at most'),
    # row 13: a round whose clusters have no D2D link, found before compiling
    (['--config.topology.kind=semi', '--config.topology.d2d.range_m=30',
      '--config.topology.semi.num_clusters=2'],
     'round 1: cluster 0 has 3 clients and no D2D link within 30.0 m'),
    (['--config.algorithm.name=fedrep', '--config.algorithm.fedrep.head_steps=1'],
     'add --config.plan.heads=personal'),
])
def test_a_run_that_cannot_work_is_refused_before_it_compiles(cli, tmp_path, args, message):
  workdir = tmp_path / 'w'
  result = cli.train(f'--config={TEST_CONFIG}', f'--workdir={workdir}', *args)
  assert_one_line(result, 2, message)
  assert not os.path.exists(workdir / 'metrics.jsonl')
  assert not os.path.exists(workdir / 'checkpoints')


@pytest.mark.slow
def test_a_refused_runs_workdir_takes_the_fixed_config(cli, tmp_path):
  # Nothing was trained there: the same workdir runs the fixed config (a compile, 8 s).
  workdir = tmp_path / 'w'
  assert cli.train(f'--config={TEST_CONFIG}', f'--workdir={workdir}',
                   '--config.batch_size=100000').rc == 2
  fixed = cli.train(f'--config={TEST_CONFIG}', f'--workdir={workdir}',
                    '--config.batch_size=8', '--config.num_rounds=1')
  assert fixed.rc == 0 and fixed.lines == [], fixed


def test_the_memory_refusal_names_local_steps(cli, tmp_path):
  # Row 11: what grows with local_steps (4 bytes a step and client, the cohort of 8 at once:
  # 0.032 GB), against the memory there is; refused from shapes, before it compiles.
  result = cli.train(f'--config={TEST_CONFIG}', f'--workdir={tmp_path}', '--config.chunk_size=0',
                     '--config.local_steps=1000000', '--config.memory_budget_gb=0.01')
  assert_one_line(result, 2, 'local_steps=1000000 needs an estimated 0.032 GB',
                  'but memory_budget_gb is 0.01 GB; lower local_steps')


@pytest.mark.parametrize('make', ['file', 'file_parent'])
def test_a_workdir_that_is_a_file_is_one_line(cli, tmp_path, make):
  # row 6
  path = tmp_path / 'taken'
  path.write_text('not a directory')
  workdir = path if make == 'file' else path / 'run'
  message = 'is a file, not a directory' if make == 'file' else 'cannot create --workdir'
  assert_one_line(cli.train(f'--config={TEST_CONFIG}', f'--workdir={workdir}'), 2, message)
  assert path.read_text() == 'not a directory'


@pytest.mark.parametrize('program, flags', [
    ('train', ('--workdir', '--host_devices', '--progress')),
    ('pretrain', ('--output_dir', '--steps', '--public_clients')),
])
def test_help_lists_the_flags_and_how_config_overrides_work(cli, program, flags):
  # row 15
  result = cli.run(program, '--help')
  assert result.rc == 0 and result.stderr == '', result
  for text in flags + ('--config.KEY=VALUE', common.DEFAULT_CONFIG,
                       '--config.topology.kind=semi'):
    assert text in result.stdout, text


@pytest.mark.parametrize('name, expansion', [   # one CLI run each: FedAdam by default
    ('FedAdam', 'algorithm fedadam = fedavg with server_optimizer.name=adam, '
                'server_optimizer.learning_rate=0.01'),
    pytest.param('fedyogi', 'algorithm fedyogi = fedavg with server_optimizer.name=yogi',
                 marks=pytest.mark.slow),
    pytest.param('FedAdagrad', 'algorithm fedadagrad = fedavg with server_optimizer.name='
                 'adagrad, server_optimizer.learning_rate=0.1', marks=pytest.mark.slow),
    pytest.param('FedAvgM', 'algorithm fedavgm = fedavg with server_optimizer.sgd.momentum=0.9',
                 marks=pytest.mark.slow),
    pytest.param('FedPer', 'algorithm fedper = fedavg with plan.heads=personal',
                 marks=pytest.mark.slow),
])
def test_a_preset_prints_what_it_expands_to(cli, tmp_path, name, expansion):
  # An impossible batch stops the run after the expansion, before compiling.
  result = cli.train(f'--config={TEST_CONFIG}', f'--workdir={tmp_path}',
                     f'--config.algorithm.name={name}', '--config.batch_size=100000')
  assert result.stdout.splitlines()[0] == expansion or result.stdout.startswith(expansion)
  assert_one_line(result, 2, 'batch_size=100000 exceeds')


@pytest.mark.slow   # test_a_preset_prints_what_it_expands_to[FedAdam] is default
def test_a_preset_keeps_an_explicit_setting(cli, tmp_path):
  result = cli.train(f'--config={TEST_CONFIG}', f'--workdir={tmp_path}',
                     '--config.algorithm.name=fedadam', '--config.batch_size=100000',
                     '--config.server_optimizer.learning_rate=0.03')
  assert result.stdout.splitlines()[0] == (
      'algorithm fedadam = fedavg with server_optimizer.name=adam')


@pytest.mark.slow
def test_a_preset_trains(cli, tmp_path):
  result = cli.train(f'--config={TEST_CONFIG}', f'--workdir={tmp_path}',
                     '--config.algorithm.name=FedAvgM', '--config.num_rounds=1')
  assert result.rc == 0 and result.lines == [], result
  assert result.stdout.startswith('algorithm fedavgm = fedavg with server_optimizer.sgd.momentum')
