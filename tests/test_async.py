"""Asynchronous server steps (FedBuff, FedAsync) on a virtual clock: known answers.

A 3-client quadratic problem makes every step hand-computable: a client
holds one target t_c, takes one SGD step of rate 1/2 on 0.5 ||w - t_c||^2
(trained = start + (t_c - start) / 2), and computes for a given number of
seconds (its device's FLOP/s), which is all its job takes (`timing`).
"""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedxr_jax.core import asynchronous
from fedxr_jax.core import device_costs
from fedxr_jax.core import problem as problem_lib
from fedxr_jax.core import rng
from fedxr_jax.core import round as round_lib
from fedxr_jax.core import round_plan
from fedxr_jax.compose import asynchrony
from fedxr_jax.topology import centralized
from fedxr_jax.topology import channel as channel_lib
from fedxr_jax.training import checkpoint as checkpoint_lib
from helpers import assert_trees_close, assert_trees_equal
import tiny

TARGETS = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]], np.float32)
SECONDS = (1.0, 2.5, 4.0)     # each client's compute time
FLOPS_PER_STEP = 10.0         # 10 / (10 / s) = s exactly in float32 for these s


def quadratic_problem() -> problem_lib.FederatedProblem:
  def loss(params, batch, meta):
    del meta
    return jnp.mean(0.5 * jnp.sum((params['w']['v'] - batch['t']) ** 2, -1)), {'sums': {}}

  def client_data(source, client_id, split, round_idx=0):
    del split, round_idx
    return {'examples': {'t': source['t'][client_id][None]},
            'num_examples': jnp.int32(1), 'step_budget': jnp.int32(1),
            'device': client_id % 2,
            'device_profile': {'train_flops': source['flops'][client_id],
                               'tx_power_dbm': jnp.float32(20.0),
                               'compute_power_w': jnp.float32(2.0)}}

  return problem_lib.FederatedProblem(
      init_params=lambda key: {'w': {'v': jnp.zeros((2,), jnp.float32)}},
      loss=loss, client_data=client_data,
      module_weights=lambda data, stats=None: {'w': data['num_examples'].astype(jnp.float32)},
      eval_stats=lambda params, data: {'count': jnp.ones((1,), jnp.float32)},
      client_device=lambda source, c: c % 2)


def compute_only(source, ids, version, stats, key):
  """A job takes its compute seconds; its energy is compute power x seconds."""
  del source, ids, version, key
  return stats['compute_s'], stats['compute_power_w'] * stats['compute_s']


def quadratic(kind='fedbuff', buffer=1, staleness='polynomial', a=0.5, b=4.0, mixing=0.6):
  """(async federation, world, key data) of the 3-client problem, all 3 in flight."""
  problem = quadratic_problem()
  world = {'t': jnp.asarray(TARGETS),
           'flops': jnp.asarray([FLOPS_PER_STEP / s for s in SECONDS], jnp.float32)}
  topology = centralized.make(facts=None, geography=problem_lib.geography(problem, world),
                              channel=None)
  sync = round_lib.build_federation(
      problem, {'w': 'shared'}, population_size=3, cohort_size=3, local_steps=1,
      batch_size=1, client_optimizer=optax.sgd(0.5), server_optimizer=optax.sgd(1.0),
      topology=topology, shuffle=False,
      costs=device_costs.DeviceCosts(flops_per_step=FLOPS_PER_STEP))
  fed = asynchronous.build(sync, kind=kind, concurrency=3, buffer=buffer,
                           staleness=staleness, a=a, b=b, mixing=mixing, timing=compute_only,
                           device_of=lambda source, ids: ids % 2, devices=('even', 'odd'))
  return fed, world, rng.key_data(0)


def steps(fed, world, key, n, sample, state=None, first=0):
  """n server steps from `state` (default: init); (state, [metrics], [buffer])."""
  server, clients, frozen = state or jax.jit(fed.init)(world, key)
  step = jax.jit(fed.round)
  metrics, buffers = [], []
  for r in range(first, first + n):
    plan = round_plan.RoundPlan(sample(r), {'candidates': sample(r + 1)})
    server, clients, m = step(server, clients, frozen, world, plan)
    metrics.append(jax.device_get(m))
    buffers.append(jax.device_get(server.asynchrony))
  return (server, clients, frozen), metrics, buffers


