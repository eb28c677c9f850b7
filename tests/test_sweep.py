"""Hyperparameters as data, and sweeps that compile the round once (training/sweep.py)."""
import json
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import optax
import pytest

from fedxr_jax.configs import blocks
from fedxr_jax.configs import test as test_config
from fedxr_jax.core import local as local_lib
from fedxr_jax.errors import ConfigError
from fedxr_jax.training import loop
from fedxr_jax.training import metrics_log
from fedxr_jax.compose import optimizers
from fedxr_jax.training import sweep
import tiny
from helpers import assert_trees_equal

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LR = 'client_optimizer.learning_rate'


def _opt(name, lr, role='server'):
  return ml_collections.ConfigDict(blocks.optimizer_block(role, name, lr))


def _tiny(client_lr, server_lr, server='sgd', client=None):
  return tiny.setup(
      population=8, cohort=4, local_steps=3,
      client_optimizer=client or optimizers.make(_opt('sgd', client_lr, 'client'), 'client_optimizer'),
      server_optimizer=optimizers.make(_opt(server, server_lr), 'server_optimizer'))


def _round_args(s):
  server, clients, frozen = jax.jit(s.federation.init)(s.world, s.key)
  return server, clients, frozen, s.world, s.plan(0)[0]


def _hlo(s):
  return jax.jit(s.federation.round).lower(*_round_args(s)).as_text()


# ---------------------------------------------------------------------------
# Learning rates are data of the compiled round.

@pytest.mark.parametrize('server', ['sgd', 'adam', 'adagrad'])
def test_round_lowers_to_the_same_hlo_for_any_learning_rate(server):
  a, b = _tiny(0.1, 1.0, server), _tiny(0.03, 0.3, server)
  assert _hlo(a) == _hlo(b)


def test_a_learning_rate_constant_changes_the_hlo():
  """The control: optax.sgd(lr) bakes lr into the program, so the comparison can fail."""
  a = _tiny(0.1, 1.0, client=optax.sgd(0.1))
  b = _tiny(0.1, 1.0, client=optax.sgd(0.03))
  assert _hlo(a) != _hlo(b)


@pytest.mark.parametrize('server', ['sgd', 'adam'])
def test_learning_rates_in_the_state_reproduce_a_separate_build(server):
  """Build A, give its state B's rates: A's round is B's round, bit for bit."""
  a, b = _tiny(0.1, 1.0, server), _tiny(0.03, 0.3, server)
  config_b = ml_collections.ConfigDict(dict(client_optimizer=_opt('sgd', 0.03, 'client'),
                                            server_optimizer=_opt(server, 0.3)))
  server_a, clients, frozen, world, plan = _round_args(a)
  lanes_server = _lane_server_for_tiny(config_b, server_a)
  out_a = jax.jit(a.federation.round)(lanes_server, clients, frozen, world, plan)
  out_b = jax.jit(b.federation.round)(*_round_args(b))
  assert_trees_equal(out_a, out_b)
  out_own = jax.jit(a.federation.round)(*_round_args(a))
  assert not np.array_equal(out_own[0].shared['body']['w'], out_b[0].shared['body']['w'])


def _lane_server_for_tiny(config, server):
  """What `experiment.lane_server` sets, without an experiment: both optimizers' rates."""
  client = optimizers.make(config.client_optimizer, 'client_optimizer')
  return server.replace(
      hyperparams={**server.hyperparams, 'client_optimizer': local_lib.hyperparams_of(client)},
      opt_state=optimizers.make(config.server_optimizer, 'server_optimizer').init(
          server.shared))


def test_client_learning_rate_is_in_the_server_state():
  s = _tiny(0.03, 1.0)
  server, *_ = _round_args(s)
  lr = server.hyperparams['client_optimizer']['learning_rate']
  assert lr.dtype == np.float32 and float(lr) == np.float32(0.03)
  assert float(server.opt_state.hyperparams['learning_rate']) == 1.0


@pytest.mark.slow   # tests/test_bench.py starts and trains sweep lanes by default
def test_a_lane_of_the_experiment_starts_where_its_own_build_does():
  """FedProx mu, FedAdam's and the client's rates on one build: the lane's round-0
  server state is its own build's, and both builds lower to one round."""
  from fedxr_jax.compose import experiment
  base = _config(**{'algorithm.name': 'fedprox', 'server_optimizer.name': 'adam'})
  other = _config(**{'algorithm.name': 'fedprox', 'server_optimizer.name': 'adam',
                     LR: 0.03, 'server_optimizer.learning_rate': 0.3,
                     'algorithm.fedprox.mu': 0.1})
  exp_a, exp_b = experiment.build(base), experiment.build(other)
  state_a = jax.jit(exp_a.federation.init)(exp_a.world, exp_a.key)
  state_b = jax.jit(exp_b.federation.init)(exp_b.world, exp_b.key)
  lane = experiment.lane_server(experiment.for_lane(exp_a, other), state_a[0])
  assert_trees_equal(lane, state_b[0])
  assert float(lane.algorithm['mu']) == np.float32(0.1)
  plan = exp_a.plan(0)[0]
  hlo = lambda exp, state: jax.jit(exp.federation.round).lower(
      *state, exp.world, plan).as_text()
  assert hlo(exp_a, state_a) == hlo(exp_b, state_b)


