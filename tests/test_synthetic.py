"""The on-device XR generator."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedxr_jax.data import catalog
from fedxr_jax.data import synthetic
from fedxr_jax.errors import ConfigError
from helpers import assert_trees_equal

SPEC = synthetic.XRSpec(
    modalities=('vision', 'audio', 'motion', 'gaze'),
    tasks=('gesture', 'intent', 'emotion'),
    devices=('apple_vision_pro', 'ray_ban_meta', 'xreal_air'),
    device_weights=(1.0, 1.0, 1.0), max_examples=16, min_examples=4,
    test_examples=8, modality_dropout=0.25)


@pytest.fixture(scope='module')
def world():
  return synthetic.make_world(jax.random.key(0), SPEC)


def _gen(world, ids, split='train'):
  return jax.jit(jax.vmap(lambda c: synthetic.client_data(world, c, split, SPEC)))(
      jnp.asarray(ids))


def test_client_data_does_not_depend_on_the_cohort(world):
  a = _gen(world, [3, 5])
  b = _gen(world, [9, 5, 3, 1])
  assert_trees_equal(jax.tree.map(lambda x: x[1], a), jax.tree.map(lambda x: x[1], b))
  assert_trees_equal(jax.tree.map(lambda x: x[0], a), jax.tree.map(lambda x: x[2], b))


def test_devices_only_produce_their_sensors(world):
  data = _gen(world, np.arange(300))
  mods = np.asarray(data['examples']['modality_mask'])
  valid = np.asarray(data['examples']['example_mask'])
  for d, name in enumerate(SPEC.devices):
    rows = np.asarray(data['device']) == d
    assert rows.any()
    has = np.array([m in catalog.DEVICES[name].modalities for m in SPEC.modalities])
    used = mods[rows][valid[rows]].any(axis=0)
    np.testing.assert_array_equal(used, has)
  # Ray-Ban Meta glasses: camera and microphone only.
  assert catalog.DEVICES['ray_ban_meta'].modalities == ('vision', 'audio')


def test_dropout_rate_matches_config(world):
  data = _gen(world, np.arange(400))
  devices = np.asarray(data['device'])
  valid = np.asarray(data['examples']['example_mask'])
  mask = np.asarray(data['examples']['modality_mask'])
  vision_devices = np.isin(devices, [0, 1, 2])   # every device has a camera
  observed = 1 - mask[vision_devices][valid[vision_devices]][:, 0].mean()
  assert abs(observed - SPEC.modality_dropout) < 0.02   # ~7000 samples


def test_example_counts_and_padding(world):
  data = _gen(world, np.arange(200))
  n = np.asarray(data['num_examples'])
  assert n.min() >= SPEC.min_examples and n.max() <= SPEC.max_examples
  np.testing.assert_array_equal(np.asarray(data['examples']['example_mask']).sum(1), n)
  x = np.asarray(data['examples']['x']['vision'])
  assert np.all(x[~np.asarray(data['examples']['example_mask'])] == 0)


def test_label_skew_and_user_style(world):
  data = _gen(world, np.arange(64))
  y = np.asarray(data['examples']['y'])[:, :, 0]
  # Dirichlet(0.5) priors: clients' majority classes differ.
  majority = [np.bincount(row, minlength=6).argmax() for row in y]
  assert len(set(majority)) >= 4
  test = _gen(world, [0], 'test')
  train = _gen(world, [0], 'train')
  assert not np.allclose(test['examples']['x']['vision'][0, 0],
                         train['examples']['x']['vision'][0, 0])


def test_modalities_reveal_the_labels(world):
  # Nearest-class-mean on the vision input alone beats chance for gesture.
  data = _gen(world, np.arange(200))
  valid = np.asarray(data['examples']['example_mask']) & np.asarray(
      data['examples']['modality_mask'][..., 0])
  x = np.asarray(data['examples']['x']['vision'])[valid].reshape(valid.sum(), -1)
  y = np.asarray(data['examples']['y'])[valid][:, 0]
  half = len(y) // 2
  means = np.stack([x[:half][y[:half] == k].mean(0) for k in range(6)])
  pred = np.argmin(((x[half:, None] - means[None]) ** 2).sum(-1), axis=1)
  assert (pred == y[half:]).mean() > 0.4   # chance: 1/6


def test_unknown_names_fail_clearly():
  with pytest.raises(ConfigError, match="did you mean 'gesture'"):
    catalog.tasks(['gestures'])
  with pytest.raises(ConfigError, match='not supported yet'):
    catalog.tasks(['anchoring'])
  with pytest.raises(ConfigError, match='unknown device'):
    catalog.devices(['quest9'])
  assert len(catalog.DEVICES) == 14 and len(catalog.TASKS) == 10