def everyone(population):
  return lambda r: np.arange(population, dtype=np.int32)


# ---------------------------------------------------------------------------
# The 3-client schedule by hand. All three start at t = 0 from x0 = 0 and arrive
# at 1, 2.5 and 4 s. With K = 1 the one that arrives is the only client not
# in flight, so it starts again at once:
#   step 0: client 0 (t=1,   started v0) tau 0; restarts at 1   -> 2
#   step 1: client 0 (t=2,   started v1) tau 0; restarts at 2   -> 3
#   step 2: client 1 (t=2.5, started v0) tau 2; restarts at 2.5 -> 5
#   step 3: client 0 (t=3,   started v2) tau 1; restarts at 3   -> 4
# and step 4 finds clients 0 and 2 both at t = 4: the lower id goes first.

def test_a_hand_computed_fedbuff_schedule():
  fed, world, key = quadratic('fedbuff', staleness='polynomial', a=0.5)
  _, metrics, buffers = steps(fed, world, key, 5, everyone(3))
  t0, t1 = TARGETS[0], TARGETS[1]
  x0 = np.zeros(2)
  x1 = x0 + 1.0 * 0.5 * (t0 - x0)              # s(0) = 1, delta = (t - start) / 2
  x2 = x1 + 1.0 * 0.5 * (t0 - x1)
  x3 = x2 + 3 ** -0.5 * 0.5 * (t1 - x0)        # s(2) = 1/sqrt(3), started from x0
  x4 = x3 + 2 ** -0.5 * 0.5 * (t0 - x2)        # s(1) = 1/sqrt(2), started from x2
  assert [float(m['time/virtual_s']) for m in metrics] == [1.0, 2.0, 2.5, 3.0, 4.0]
  assert [float(m['async/staleness_max']) for m in metrics[:4]] == [0, 0, 2, 1]
  arrived = [int(b.jobs.client[np.argmax(b.jobs.start)]) for b in buffers]
  assert arrived == [0, 0, 1, 0, 0]            # the restarted client: the one that arrived
  b4 = buffers[3]
  np.testing.assert_array_equal(b4.jobs.version[np.argsort(b4.jobs.client)], [4, 3, 0])
  np.testing.assert_array_equal(b4.jobs.arrival[np.argsort(b4.jobs.client)], [4.0, 5.0, 4.0])
  # Steps 0-3 applied x1..x4: read the model after 4 steps from a fresh run.
  (server, _, _), _, _ = steps(fed, world, key, 4, everyone(3))
  np.testing.assert_allclose(np.asarray(server.shared['w']['v']), x4, rtol=1e-6)
  assert float(metrics[4]['async/staleness_max']) == 0   # step 4: client 0 (v4), not 2 (v0)
  # K = 1: an upload is applied the moment it arrives, so no client ever waits.
  assert all(float(m['async/idle_fraction']) == 0 for m in metrics)


def test_a_hand_computed_fedasync_schedule():
  # The same schedule; FedAsync mixes the client's model: x += alpha s(tau) (x_c - x),
  # hinge b = 1, a = 1: s(0) = s(1) = 1, s(2) = 1/2. Binary fractions: exact.
  fed, world, key = quadratic('fedasync', staleness='hinge', a=1.0, b=1.0, mixing=0.5)
  (server, _, _), metrics, _ = steps(fed, world, key, 4, everyone(3))
  t0, t1 = TARGETS[0], TARGETS[1]
  trained = lambda start, t: start + 0.5 * (t - start)
  x0 = np.zeros(2)
  x1 = x0 + 0.5 * (trained(x0, t0) - x0)
  x2 = x1 + 0.5 * (trained(x1, t0) - x1)
  x3 = x2 + 0.25 * (trained(x0, t1) - x2)      # alpha s(2) = 1/4, client 1 from x0
  x4 = x3 + 0.5 * (trained(x2, t0) - x3)       # alpha s(1) = 1/2, client 0 from x2
  np.testing.assert_array_equal(np.asarray(server.shared['w']['v']), x4.astype(np.float32))
  np.testing.assert_array_equal(x4, [0.5234375, 0.125])
  assert [float(m['async/staleness_mean']) for m in metrics] == [0, 0, 2, 1]


