"""Asynchronous runs through the composition root, the training loop and fedxr-report."""
import json
import os

import jax
import pytest

from fedxr_jax.compose import experiment
from fedxr_jax.errors import ConfigError
from fedxr_jax.metrics import report
from fedxr_jax.training import loop
from fedxr_jax.training import metrics_log


def _set(config, changes: dict):
  for key, value in changes.items():
    *parents, leaf = key.split('.')
    block = config
    for p in parents:
      block = block[p]
    block[leaf] = value
  return config


@pytest.mark.parametrize('changes, message', [
    ({'topology.kind': 'semi', 'topology.semi.fallback': 'ring'},
     'not supported yet: asynchrony.kind=fedbuff with topology.kind=semi'),
    ({'algorithm.name': 'scaffold'},
     'not supported yet: asynchrony.kind=fedbuff with algorithm.name=scaffold'),
    ({'privacy.noise_multiplier': 1.0, 'privacy.delta': 1e-5},
     'not supported yet: asynchrony.kind=fedbuff with differential privacy'),
    ({'memory_budget_gb': 1e-5}, 'lower asynchrony.concurrency'),
    ({'asynchrony.buffer': 9}, r'asynchrony.buffer=9 must be in \[1, concurrency=8\]'),
    ({'asynchrony.kind': 'fedsync'}, "asynchrony.kind='fedsync' is not one of"),
    ({'asynchrony.bufer': 2}, "asynchrony: unknown key.*did you mean 'buffer'"),
])
def test_what_does_not_combine_is_refused_in_one_line(config, changes, message):
  config.asynchrony.kind = 'fedbuff'
  with pytest.raises(ConfigError, match=message) as e:
    experiment.build(_set(config, changes))
  assert '\n' not in str(e.value)


# Two builds (8 s); the synchronous round's seeds: tests/test_seeds.py, by default.
@pytest.mark.slow
def test_two_seeds_lower_to_the_same_server_step(config):
  texts = []
  for seed in (0, 1):
    c = _set(config.copy_and_resolve_references(),
             {'seed': seed, 'asynchrony.kind': 'fedasync'})
    exp = experiment.build(c)
    state = jax.eval_shape(exp.federation.init, exp.world, exp.key)
    plan, _ = exp.plan(0)
    texts.append(jax.jit(exp.federation.round).lower(*state, exp.world, plan).as_text())
  assert texts[0] == texts[1]
  # Data keys are compiled into asynchronous programs (their init trains clients).
  assert 'asynchronous runs' in experiment.not_data('client_optimizer.learning_rate', c)


def _workdir(path, rows, config):
  os.makedirs(path)
  with open(os.path.join(path, 'config.json'), 'w') as f:
    json.dump(config, f)
  with open(os.path.join(path, 'metrics.jsonl'), 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in rows)
  return str(path)


def test_the_report_plots_accuracy_against_virtual_time(tmp_path):
  sync = _workdir(tmp_path / 'sync', [
      {'round': 1, 'cost/latency_s': 0.5, 'time/virtual_s': 0.5},
      {'round': 2, 'cost/latency_s': 0.5, 'time/virtual_s': 1.0, 'eval/accuracy': 0.4}],
      {'asynchrony': {'kind': 'none'}})
  old = _workdir(tmp_path / 'old', [   # written before the clock: summed latencies
      {'round': 1, 'cost/latency_s': 0.25}, {'round': 2, 'cost/latency_s': 0.5,
                                             'eval/accuracy': 0.3}], {})
  steps = _workdir(tmp_path / 'fedbuff', [
      {'round': r, 'cost/latency_s': 0.1, 'time/virtual_s': 0.1 * r,
       **({'eval/accuracy': 0.5} if r == 4 else {})} for r in range(1, 5)],
      {'asynchrony': {'kind': 'fedbuff'}})
  runs = report.load_runs([sync, old, steps])
  assert report.virtual_times(runs[1]) == {1: 0.25, 2: 0.75}
  assert report.virtual_times(runs[2])[4] == pytest.approx(0.4)
  written = report.write_report([sync, old, steps], str(tmp_path / 'out'))
  assert os.path.basename(written.images['accuracy vs. virtual time']) == 'virtual_time.png'
  assert report.plot_virtual_time(runs[1:2], str(tmp_path / 'none.png')) is None


