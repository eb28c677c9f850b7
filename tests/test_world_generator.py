"""world v2: determinism, shapes, shared renderers, labels and targets from latents."""
import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from fedxr_jax.data import shift
from fedxr_jax.data import world
from fedxr_jax.data.world import generator
from fedxr_jax.data.world import primitives
from helpers import assert_trees_equal

ALL_TASKS = tuple(t for t in world.TASKS if t != 'shared_grounding')
SPEC = world.WorldSpec(
    modalities=world.spec.MODALITIES, tasks=ALL_TASKS,
    devices=('magic_leap_2', 'realwear_navigator_520', 'ray_ban_meta'),
    max_examples=8, min_examples=4, test_examples=4, image_size=8, image_patch=4,
    map_size=4, steps=8, audio_bins=8, sensors=shift.Sensors(addons=('physio_band',)))
CLEAN = dataclasses.replace(SPEC, noise_std=0.0, modality_dropout=0.0)


COHORT = 8


@functools.lru_cache(maxsize=None)
def _programs(spec):
  """Jitted (latents, client data) of one client; the client id is traced."""
  return (jax.jit(lambda w, c: world.example_latents(w, c, 'train', spec)),
          jax.jit(lambda w, c: world.client_data(w, c, 'train', spec)))


@pytest.fixture(scope='module')
def gen():
  """(world, data fn of (ids, round)): cohorts of COHORT, traced once for the module
  (every test that uses it also checks that the round's generation compiles once)."""
  w = world.make_world(world.world_key(0), SPEC.check())

  @jax.jit
  @chex.assert_max_traces(n=1)
  def cohort(w, ids, r):
    return jax.vmap(lambda c: world.client_data(w, c, 'train', SPEC, r))(ids)

  def data(ids, r=0):
    chunks = [cohort(w, jnp.asarray(ids[i:i + COHORT]), r) for i in range(0, len(ids), COHORT)]
    return jax.tree.map(lambda *x: np.concatenate(x), *chunks)
  return w, data


@pytest.mark.fusion_emitters
def test_data_is_a_pure_function_of_seed_client_split_and_round(gen):
  w, data = gen
  a = data(np.arange(8))
  assert_trees_equal(a, data(np.arange(8)))
  w2 = world.make_world(world.world_key(0), SPEC)
  assert_trees_equal(w, w2)
  # A client's data does not depend on the cohort it is drawn with.
  assert_trees_equal(jax.tree.map(lambda x: x[3], a), jax.tree.map(
      lambda x: x[0], data(np.array([3, 9, 40, 41, 42, 43, 44, 45]))))
  alone = _programs(SPEC)[1](w, 3)
  assert_trees_equal(jax.tree.map(lambda x: x[3], a), jax.tree.map(np.asarray, alone))
  # Without time knobs the local dataset is the same every round.
  assert_trees_equal(a, data(np.arange(8), r=17))
  assert not np.array_equal(a['examples']['x']['vision'][0], a['examples']['x']['vision'][1])
  test = jax.eval_shape(lambda: world.client_data(w, 0, 'test', SPEC))
  assert test['examples']['y'].shape == (SPEC.test_examples, len(ALL_TASKS))
  other = world.make_world(world.world_key(1), SPEC)
  assert not np.array_equal(other['prototypes']['gesture'], w['prototypes']['gesture'])


def test_layout_and_dtypes(gen):
  _, data = gen
  d = data(np.arange(8))
  ex = d['examples']
  n, t, m = SPEC.max_examples, len(SPEC.tasks), len(SPEC.modalities)
  for name in SPEC.modalities:
    assert ex['x'][name].shape == (8, n) + SPEC.shape(name)
    assert ex['x'][name].dtype == np.float32
  assert ex['y'].shape == (8, n, t) and ex['y'].dtype == np.int32
  assert ex['label_mask'].shape == (8, n, t) and ex['modality_mask'].shape == (8, n, m)
  kinds = {name: world.TASKS[name].kind for name in SPEC.tasks}
  assert set(ex['targets']) == {k for k, v in kinds.items() if v != 'classification'}
  for name, target in ex['targets'].items():
    assert target.shape == (8, n, world.TASKS[name].size) and target.dtype == np.float32
  assert d['task_mask'].shape == (8, t) and d['num_examples'].dtype == np.int32
  for i, name in enumerate(SPEC.tasks):
    if kinds[name] == 'classification':
      assert 0 <= ex['y'][..., i].min() and ex['y'][..., i].max() < world.TASKS[name].size