def test_buffered_arrivals_wait_for_the_kth_and_count_as_idle():
  # K = 2. Step 0 takes clients 0 (t=1) and 1 (t=2.5) at 2.5: client 0 waited 1.5
  # of its 2.5 s. Both restart at 2.5 (v1): 3.5 and 5. Step 1 takes client 0
  # (3.5, tau 0: waited 0.5 of 1.5) and client 2 (4, v0, tau 1: waited 0 of 4).
  fed, world, key = quadratic('fedbuff', buffer=2, staleness='constant')
  _, metrics, buffers = steps(fed, world, key, 2, everyone(3))
  assert [float(m['time/virtual_s']) for m in metrics] == [2.5, 4.0]
  assert [float(m['cost/latency_s']) for m in metrics] == [2.5, 1.5]
  assert [float(m['async/staleness_mean']) for m in metrics] == [0.0, 0.5]
  np.testing.assert_allclose([float(m['async/idle_fraction']) for m in metrics],
                             [1.5 / 5.0, 2.0 / 10.5], rtol=1e-6)
  # Device classes by id parity: clients 0 and 2 waited 2 of 8 s; client 1 never waited.
  np.testing.assert_allclose(float(metrics[1]['async/idle_fraction/even']), 2 / 8, rtol=1e-6)
  assert float(metrics[1]['async/idle_fraction/odd']) == 0.0
  # Energy is the arrivals': compute power 2 W x their seconds.
  assert [float(m['cost/energy_j']) for m in metrics] == [2 * (1.0 + 2.5), 2 * (1.0 + 4.0)]
  np.testing.assert_array_equal(np.sort(buffers[1].jobs.arrival), [5.0, 5.0, 8.0])


# ---------------------------------------------------------------------------
# Staleness.

@pytest.mark.parametrize('kind, a, b, expected', [
    ('constant', 0.5, 4.0, lambda t, a, b: 1.0),
    ('polynomial', 0.5, 4.0, lambda t, a, b: (t + 1) ** -a),
    ('polynomial', 2.0, 4.0, lambda t, a, b: (t + 1) ** -a),
    ('hinge', 0.5, 4.0, lambda t, a, b: 1.0 if t <= b else 1 / (a * (t - b) + 1)),
    ('hinge', 10.0, 2.0, lambda t, a, b: 1.0 if t <= b else 1 / (a * (t - b) + 1)),
])
def test_fedasync_mixing_weight_is_alpha_times_the_staleness_function(kind, a, b, expected):
  taus = np.array([0, 1, 2, 3, 4, 5, 10, 100])
  setup = asynchronous.AsyncSetup(round=None, kind='fedasync', concurrency=4, buffer=1,
                                  staleness=kind, a=a, b=b, mixing=0.6, timing=None)
  got = np.asarray(jax.jit(functools.partial(asynchronous.coefficient, setup))(taus))
  np.testing.assert_allclose(got, [0.6 * expected(float(t), a, b) for t in taus], rtol=1e-6)
  buff = np.asarray(asynchronous.coefficient(setup._replace(kind='fedbuff'), taus))
  np.testing.assert_allclose(buff, [expected(float(t), a, b) for t in taus], rtol=1e-6)


# ---------------------------------------------------------------------------
# FedBuff with K = C is FedAvg.

def _tiny_async(s, **settings):
  defaults = dict(kind='fedbuff', concurrency=s.federation.setup.cohort_size,
                  buffer=s.federation.setup.cohort_size, staleness='constant', a=0.5, b=4.0,
                  mixing=0.6, timing=asynchrony.timing(channel_lib.Channel(), s.problem))
  return asynchronous.build(s.federation, **{**defaults, **settings})


