"""The catalogs and the on-device XR generator."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedxr_jax.core import trees
from fedxr_jax.data import catalog
from fedxr_jax.data import environments
from fedxr_jax.data import shift
from fedxr_jax.data import synthetic
from fedxr_jax.errors import ConfigError
from helpers import assert_trees_equal

SPEC = synthetic.XRSpec(
    modalities=('vision', 'audio', 'motion', 'gaze'),
    tasks=('gesture', 'intent', 'emotion'),
    devices=('apple_vision_pro', 'ray_ban_meta', 'xreal_air'),
    device_weights=(1.0, 1.0, 1.0), max_examples=16, min_examples=4,
    test_examples=8, modality_dropout=0.25)

# Every modality, and a task that reads each of the new ones.
FULL = synthetic.XRSpec(
    modalities=tuple(catalog.MODALITIES), tasks=('gesture', 'emotion', 'scene'),
    devices=('magic_leap_2', 'realwear_navigator_520'), device_weights=(1.0, 1.0),
    max_examples=16, min_examples=16, test_examples=8, modality_dropout=0.0,
    sensors=shift.Sensors(addons=('physio_band',)))


@pytest.fixture(scope='module')
def world():
  return synthetic.make_world(jax.random.key(0), SPEC)


_GEN = {}


def _gen(world, ids, split='train'):
  """Data of `ids`; one compile per (split, number of ids) for the module."""
  key = (split, len(ids))
  if key not in _GEN:
    _GEN[key] = jax.jit(jax.vmap(
        lambda w, c: synthetic.client_data(w, c, split, SPEC), in_axes=(None, 0)))
  return jax.tree.map(np.asarray, _GEN[key](world, jnp.asarray(ids)))


@pytest.fixture(scope='module')
def data(world):
  """Train data of clients 0..399, shared by the tests below."""
  return _gen(world, np.arange(400))


@pytest.fixture(scope='module')
def full_data():
  world = synthetic.make_world(jax.random.key(1), FULL)
  fn = jax.jit(jax.vmap(lambda c: synthetic.client_data(world, c, 'train', FULL)))
  return jax.tree.map(np.asarray, fn(jnp.arange(160)))


# ---------------------------------------------------------------------------
# Catalogs


def _check_fact(where, fact):
  assert isinstance(fact, catalog.Fact), where
  assert fact.source and len(fact.source) > 8, f'{where}: no source'
  if isinstance(fact.value, str):
    assert fact.value, where
  else:
    assert fact.value >= 0 and not math.isnan(fact.value), where


def test_every_device_has_every_figure_with_a_source():
  assert len(catalog.DEVICES) == 14
  for name, d in catalog.DEVICES.items():
    assert d.hardware is not None, name
    for field, fact in d.hardware.facts().items():
      _check_fact(f'{name}.{field}', fact)
    h = d.hardware
    assert h.peak_fp32_tflops.value > 0 and h.ram_gb.value > 0
    assert 0 < h.train_utilization.value <= 1
    assert 0 < h.compute_power_w.value and 0 < h.tx_power_dbm.value <= 30
    if h.battery_wh.value == 0:   # only mains-powered devices have no battery
      assert 'mains' in h.battery_wh.source and math.isinf(h.runtime_h.value)
    else:
      assert 0 < h.runtime_h.value < 24
    # train_flops, compute_tier and the cost-model fields are consistent.
    assert d.train_flops == pytest.approx(h.peak_fp32_tflops.value * 1e12
                                          * h.train_utilization.value)
    assert d.compute_tier == pytest.approx(d.train_flops / catalog.REFERENCE_TRAIN_FLOPS)
    assert d.modalities and all(m in catalog.MODALITIES for m in d.modalities)
    # Table 1 environments map onto the six deployment environments.
    assert any(environments.fits(d, e) for e in catalog.ENVIRONMENTS), name
  assert catalog.DEVICES['apple_vision_pro'].compute_tier == pytest.approx(1.0)
  assert catalog.DEVICES['ray_ban_meta'].modalities == ('vision', 'audio')
  assert catalog.DEVICES['realwear_navigator_520'].modalities == (
      'vision', 'audio', 'motion', 'thermal')
  assert 'depth' in catalog.DEVICES['meta_quest_3'].modalities   # Spatial Mapping


def test_every_task_has_modalities_output_and_latency():
  assert len(catalog.TASKS) == 10
  for name, t in catalog.TASKS.items():
    assert t.modalities, name
    assert t.num_classes >= 2 and t.output.startswith('class')
    assert t.latency_ms in (11.0, 50.0, 100.0, 200.0)
    assert all(m in catalog.MODALITIES for m in t.carriers)
    assert not t.extra_modalities or t.extra_why
  # The Table 2 spatial-mapping tasks read depth and are supported now.
  for name in ('scene', 'environment_mapping', 'anchoring'):
    assert 'depth' in catalog.TASKS[name].modalities
  assert catalog.TASKS['gaze_target'].latency_ms == 11.0
  assert len(catalog.ENVIRONMENTS) == 6
  for e in catalog.ENVIRONMENTS.values():
    assert e.rationale and all(t in catalog.TASKS for t in e.task_mix)
    assert all(0 < w <= 1 for w in e.task_mix.values())


def test_unknown_names_fail_clearly():
  with pytest.raises(ConfigError, match="did you mean 'gesture'"):
    catalog.tasks(['gestures'])
  with pytest.raises(ConfigError, match='unknown device'):
    catalog.devices(['quest9'])
  with pytest.raises(ConfigError, match="did you mean 'office'"):
    catalog.environments(['offices'])
  with pytest.raises(ConfigError, match='unknown add-on'):
    catalog.addons(['neuralink'])


# ---------------------------------------------------------------------------
# The generator


def _client(tree, i):
  return jax.tree.map(lambda x: x[i], tree)


def test_client_data_does_not_depend_on_the_cohort(world, data):
  """Client 5 alone, in a cohort of 8 and in one of 400: bit-identical."""
  alone = jax.jit(lambda w, c: synthetic.client_data(w, c, 'train', SPEC))(
      world, jnp.int32(5))
  eight = _gen(world, [9, 5, 3, 1, 0, 2, 4, 6])
  assert_trees_equal(_client(data, 5), alone)
  assert_trees_equal(_client(data, 5), _client(eight, 1))
  assert_trees_equal(_client(data, 3), _client(eight, 2))


def test_devices_only_produce_their_sensors(data):
  mods = data['examples']['modality_mask']
  valid = data['examples']['example_mask']
  for d, name in enumerate(SPEC.devices):
    rows = data['device'] == d
    assert rows.any()
    has = np.array([m in catalog.DEVICES[name].modalities for m in SPEC.modalities])
    used = mods[rows][valid[rows]].any(axis=0)
    np.testing.assert_array_equal(used, has)


def test_per_sample_dropout_rate_matches_config(data):
  valid = data['examples']['example_mask']
  vision = data['examples']['modality_mask'][..., 0][valid]
  # Every device has a camera: P(dropped) = modality_dropout per sample.
  n = vision.size
  sd = math.sqrt(SPEC.modality_dropout * (1 - SPEC.modality_dropout) / n)
  assert n > 4000
  assert abs((1 - vision.mean()) - SPEC.modality_dropout) < 4 * sd


def test_example_counts_and_padding(data):
  n = data['num_examples']
  assert n.min() >= SPEC.min_examples and n.max() <= SPEC.max_examples
  np.testing.assert_array_equal(data['examples']['example_mask'].sum(1), n)
  x = data['examples']['x']['vision']
  assert np.all(x[~data['examples']['example_mask']] == 0)


def test_label_skew_and_splits(world, data):
  y = data['examples']['y'][:64, :, 0]
  # Dirichlet(0.5) priors: clients' majority classes differ.
  majority = [np.bincount(row, minlength=6).argmax() for row in y]
  assert len(set(majority)) >= 4
  test = _gen(world, np.arange(8), 'test')
  assert test['examples']['y'].shape[1] == SPEC.test_examples
  np.testing.assert_array_equal(test['device'], data['device'][:8])   # same users
  assert not np.allclose(test['examples']['x']['vision'][0, 0],
                         data['examples']['x']['vision'][0, 0])


def test_devices_and_environments_are_drawn_jointly(world):
  profile = jax.jit(jax.vmap(lambda c: synthetic.client_profile(world, c, SPEC)))(
      jnp.arange(600))
  dev, env = np.asarray(profile['device']), np.asarray(profile['environment'])
  names = SPEC.environment_names
  for d, e in zip(dev, env):   # a device is only found where Table 1 deploys it
    assert environments.fits(catalog.DEVICES[SPEC.devices[d]], names[e])
  # Uniform device weights: each of 3 devices ~ 200 of 600 (sd ~ 11.5).
  assert np.all(np.abs(np.bincount(dev, minlength=3) - 200) < 50)
  assert len(set(env.tolist())) >= 3


def _nearest_mean_accuracy(x, y, k):
  half = len(y) // 2
  means = np.stack([x[:half][y[:half] == c].mean(0) for c in range(k)])
  pred = np.argmin(((x[half:, None] - means[None]) ** 2).sum(-1), axis=1)
  return (pred == y[half:]).mean()


@pytest.mark.parametrize('modality,task', [
    ('vision', 'gesture'), ('hand', 'gesture'), ('depth', 'scene'),
    ('thermal', 'scene'), ('physio', 'emotion'), ('gaze', 'emotion')])
def test_every_modality_reveals_the_labels_it_carries(full_data, modality, task):
  """Nearest-class-mean on one modality alone beats chance clearly."""
  ex = full_data['examples']
  m, t = FULL.modalities.index(modality), FULL.tasks.index(task)
  valid = ex['example_mask'] & ex['modality_mask'][..., m]
  assert valid.sum() > 400, modality   # the add-on and RealWear supply the rarer ones
  x = ex['x'][modality][valid].reshape(valid.sum(), -1)
  k = catalog.TASKS[task].num_classes
  assert _nearest_mean_accuracy(x, ex['y'][valid][:, t], k) > 1.0 / k + 0.15


def test_a_million_clients_cost_no_memory(world, data):
  """Clients near 10^6 come from the same world: its size is per spec, not per
  population, and generating a client needs only its id."""
  world_bytes = trees.tree_bytes(world)
  assert world_bytes < 1 << 20
  ids = np.arange(1_000_000 - 8, 1_000_000)
  last = _gen(world, ids)
  again = _gen(world, ids[::-1])
  assert_trees_equal(_client(last, 7), _client(again, 0))   # client 999_999
  assert np.all(np.isfinite(last['examples']['x']['vision']))
  assert trees.tree_bytes(world) == world_bytes
  assert not np.array_equal(last['examples']['y'], data['examples']['y'][:8])