def test_sensors_follow_table1_devices(gen):
  w, data = gen
  d = data(np.arange(64))
  # Table 1 sensors, plus the physio band that fits every device here.
  has = np.asarray(w['device_modalities']) | np.asarray(w['addon_modalities']).any(0)
  assert has[:, SPEC.modalities.index('physio')].all()
  for c in range(64):
    valid = d['examples']['example_mask'][c]
    present = d['examples']['modality_mask'][c][valid]
    assert not np.any(present & ~has[d['device'][c]][None])
    for i, name in enumerate(SPEC.modalities):
      absent = ~d['examples']['modality_mask'][c, :, i]
      assert np.all(d['examples']['x'][name][c][absent] == 0.0)
  ray_ban = SPEC.devices.index('ray_ban_meta')
  glasses = d['device'] == ray_ban
  assert glasses.any()
  gaze_tasks = [i for i, t in enumerate(SPEC.tasks) if set(SPEC.task_modalities(t)) <= {'gaze'}]
  assert not d['task_mask'][glasses][:, gaze_tasks].any()   # no eye tracker on the glasses


@pytest.mark.parametrize('size,channels', [(8, 1), (224, 3)])
def test_vision_renders_at_the_resolution_the_model_asks(size, channels):
  spec = world.WorldSpec(image_size=size, image_channels=channels,
                         image_patch=size // 2 if size == 8 else 16).check()
  w = jax.eval_shape(lambda: world.make_world(jax.random.key(0), spec))
  out = jax.eval_shape(lambda w: world.client_data(w, 0, 'train', spec), w)
  assert out['examples']['x']['vision'].shape == (spec.max_examples, size, size, channels)


def test_the_same_scene_at_two_resolutions():
  """Content does not depend on the resolution: a 64 px frame pooled to 16 px
  is close to the 16 px frame of the same example."""
  frames = {}
  for size in (16, 64):
    spec = world.WorldSpec(modalities=('vision',), tasks=('gesture',),
                           devices=('apple_vision_pro',), image_size=size,
                           image_patch=size // 2, noise_std=0.0, modality_dropout=0.0,
                           max_examples=4, min_examples=4).check()
    w = world.make_world(world.world_key(0), spec)
    frames[size] = np.asarray(jax.jit(lambda w, spec=spec: world.client_data(
        w, 0, 'train', spec))(w)['examples']['x']['vision'])
  pooled = frames[64].reshape(4, 16, 4, 16, 4, 1).mean((2, 4))
  for i in range(4):
    assert np.corrcoef(pooled[i].ravel(), frames[16][i].ravel())[0, 1] > 0.9


def _latents(spec, seed=0, client=0):
  w = world.make_world(world.world_key(seed), spec)
  return w, _programs(spec)[0](w, client)


@pytest.mark.fusion_emitters
def test_labels_are_the_nearest_prototype_of_the_codes(gen):
  w, data = gen
  me = _programs(SPEC)[0](w, 2)
  examples = data(np.arange(8))['examples']
  y = examples['y'][2]
  for block, _ in primitives.BLOCKS:
    codes, protos = np.asarray(me['codes'][block]), np.asarray(w['prototypes'][block])
    nearest = np.argmin(((codes[:, None] - protos[None]) ** 2).sum(-1), -1)
    np.testing.assert_array_equal(me['labels'][block], nearest)
    # tasks.CODE_TASKS: the block's code target is the code itself.
    np.testing.assert_array_equal(examples['targets'][f'{block}_code'][2], codes)
    if block in SPEC.tasks:
      np.testing.assert_array_equal(y[:, SPEC.tasks.index(block)], nearest)


def test_worlds_differ_in_class_definitions_not_in_physics():
  """The same latents render the same IMU, hand, gaze and physiology whatever the
  world (renderers take no world), while two worlds label those codes differently."""
  spec = CLEAN.check()
  w0, me = _latents(spec, seed=0)
  w1 = world.make_world(world.world_key(1), spec)
  env0 = generator.environment_params(w0, me['profile']['environment'], spec)
  env1 = generator.environment_params(w1, me['profile']['environment'], spec)
  render = jax.jit(jax.vmap(lambda lat, code, env: generator.render_example(
      lat, me['user'], env, spec, code)[0], in_axes=(0, 0, None)))
  x0 = render(me['lat'], me['lat']['u']['keyword'], env0)
  x1 = render(me['lat'], me['lat']['u']['keyword'], env1)
  for m in ('motion', 'hand', 'gaze', 'physio', 'depth'):
    np.testing.assert_array_equal(x0[m], x1[m])
  assert not np.array_equal(x0['vision'], x1['vision'])   # each world's rooms look different
  codes = np.asarray(me['codes']['gesture'])
  relabel = [np.argmin(((codes[:, None] - np.asarray(w['prototypes']['gesture'])[None]) ** 2)
                       .sum(-1), -1) for w in (w0, w1)]
  assert np.mean(relabel[0] != relabel[1]) > 0.3


def test_targets_are_functions_of_the_latents():
  spec = CLEAN.check()
  w, me = _latents(spec, client=1)
  d = _programs(spec)[1](w, 1)
  targets = d['examples']['targets']
  # Two programs (latents alone, client_data) fuse differently: equal to an ulp.
  np.testing.assert_allclose(targets['object_box'], me['lat']['box'], rtol=1e-6)
  np.testing.assert_allclose(targets['cognitive_load'][:, 0], me['lat']['load'], rtol=1e-6)
  # The eye tracker's last sample, through the user's calibration, is the gaze point.
  raw = np.asarray(d['examples']['x']['gaze'][:, -1, :2])
  calib, bias = np.asarray(me['user']['calib']), np.asarray(me['user']['calib_bias'])
  point = 0.5 + np.linalg.solve(calib, (raw - bias).T).T / 4.0
  has_gaze = np.asarray(d['examples']['modality_mask'][:, spec.modalities.index('gaze')])
  np.testing.assert_allclose(point[has_gaze], targets['gaze_point'][has_gaze], atol=1e-5)
  # The hand tracker's last wrist sample projects to the first hand_pose keypoint.
  wrist = (np.asarray(d['examples']['x']['hand'][:, -1, :3]) * 0.1
           + primitives.WRIST_REST)
  img = np.stack([0.5 + primitives.FOCAL * wrist[:, 0] / wrist[:, 2],
                  0.5 - primitives.FOCAL * wrist[:, 1] / wrist[:, 2]], -1)
  has_hand = np.asarray(d['examples']['modality_mask'][:, spec.modalities.index('hand')])
  np.testing.assert_allclose(img[has_hand], targets['hand_pose'][has_hand, :2], atol=1e-5)
  cell = np.floor(np.clip(targets['gaze_point'], 0, 0.999) * 3).astype(int)
  np.testing.assert_array_equal(d['examples']['y'][:, spec.tasks.index('gaze_target')],
                                cell[:, 1] * 3 + cell[:, 0])


def test_jit_and_vmap_over_clients_compile_once(gen):
  _, data = gen   # its cohort function fails on a second trace
  for r, ids in enumerate((np.arange(8), np.arange(8) + 40, np.array([7, 1, 5, 3, 2, 9, 0, 4]))):
    data(ids, r)


def test_v1_round_knobs_apply_to_v2_clients():
  """Sensor bursts, availability and step budgets come from v1's client machinery."""
  spec = dataclasses.replace(
      SPEC, modalities=('motion', 'gaze', 'audio'), tasks=('gesture', 'intent'),
      sensors=shift.Sensors(markov_rate=0.5, markov_burst_rounds=4.0),
      hardware=shift.HardwareKnobs(availability=True)).check()
  w = world.make_world(world.world_key(0), spec)
  d = jax.jit(jax.vmap(lambda c: world.client_data(w, c, 'train', spec, 3)))(jnp.arange(32))
  assert 'available' in d and d['available'].dtype == bool
  mask = np.asarray(d['examples']['modality_mask'])
  valid = np.asarray(d['examples']['example_mask'])
  off = ~mask.any(1) & valid.any(1)[:, None]          # a whole modality off this round
  assert off.mean() > 0.2


def test_held_out_contexts_use_v1_rules():
  eval_config = ml_collections.ConfigDict(dict(
      holdout_environments=('outdoor',), holdout_devices=(), holdout_clients=16))
  spec = world.with_holdouts(world.WorldSpec(), eval_config, first_id=200)
  assert spec.holdout_groups == ('holdout_environments',)
  w = world.make_world(world.world_key(0), spec)
  envs = jax.jit(jax.vmap(lambda c: world.client_profile(w, c, spec)['environment']))(
      jnp.arange(216))
  outdoor = spec.environment_names.index('outdoor')
  assert not np.any(np.asarray(envs[:200]) == outdoor)
  assert np.all(np.asarray(envs[200:]) == outdoor)