def test_fedbuff_with_k_equal_c_and_no_staleness_discount_is_fedavg():
  # Every step takes every client in flight, all started from the current model;
  # the cohorts are the synchronous sampler's (candidates of a version at size C).
  s = tiny.setup(population=12, cohort=4, local_steps=3)
  fed = _tiny_async(s)
  sample = round_plan.cohort_sampler(0, 12, 4)
  (server, clients, _), metrics, _ = steps(fed, s.world, s.key, 4, sample)
  sync = jax.jit(s.federation.round)
  ref_server, ref_clients, frozen = jax.jit(s.federation.init)(s.world, s.key)
  latency = 0.0
  for r in range(4):
    ref_server, ref_clients, m = sync(ref_server, ref_clients, frozen, s.world, s.plan(r)[0])
    latency += float(m['cost/latency_s'])
    # x + (trained - x) rounds differently from trained: float32 rounding only.
    np.testing.assert_allclose(float(metrics[r]['train/loss']), float(m['train/loss']),
                               rtol=1e-6)
    np.testing.assert_allclose(float(metrics[r]['time/virtual_s']), latency, rtol=1e-6)
    assert float(metrics[r]['async/staleness_max']) == 0
  assert_trees_close(server.shared, ref_server.shared, rtol=1e-6, atol=1e-7)
  assert int(server.round) == int(ref_server.round) == 4


# ---------------------------------------------------------------------------
# Determinism: chunks, resume, one trace.

def test_the_event_order_does_not_depend_on_the_chunk_size():
  runs = []
  for chunk in (0, 2):
    s = tiny.setup(population=16, cohort=8, local_steps=3, chunk_size=chunk)
    fed = _tiny_async(s, concurrency=8, buffer=4, staleness='polynomial')
    _, metrics, buffers = steps(fed, s.world, s.key, 5, round_plan.cohort_sampler(0, 16, 8))
    runs.append((metrics, buffers))
  (m0, b0), (m2, b2) = runs
  for x, y in zip(b0, b2):
    for field in ('client', 'version', 'start', 'arrival'):
      np.testing.assert_array_equal(getattr(x.jobs, field), getattr(y.jobs, field))
    assert x.clock == y.clock
  assert [m['async/staleness_mean'] for m in m0] == [m['async/staleness_mean'] for m in m2]
  assert max(float(m['async/staleness_max']) for m in m0) > 0


def test_a_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path):
  s = tiny.setup(population=16, cohort=8, local_steps=3)
  fed = _tiny_async(s, concurrency=8, buffer=2, staleness='hinge', a=1.0, b=1.0)
  sample = round_plan.cohort_sampler(0, 16, 8)
  whole, metrics, _ = steps(fed, s.world, s.key, 6, sample)
  half, _, _ = steps(fed, s.world, s.key, 3, sample)
  ckpts = checkpoint_lib.Checkpoints(str(tmp_path / 'ckpt'))
  ckpts.save(3, {'server': half[0], 'clients': half[1]})
  target = jax.eval_shape(fed.init, s.world, s.key)
  restored = ckpts.restore(3, {'server': target[0], 'clients': target[1]})
  ckpts.close()
  fresh_frozen = jax.jit(fed.init)(s.world, s.key)[2]
  resumed, rest, _ = steps(fed, s.world, s.key, 3, sample,
                           state=(restored['server'], restored['clients'], fresh_frozen),
                           first=3)
  assert_trees_equal(resumed[0], whole[0])
  assert_trees_equal(resumed[1], whole[1])
  assert [dict(m) for m in rest] == [dict(m) for m in metrics[3:]]


