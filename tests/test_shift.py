"""The SHIFT knobs: observed rates match configured ones, hand-checked budgets."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedxr_jax.configs import test as test_config
from fedxr_jax.data import catalog
from fedxr_jax.data import environments
from fedxr_jax.data import shift
from fedxr_jax.data import synthetic
from fedxr_jax.errors import ConfigError
from fedxr_jax.compose import experiment
from helpers import assert_trees_equal

DEVICES = ('apple_vision_pro', 'meta_quest_3', 'hololens_2', 'ray_ban_meta', 'varjo_xr_4')
FLOPS_PER_STEP, MODEL_SCALE, DEADLINE = 2.5e6, 1e5, 2.0
# Bytes to train each tree, before model_scale (normally from the model).
ROLE_BYTES = (('encoders', 1e5), ('heads', 2.2e4), ('lora_a', 3e4), ('lora_b', 3e4))

SPEC = synthetic.with_model_costs(synthetic.XRSpec(
    modalities=('vision', 'audio', 'motion', 'gaze'), tasks=('gesture', 'intent', 'emotion'),
    devices=DEVICES, device_weights=(1.0,) * len(DEVICES), max_examples=8,
    min_examples=8, test_examples=4, local_steps=8, modality_dropout=0.0,
    sensors=shift.Sensors(markov_rate=0.3, markov_burst_rounds=5.0),
    hardware=shift.HardwareKnobs(
        deadline_s=DEADLINE, straggler_prob=0.25, straggler_slowdown=4.0,
        availability=True, memory_limits=True, memory_fraction=0.5,
        model_scale=MODEL_SCALE),
    interactivity=shift.Interactivity(style_drift=0.05),
    functional=shift.Functional(arrival_rounds=(0, 10, 0)),
    temporal=shift.Temporal(schedule='linear', period_rounds=20, lighting=0.5,
                            audio_noise=1.0, sensor_degradation=1.0)),
    FLOPS_PER_STEP, ROLE_BYTES)
CLIENTS, ROUNDS = 512, 200


@pytest.fixture(scope='module')
def world():
  return synthetic.make_world(jax.random.key(3), SPEC)


@pytest.fixture(scope='module')
def states(world):
  """Per-(client, round) state of CLIENTS clients over ROUNDS rounds."""
  def one(c, r):
    profile = synthetic.client_profile(world, c, SPEC)
    state = synthetic.client_round_state(world, profile, c, r, SPEC)
    return {**state, 'device': profile['device'], 'has': profile['has_modality']}
  fn = jax.jit(jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None)))
  return jax.tree.map(np.asarray, fn(jnp.arange(CLIENTS), jnp.arange(ROUNDS)))


_GEN = {}


def _gen(world, ids, round_idx, spec=SPEC):
  key = (spec, len(ids))
  if key not in _GEN:
    _GEN[key] = jax.jit(jax.vmap(lambda w, c, r: synthetic.client_data(
        w, c, 'train', spec, round_idx=r), in_axes=(None, 0, None)))
  return jax.tree.map(np.asarray, _GEN[key](world, jnp.asarray(ids), jnp.int32(round_idx)))


@pytest.fixture(scope='module')
def rounds(world):
  """Train data of 256 clients at rounds 0, 5, 10, 20."""
  return {r: _gen(world, np.arange(256), r) for r in (0, 5, 10, 20)}


def _client(tree, i):
  return jax.tree.map(lambda x: x[i], tree)


# tests/test_synthetic.py::test_client_data_does_not_depend_on_the_cohort is default.
@pytest.mark.slow
def test_data_is_identical_on_any_cohort_size(world, rounds):
  """Client 5 at round 20 alone, among 8 and among 256: bit-identical."""
  alone = jax.jit(lambda w, c, r: synthetic.client_data(w, c, 'train', SPEC, round_idx=r))(
      world, jnp.int32(5), jnp.int32(20))
  eight = _gen(world, [7, 6, 5, 4, 3, 2, 1, 0], 20)
  assert_trees_equal(_client(rounds[20], 5), alone)
  assert_trees_equal(_client(rounds[20], 5), _client(eight, 2))


# ---------------------------------------------------------------------------
# S: Markov sensor dropout


def test_markov_dropout_rate_and_burst_length(states):
  off = states['sensor_off'].transpose(0, 2, 1).reshape(-1, ROUNDS)   # [chains, R]
  rate, burst = SPEC.sensors.markov_rate, SPEC.sensors.markov_burst_rounds
  a, b = SPEC.sensors.markov_probs
  lam = 1 - a - b
  # Stationary rate; autocorrelation lam shrinks the effective sample size.
  n_eff = off.size * (1 - lam) / (1 + lam)
  assert abs(off.mean() - rate) < 4.5 * math.sqrt(rate * (1 - rate) / n_eff)
  # Transition probabilities (the MLE of a Markov chain): off -> on is 1/burst.
  prev, nxt = off[:, :-1], off[:, 1:]
  n_off, n_on = prev.sum(), (~prev).sum()
  b_hat = (prev & ~nxt).sum() / n_off
  a_hat = (~prev & nxt).sum() / n_on
  assert abs(b_hat - b) < 4.5 * math.sqrt(b * (1 - b) / n_off)
  assert abs(a_hat - a) < 4.5 * math.sqrt(a * (1 - a) / n_on)
  # Completed bursts, counted directly (runs cut by the window edges left
  # out: a bias of about -var/ROUNDS = -0.1 rounds).
  lengths = []
  for row in off:
    edges = np.flatnonzero(np.diff(row.astype(np.int8)))
    starts = edges[row[edges + 1]] + 1         # on -> off
    ends = edges[~row[edges + 1]] + 1          # off -> on
    ends = ends[ends > (starts[0] if len(starts) else ROUNDS)]
    lengths += (ends[:len(starts)] - starts[:len(ends)]).tolist()
  sd = math.sqrt((1 - b) / b ** 2 / len(lengths))
  assert len(lengths) > 10_000
  assert abs(np.mean(lengths) - burst) < 0.1 + 4.5 * sd


def test_markov_state_masks_the_data(rounds, states):
  for r in (0, 5, 10, 20):
    ex = rounds[r]['examples']
    present = states['has'][:256, r] & ~states['sensor_off'][:256, r]
    np.testing.assert_array_equal(ex['modality_mask'], np.broadcast_to(
        present[:, None], ex['modality_mask'].shape) & ex['example_mask'][..., None])


def test_markov_window_and_config_checks():
  s = shift.Sensors(markov_rate=0.3, markov_burst_rounds=5.0)
  a, b = s.markov_probs
  assert a / (a + b) == pytest.approx(0.3) and b == pytest.approx(0.2)
  assert (1 - a - b) ** s.window <= shift.MARKOV_EPS < (1 - a - b) ** (s.window - 1)
  with pytest.raises(ConfigError, match='shorter than'):
    shift.Sensors(markov_rate=0.5, markov_burst_rounds=1.5).check()
  with pytest.raises(ConfigError, match=r'markov_rate must be in \[0, 1\)'):
    shift.Sensors(markov_rate=1.0).check()


# ---------------------------------------------------------------------------
# H: budgets, deadlines, stragglers, availability, memory


def test_deadline_budgets_equal_a_hand_computation(states):
  flops = np.array([catalog.DEVICES[d].train_flops for d in DEVICES])
  slow = states['slowdown']
  assert set(np.unique(slow)) == {1.0, 4.0}
  time_per_step = MODEL_SCALE * FLOPS_PER_STEP / (flops[states['device']] / slow)
  expected = np.minimum(8, np.floor(DEADLINE / time_per_step))
  np.testing.assert_array_equal(states['step_budget'], expected)
  # By hand for the two headsets: Vision Pro 0.9 TFLOP/s -> 0.278 s per step
  # -> 7 steps in 2 s (1 when 4x slower); Quest 3 0.45 TFLOP/s -> 3 (0).
  dev, budget = states['device'], states['step_budget']
  assert set(budget[(dev == 0) & (slow == 1)]) == {7}
  assert set(budget[(dev == 0) & (slow == 4)]) == {1}
  assert set(budget[(dev == 1) & (slow == 1)]) == {3}
  assert set(budget[(dev == 1) & (slow == 4)]) == {0}
  # A device that cannot finish one step sits the round out.
  assert not states['available'][budget == 0].any()


def test_straggler_rate_matches(states):
  p, n = SPEC.hardware.straggler_prob, states['slowdown'].size
  assert abs((states['slowdown'] > 1).mean() - p) < 4.5 * math.sqrt(p * (1 - p) / n)


def test_availability_rate_matches_its_probability(states):
  """Bernoulli(p) draws: in every bin of p, the observed rate matches mean p."""
  budget_ok = states['step_budget'] >= 1   # the deadline also gates 'available'
  avail, prob = states['available'][budget_ok], states['available_prob'][budget_ok]
  assert prob.min() >= 0 and prob.max() <= 1 and prob.std() > 0.1
  for lo in np.arange(0, 1, 0.2):
    rows = (prob >= lo) & (prob < lo + 0.2)
    n, p = rows.sum(), prob[rows].mean()
    assert n > 500
    assert abs(avail[rows].mean() - p) < 4.5 * math.sqrt(p * (1 - p) / n) + 1e-3
  # Mains-powered (tethered Varjo) devices are limited only by the time of day.
  varjo = states['device'] == DEVICES.index('varjo_xr_4')
  assert states['available_prob'][varjo].min() >= SPEC.hardware.day_availability - 1e-6


def test_battery_and_time_of_day():
  knobs = shift.HardwareKnobs(round_hours=1.0, recharge_h=2.0, min_battery=0.2,
                              day_availability=0.2)
  level, charging = shift.battery(0.0, jnp.arange(6), 4.0, knobs)
  np.testing.assert_allclose(level, [1.0, 0.75, 0.5, 0.25, 0.0, 0.5], atol=1e-6)
  np.testing.assert_array_equal(charging, [False] * 4 + [True, True])
  p = shift.availability_prob(jnp.array([3.0, 15.0, 3.0]), jnp.array([1.0, 1.0, 0.6]),
                              jnp.array([False, False, False]), jnp.array(False), knobs)
  np.testing.assert_allclose(p, [1.0, 0.2, 0.5], atol=1e-6)


def test_memory_decides_the_trees_a_device_can_train(rounds):
  data = rounds[0]
  ram = np.array([catalog.DEVICES[d].ram_gb for d in DEVICES]) * 1e9 * 0.5
  for role, need in ROLE_BYTES:
    expected = need * MODEL_SCALE <= ram[data['device']]
    np.testing.assert_array_equal(data['trainable'][role], expected)
  # Varjo's 24 GB GPU trains everything; Ray-Ban glasses (2 GB) nothing.
  varjo, glasses = data['device'] == 4, data['device'] == 3
  assert all(data['trainable'][r][varjo].all() for r, _ in ROLE_BYTES)
  assert not any(data['trainable'][r][glasses].any() for r, _ in ROLE_BYTES)


def test_model_costs_are_filled_by_the_experiment():
  config = test_config.get_config()
  config.data.hardware.deadline_s = 1.0
  config.data.hardware.memory_limits = True
  spec, _, _, problem, _ = experiment.make_problem(config)
  assert spec.hardware.flops_per_step > 0
  trained = {r for r, mode in experiment.make_plan(config, 2).items() if mode != 'frozen'}
  present = jax.eval_shape(lambda: problem.init_params(jax.random.key(0))).keys()
  assert {r for r, _ in spec.hardware.role_train_bytes} == trained & set(present)
  # A spec without them refuses to generate instead of guessing.
  bare = synthetic.XRSpec(modalities=('vision',), tasks=('object',), devices=DEVICES[:1],
                          device_weights=(1.0,), hardware=shift.HardwareKnobs(deadline_s=1.0))
  world = synthetic.make_world(jax.random.key(0), bare)
  with pytest.raises(ConfigError, match='FLOPs per step'):
    jax.eval_shape(lambda: synthetic.client_data(world, 0, 'train', bare))


# ---------------------------------------------------------------------------
# I, F, T


def test_style_drifts_at_the_configured_rate(world):
  def style(c, r):
    profile = synthetic.client_profile(world, c, SPEC)
    return synthetic.client_style(world, profile, r, SPEC)['gesture']['vision']
  fn = jax.jit(jax.vmap(style, in_axes=(0, None)))
  s0, s10, s30 = (np.asarray(fn(jnp.arange(256), r)).reshape(256, -1) for r in (0, 10, 30))
  for sr, r in ((s10, 10), (s30, 30)):   # E<s_0, s_r> / E|s|^2 = cos(w r)
    corr = (s0 * sr).sum() / np.sqrt((s0 ** 2).sum() * (sr ** 2).sum())
    assert abs(corr - math.cos(0.05 * r)) < 0.1
  assert abs((s30 ** 2).mean() / (s0 ** 2).mean() - 1) < 0.2   # same spread


def test_tasks_arrive_at_their_round(rounds):
  before, after = rounds[5]['task_mask'], rounds[10]['task_mask']
  assert not before[:, 1].any()             # 'intent' arrives at round 10
  assert after[:, 1].any()
  np.testing.assert_array_equal(before[:, [0, 2]], after[:, [0, 2]])
  np.testing.assert_array_equal(rounds[20]['task_mask'], after)
  assert before.any(axis=1).all()   # every client keeps a task of its own


def test_environment_task_mix():
  spec = synthetic.XRSpec(modalities=('vision', 'audio', 'motion', 'gaze'),
                          tasks=('gesture', 'object', 'emotion'), devices=DEVICES,
                          device_weights=(1.0,) * 5, task_keep_prob=0.8,
                          functional=shift.Functional(environment_mix=True))
  world = synthetic.make_world(jax.random.key(0), spec)
  p = jax.jit(jax.vmap(lambda c: synthetic.client_profile(world, c, spec)))(
      jnp.arange(4000))
  env, kept = np.asarray(p['environment']), np.asarray(p['kept_tasks'])
  for e, name in enumerate(spec.environment_names):
    rows = env == e
    for t, task in enumerate(spec.tasks):
      want = 0.8 * environments.affinity(name, task)
      n = rows.sum()
      assert abs(kept[rows, t].mean() - want) < 4.5 * math.sqrt(want * (1 - want) / n) + 1e-3


def test_drift_moves_the_distribution(rounds):
  """Linear drift over 20 rounds: at round 20 vision is darker by `lighting`,
  audio and IMU noisier; the examples (labels) are the same."""
  a, b = rounds[0]['examples'], rounds[20]['examples']
  np.testing.assert_array_equal(a['y'], b['y'])
  both = (a['modality_mask'] & b['modality_mask'])
  vis = both[..., 0]
  shift_mean = b['x']['vision'][vis].mean() - a['x']['vision'][vis].mean()
  # Darker by L = 0.5 (x (1 + 0.75 mean signal), which is ~0): ~50 sd of the
  # mean of ~250k pixels.
  assert abs(shift_mean + 0.5) < 0.05
  for m, name in ((1, 'audio'), (2, 'motion')):
    on = both[..., m]
    ratio = b['x'][name][on].std() / a['x'][name][on].std()
    assert ratio > 1.2, (name, ratio)   # noise std x2 on a signal of similar power


def test_no_knob_no_change_over_rounds():
  spec = synthetic.XRSpec(modalities=('vision', 'gaze'), tasks=('gesture', 'emotion'),
                          devices=DEVICES[:2], device_weights=(1.0, 1.0),
                          max_examples=8, min_examples=8)
  world = synthetic.make_world(jax.random.key(0), spec)
  assert_trees_equal(_gen(world, np.arange(8), 0, spec), _gen(world, np.arange(8), 50, spec))
  assert 'available' not in _gen(world, np.arange(8), 0, spec)


@pytest.mark.parametrize('schedule,expected', [
    ('none', [0, 0, 0, 0]), ('linear', [0, 0.5, 1, 1]),
    ('cyclic', [0, 1, 0, 1]), ('step', [0, 0, 1, 1])])
def test_drift_schedules(schedule, expected):
  t = shift.Temporal(schedule=schedule, period_rounds=10, lighting=1.0)
  p = shift.drift_progress(jnp.array([0, 5, 10, 15]), t)
  np.testing.assert_allclose(p, expected, atol=1e-6)


# ---------------------------------------------------------------------------
# Config blocks


@pytest.mark.parametrize('block,key,value,match', [
    ('sensors', 'markov_burst_rounds', 1.0, 'shorter than'),
    ('sensors', 'addons', ('neuralink',), 'unknown add-on'),
    ('hardware', 'straggler_prob', 1.5, r'straggler_prob must be in \[0, 1\]'),
    ('hardware', 'deadline_s', -1.0, 'deadline_s must be >= 0'),
    ('functional', 'arrival_rounds', (0, 3), 'has 2 entries for 3'),
    ('functional', 'arrival_rounds', (2, 3, 4), 'from round 0'),
    ('temporal', 'schedule', 'sudden', 'is not one of'),
])
def test_bad_shift_config_is_a_clear_error(block, key, value, match):
  config = test_config.get_config()
  if block == 'sensors' and key == 'markov_burst_rounds':
    config.data.sensors.markov_rate = 0.5
  config.data[block][key] = value
  with pytest.raises(ConfigError, match=match):
    experiment.validate(config)


def test_unknown_block_key_and_environment_fail_clearly():
  with pytest.raises(ConfigError, match="did you mean 'deadline_s'"):
    shift.from_block(shift.HardwareKnobs, {'deadline': 1.0}, 'data.hardware')
  config = test_config.get_config()
  config.data.environments = ('hospital',)
  config.data.devices = ('ray_ban_meta',)
  with pytest.raises(ConfigError, match='deployed in none'):
    synthetic.spec_from_config(config.data, 2)