@pytest.mark.slow
def test_a_fedbuff_run_through_the_loop_resumes_bit_identically(config, tmp_path):
  config = _set(config, {'asynchrony.kind': 'fedbuff', 'rounds_per_call': 2,
                         'checkpoint_every': 2, 'eval_every': 2})
  whole = loop.run(config, str(tmp_path / 'whole'), progress=False)
  loop.run(config, str(tmp_path / 'split'), progress=False, stop_after=2)
  resumed = loop.run(config, str(tmp_path / 'split'), progress=False)
  assert [metrics_log.comparable(r) for r in resumed] == [
      metrics_log.comparable(r) for r in whole]
  assert [r['round'] for r in whole] == [1, 2, 3, 4]
  clock = [r['time/virtual_s'] for r in whole]
  assert clock == sorted(clock) and clock[0] > 0
  assert all(r['async/staleness_max'] >= r['async/staleness_mean'] for r in whole)
  assert 'eval/accuracy' in whole[1] and 'eval/accuracy' in whole[3]


@pytest.mark.slow
def test_fedasync_seeds_train_as_vmapped_lanes(config, tmp_path):
  configs = []
  for seed in (0, 1):
    configs.append(_set(config.copy_and_resolve_references(),
                        {'seed': seed, 'asynchrony.kind': 'fedasync', 'rounds_per_call': 2}))
  together = loop.run_lanes(configs, [str(tmp_path / f'v{s}') for s in (0, 1)])
  apart = loop.run_lanes(configs, [str(tmp_path / f'a{s}') for s in (0, 1)], vmap=False)
  assert [r.vmapped for r in together] == [True, True]
  for a, b in zip(together, apart):
    # The event order is the same program's: clock and staleness agree exactly.
    assert [r['time/virtual_s'] for r in a.rows] == [r['time/virtual_s'] for r in b.rows]
    assert [r['async/staleness_mean'] for r in a.rows] == [
        r['async/staleness_mean'] for r in b.rows]


EVENTS_ON_TWO_DEVICES = r'''
import sys, jax, numpy as np
sys.path.insert(0, 'tests')
import tiny
from fedxr_jax.compose import asynchrony
from fedxr_jax.core import asynchronous, round_plan, vectorize
from fedxr_jax.topology import channel as channel_lib
assert jax.device_count() == 2
events = []
for mesh in (None, vectorize.client_mesh()):
  s = tiny.setup(population=16, cohort=8, local_steps=3, mesh=mesh)
  fed = asynchronous.build(s.federation, kind='fedbuff', concurrency=8, buffer=4,
                           staleness='polynomial', a=0.5, b=4.0, mixing=0.6,
                           timing=asynchrony.timing(channel_lib.Channel(), s.problem))
  sample = round_plan.cohort_sampler(0, 16, 8)
  server, clients, frozen = jax.jit(fed.init)(s.world, s.key)
  step, seen = jax.jit(fed.round), []
  for r in range(5):
    plan = round_plan.RoundPlan(sample(r), {'candidates': sample(r + 1)})
    server, clients, _ = step(server, clients, frozen, s.world, plan)
    jobs = jax.device_get(server.asynchrony.jobs)
    seen.append((jobs.client, jobs.version, jobs.arrival, float(server.asynchrony.clock)))
  events.append(seen)
for (c0, v0, a0, t0), (c1, v1, a1, t1) in zip(*events):
  np.testing.assert_array_equal(c0, c1)
  np.testing.assert_array_equal(v0, v1)
  np.testing.assert_array_equal(a0, a1)
  assert t0 == t1
print('SAME EVENTS')
'''


@pytest.mark.slow
def test_the_event_order_is_the_same_on_two_devices():
  import subprocess
  import sys
  env = {**os.environ, 'XLA_FLAGS': (os.environ.get('XLA_FLAGS', '') +
                                     ' --xla_force_host_platform_device_count=2').strip()}
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, '-c', EVENTS_ON_TWO_DEVICES], cwd=repo, env=env,
                       capture_output=True, text=True)
  assert out.returncode == 0 and 'SAME EVENTS' in out.stdout, out.stderr[-3000:]