# ---------------------------------------------------------------------------
# Sweeps of the test config: vmapped and sequential against separate runs.

def _config(**overrides):
  config = test_config.get_config()
  config.num_rounds = 2
  config.eval_every = 2
  config.checkpoint_every = 2
  config.eval.client_table = False
  config.eval.tensorboard = False
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    block = config
    for p in parents:
      block = block[p]
    block[leaf] = value
  return config


def _comparable(rows):
  return [metrics_log.comparable(r) for r in rows]


@pytest.fixture(scope='module')
def separate(tmp_path_factory):
  """fedxr-train runs of the lanes (each its own build and compile)."""
  root = tmp_path_factory.mktemp('separate')
  runs = {}
  for lr, seed in ((0.1, 0), (0.03, 0), (0.1, 1)):
    runs[lr, seed] = loop.run(_config(**{LR: lr, 'seed': seed}), str(root / f'{lr}_{seed}'),
                              progress=False)
  return runs


def _lane_rows(summary, lr, seed):
  name = f'{LR}={lr}_seed={seed}'
  found, _ = metrics_log.read(os.path.join(summary['lanes'][name]['workdir'], 'metrics.jsonl'))
  return [found[r] for r in sorted(found)]


def _assert_rows_close(rows, expected):
  """Same keys, same integers; floats within float32 rounding of the vmapped program."""
  assert [sorted(r) for r in _comparable(rows)] == [sorted(r) for r in _comparable(expected)]
  for row, want in zip(_comparable(rows), _comparable(expected)):
    for key, value in want.items():
      got = row[key]
      if isinstance(value, float) and isinstance(got, float):
        np.testing.assert_allclose(got, value, rtol=1e-6, atol=0, err_msg=key)
      else:
        assert got == value, key


# The HLO tests here show a learning rate is data of one program; tests/test_bench.py runs lanes.
@pytest.mark.slow
def test_sequential_sweep_compiles_once_and_matches_separate_runs_bit_for_bit(separate,
                                                                                tmp_path):
  summary = sweep.run(_config(), str(tmp_path), [sweep.Spec(LR, (0.1, 0.03))], vmap=False)
  assert summary['round_compiles'] == 1
  assert [g['mode'] for g in summary['groups']] == ['sequential']
  for lr in (0.1, 0.03):
    assert _comparable(_lane_rows(summary, lr, 0)) == _comparable(separate[lr, 0])
  assert _comparable(separate[0.1, 0]) != _comparable(separate[0.03, 0])
  with open(tmp_path / sweep.SUMMARY_FILE) as f:
    written = json.load(f)
  assert written['lanes'][f'{LR}=0.03_seed=0']['final']['eval/accuracy'] == (
      separate[0.03, 0][-1]['eval/accuracy'])


@pytest.mark.slow   # tests/test_bench.py trains vmapped lanes (seeds) and verifies them by default
def test_vmapped_sweep_of_two_values_matches_two_separate_runs(separate, tmp_path):
  summary = sweep.run(_config(), str(tmp_path), [sweep.Spec(LR, (0.1, 0.03))], vmap=True)
  assert summary['round_compiles'] == 1
  assert [g['mode'] for g in summary['groups']] == ['vmapped']
  for lr in (0.1, 0.03):
    _assert_rows_close(_lane_rows(summary, lr, 0), separate[lr, 0])


@pytest.mark.slow   # tests/test_bench.py trains and verifies vmapped seeds by default
def test_vmapped_sweep_over_seeds_matches_a_separate_run(separate, tmp_path):
  summary = sweep.run(_config(), str(tmp_path), [sweep.Spec(LR, (0.1,))], seeds=(0, 1),
                      vmap=True)
  assert [(g['mode'], len(g['lanes'])) for g in summary['groups']] == [('vmapped', 2)]
  assert summary['round_compiles'] == 1
  for seed in (0, 1):
    _assert_rows_close(_lane_rows(summary, 0.1, seed), separate[0.1, seed])