def test_the_server_step_traces_once_and_scans():
  s = tiny.setup(population=16, cohort=8, local_steps=3)
  fed = _tiny_async(s, concurrency=8, buffer=4, staleness='polynomial')
  sample = round_plan.cohort_sampler(0, 16, 8)
  state = jax.jit(fed.init)(s.world, s.key)
  step = jax.jit(chex.assert_max_traces(fed.round, n=1))
  server, clients, frozen = state
  for r in range(3):
    server, clients, _ = step(server, clients, frozen, s.world,
                              round_plan.RoundPlan(sample(r), {'candidates': sample(r + 1)}))
  plans = round_plan.stack([round_plan.RoundPlan(sample(r), {'candidates': sample(r + 1)})
                            for r in range(3)])
  scanned, _, metrics = jax.jit(fed.rounds)(*state, s.world, plans)
  assert metrics['time/virtual_s'].shape == (3,)
  assert_trees_close(scanned.shared, server.shared, rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(scanned.asynchrony.jobs.client, server.asynchrony.jobs.client)


def test_no_client_is_ever_in_flight_twice():
  s = tiny.setup(population=10, cohort=6, local_steps=3)
  fed = _tiny_async(s, concurrency=6, buffer=2, staleness='polynomial')
  _, _, buffers = steps(fed, s.world, s.key, 8, round_plan.cohort_sampler(0, 10, 6))
  for b in buffers:
    assert len(set(b.jobs.client.tolist())) == 6
    assert np.all(b.jobs.arrival >= b.clock)


def test_starts_skip_clients_in_flight_and_take_available_ones_first():
  # Candidates 0..7; 1 and 4 in flight; odd ids unavailable at this version.
  import types
  problem = types.SimpleNamespace(client_data=lambda source, c, split, r: {
      'examples': {}, 'num_examples': jnp.int32(1), 'available': c % 2 == 0})
  setup = asynchronous.AsyncSetup(
      round=types.SimpleNamespace(stage=types.SimpleNamespace(problem=problem, local_steps=1)),
      kind='fedbuff', concurrency=8, buffer=4, staleness='constant', a=0.5, b=4.0,
      mixing=0.6, timing=None)
  candidates, busy = jnp.arange(8, dtype=jnp.int32), jnp.array([1, 4, -1, -1])
  pick = lambda n, version: np.asarray(asynchronous.pick(
      setup, types.SimpleNamespace(key=jnp.asarray(rng.key_data(0)), round=jnp.int32(version)),
      None, candidates, busy, n))
  for version in range(4):
    np.testing.assert_array_equal(pick(3, version), [0, 2, 6])   # the available ones
    four = pick(4, version)
    assert {0, 2, 6} <= set(four.tolist())
    assert not {1, 4} & set(four.tolist()) and list(four) == sorted(four)
  # Which unavailable client fills the 4th place is drawn from (seed, version).
  assert len({int(set(pick(4, v).tolist()).difference({0, 2, 6}).pop()) for v in range(8)}) > 1
  np.testing.assert_array_equal(pick(4, 5), pick(4, 5))


# ---------------------------------------------------------------------------
# The virtual clock of synchronous rows.

def test_synchronous_rows_get_the_sum_of_their_latencies():
  rows = []
  for r, latency in enumerate([0.5, 0.25, 1.0], 1):
    row = {'round': r, 'cost/latency_s': latency}
    asynchrony.add_virtual_time(row, rows)
    rows.append(row)
  assert [r['time/virtual_s'] for r in rows] == [0.5, 0.75, 1.75]
  # A resumed log written before the clock existed: summed from its latencies.
  resumed = {'round': 4, 'cost/latency_s': 2.0}
  asynchrony.add_virtual_time(resumed, [{k: v for k, v in r.items() if k != 'time/virtual_s'}
                                        for r in rows])
  assert resumed['time/virtual_s'] == 3.75
  step_row = {'round': 5, 'cost/latency_s': 1.0, 'time/virtual_s': 9.0}
  asynchrony.add_virtual_time(step_row, rows)
  assert step_row['time/virtual_s'] == 9.0
  no_radio = {'round': 1}
  asynchrony.add_virtual_time(no_radio, [])
  assert 'time/virtual_s' not in no_radio


def test_the_config_block_is_the_settings_dataclass():
  import dataclasses
  from fedxr_jax.configs import default
  block = default.get_config().asynchrony.to_dict()
  assert block == {f.name: f.default for f in dataclasses.fields(asynchrony.Settings)}
  assert block['kind'] == 'none'


def test_bad_settings_are_refused_in_one_line():
  s = tiny.setup(population=8, cohort=4)
  cases = [
      (dict(kind='fedsync'), "asynchrony.kind='fedsync' is not one of"),
      (dict(buffer=5), r'asynchrony.buffer=5 must be in \[1, concurrency=4\]'),
      (dict(concurrency=9, buffer=2), 'concurrency=9 clients in flight exceed population_size=8'),
      (dict(kind='fedasync', buffer=2), 'fedasync steps on every arrival'),
      (dict(staleness='exponential'), "asynchrony.staleness='exponential' is not one of"),
      (dict(mixing=0.0), r'asynchrony.mixing=0.0 must be in \(0, 1\]'),
  ]
  from fedxr_jax.errors import ConfigError
  for settings, message in cases:
    with pytest.raises(ConfigError, match=message) as e:
      _tiny_async(s, **settings)
    assert '\n' not in str(e.value)