# Resume per lane is the loop's (default: tests/test_resume.py resumes a run, which is one
# lane; test_vmapped_sweep_over_seeds_matches_a_separate_run covers vmapped lanes).
@pytest.mark.slow
def test_a_stopped_vmapped_sweep_resumes_where_it_stopped(tmp_path):
  """Lanes are runs: stopped after round 2 and run again, each lane ends bit for bit
  where the uninterrupted sweep's does (the same vmapped program)."""
  spec = [sweep.Spec(LR, (0.1, 0.03))]
  config = _config(num_rounds=4, eval_every=4)
  whole = sweep.run(config, str(tmp_path / 'whole'), spec, vmap=True, report=False)
  part = sweep.run(config, str(tmp_path / 'part'), spec, vmap=True, report=False,
                   stop_after=2)
  assert {n: lane['rounds'] for n, lane in part['lanes'].items()} == {
      f'{LR}=0.1_seed=0': 2, f'{LR}=0.03_seed=0': 2}
  resumed = sweep.run(config, str(tmp_path / 'part'), spec, vmap=True, report=False)
  assert [g['mode'] for g in resumed['groups']] == ['vmapped']
  for lr in (0.1, 0.03):
    assert (_comparable(_lane_rows(resumed, lr, 0)) == _comparable(_lane_rows(whole, lr, 0)))


@pytest.mark.slow   # tests/test_guards.py covers divergence by default
def test_a_diverged_lane_stops_alone_under_vmap(separate, tmp_path):
  """on_divergence=stop: the lane that blows up ends with its message; the other trains on."""
  config = _config(divergence_factor=1.5)
  summary = sweep.run(config, str(tmp_path), [sweep.Spec(LR, (0.1, 1000.0))], vmap=True)
  good, bad = summary['lanes'][f'{LR}=0.1_seed=0'], summary['lanes'][f'{LR}=1000.0_seed=0']
  assert good['stopped'] is None and good['rounds'] == 2
  assert f"training diverged at round {bad['rounds']}" in bad['stopped']
  assert bad['final']['eval/accuracy'] is None
  _assert_rows_close(_lane_rows(summary, 0.1, 0), separate[0.1, 0])


# ---------------------------------------------------------------------------
# Bad sweep specs: one ConfigError line each.

def _one_line(excinfo):
  message = str(excinfo.value)
  assert '\n' not in message
  return message


def test_unknown_key_is_one_line_with_a_hint():
  with pytest.raises(ConfigError) as e:
    sweep.parse_spec('client_optimizer.learnig_rate=0.1,0.2', _config())
  assert "did you mean 'client_optimizer.learning_rate'" in _one_line(e)


def test_empty_value_list_is_refused():
  with pytest.raises(ConfigError, match='value list is empty') as e:
    sweep.parse_spec(f'{LR}=', _config())
  _one_line(e)


@pytest.mark.parametrize('text, match', [
    (f'{LR}', 'write KEY=V1,V2'), ('local_steps=2,x', "'x' is not a int"),
    ('seed=0,1', '--seeds'), (f'{LR}=0.1,0.1', 'repeated'), ('data.tasks=a,b', 'scalar')])
def test_malformed_specs(text, match):
  with pytest.raises(ConfigError, match=match) as e:
    sweep.parse_spec(text, _config())
  _one_line(e)


def test_shape_changing_key_under_vmap_is_refused_before_building(tmp_path):
  spec = sweep.parse_spec('local_steps=1,2', _config())
  with pytest.raises(ConfigError, match='local_steps is compiled into the round') as e:
    sweep.run(_config(), str(tmp_path), [spec], vmap=True)
  _one_line(e)
  assert not os.listdir(tmp_path)


def test_scaffold_compiles_its_client_learning_rate(tmp_path):
  config = _config(**{'algorithm.name': 'scaffold'})
  with pytest.raises(ConfigError, match='SCAFFOLD') as e:
    sweep.run(config, str(tmp_path), [sweep.Spec(LR, (0.1, 0.2))], vmap=True)
  _one_line(e)


def test_a_key_without_effect_and_a_bad_value_are_refused(tmp_path):
  with pytest.raises(ConfigError, match='no effect: algorithm.name=fedavg'):
    sweep.make_lanes(_config(), [sweep.Spec('algorithm.fedprox.mu', (0.0, 0.1))])
  with pytest.raises(ConfigError, match='learning_rate must be > 0') as e:
    sweep.run(_config(), str(tmp_path), [sweep.Spec(LR, (0.1, -1.0))])
  assert f'{LR}=-1.0_seed=0' in _one_line(e)


def test_cli_bad_spec_is_one_line_and_exit_code_2(tmp_path):
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, 'scripts', 'sweep.py'),
       '--config=fedxr_jax/configs/test.py', f'--workdir={tmp_path}', '--sweep=nope=1,2'],
      cwd=REPO, capture_output=True, text=True, timeout=120,
      env={**os.environ, 'PYTHONPATH': REPO})
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert result.returncode == 2 and len(lines) == 1, result.stderr
  assert lines[0].startswith("fedxr-sweep: error: --sweep: 'nope' is not a config key")
