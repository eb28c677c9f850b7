"""FedMultimodal's robustness protocol: rates, seeding, any source's layout."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedxr_jax.data import synthetic
from fedxr_jax.data import world
from fedxr_jax.data.real import federated
from fedxr_jax.data.world import robustness
from fedxr_jax.data.world.robustness import Robustness
from fedxr_jax.errors import ConfigError

N, CLASSES, MODS = 4000, (5, 0, 4), ('vision', 'audio', 'motion')


def _data(n=N):
  key = jax.random.key(0)
  y = jnp.stack([jax.random.randint(jax.random.fold_in(key, t), (n,), 0, max(k, 1))
                 for t, k in enumerate(CLASSES)], 1).astype(jnp.int32)
  return {'examples': {
      'x': {'vision': jnp.ones((n, 4, 4, 1)), 'audio': jnp.ones((n, 8, 8)),
            'motion': jnp.ones((n, 8, 6))},
      'y': y, 'targets': {'gaze_point': jnp.full((n, 2), 0.5)},
      'modality_mask': jnp.ones((n, 3), bool), 'example_mask': jnp.ones((n,), bool)},
      'task_mask': jnp.ones((3,), bool)}


def _within(observed, rate, n):
  """|observed - rate| within 4 binomial standard errors."""
  return abs(observed - rate) <= 4 * np.sqrt(rate * (1 - rate) / n)


def test_rates_hit_their_frequencies():
  p = Robustness(missing_label=0.3, label_noise=0.2, per_example=True, missing_modality=0.25,
                 target_noise_std=0.05)
  data = _data()
  out = jax.jit(lambda d, k: robustness.apply(d, k, p, CLASSES, MODS))(data, jax.random.key(1))
  ex = out['examples']
  assert _within(1 - ex['label_mask'].mean(), 0.3, N * 3)
  assert _within(1 - ex['modality_mask'].mean(), 0.25, N * 3)
  for i, name in enumerate(('vision', 'audio', 'motion')):   # absent inputs are zeros
    gone = ~np.asarray(ex['modality_mask'][:, i])
    assert np.all(np.asarray(ex['x'][name])[gone] == 0) and np.all(
        np.asarray(ex['x'][name])[~gone] == 1)
  y0, y1 = np.asarray(data['examples']['y']), np.asarray(ex['y'])
  for t in (0, 2):   # a noisy label is always another class
    assert _within(np.mean(y0[:, t] != y1[:, t]), 0.2, N)
    assert y1[:, t].max() < CLASSES[t]
  np.testing.assert_array_equal(y0[:, 1], y1[:, 1])   # not a classification: untouched
  moved = np.asarray(ex['targets']['gaze_point']) - 0.5
  hit = np.any(moved != 0, -1)
  assert _within(hit.mean(), 0.2, N)
  assert abs(moved[hit].std() / 0.05 - 1) < 4 / np.sqrt(2 * moved[hit].size)


def test_missing_modality_is_per_client_as_in_fedmultimodal():
  p = Robustness(missing_modality=0.4)
  data = _data(64)
  keys = jax.random.split(jax.random.key(2), 500)
  out = jax.jit(jax.vmap(lambda k: robustness.apply(data, k, p, CLASSES, MODS)))(keys)
  mask = np.asarray(out['examples']['modality_mask'])          # [clients, N, M]
  assert np.all(mask.all(1) | ~mask.any(1))                    # whole clients lose a sensor
  assert _within(1 - mask[:, 0].mean(), 0.4, 500 * 3)


def test_noise_follows_each_clients_sparse_transition_matrix():
  data = _data()
  y0 = np.asarray(data['examples']['y'][:, 0])

  def targets(sparsity, key):
    p = Robustness(label_noise=1.0, noise_sparsity=sparsity)
    y1 = np.asarray(robustness.apply(data, key, p, CLASSES, MODS)['examples']['y'][:, 0])
    return [set(y1[y0 == c]) for c in range(5)]

  uniform = targets(0.0, jax.random.key(3))
  assert all(s == set(range(5)) - {c} for c, s in enumerate(uniform))
  sparse = [targets(0.75, jax.random.key(k)) for k in range(10)]
  assert all(c not in s and s for rows in sparse for c, s in enumerate(rows))
  assert np.mean([len(s) for rows in sparse for s in rows]) < 2.5   # ~1.3 of 4 kept


def test_seeded_per_client_and_train_split_only():
  p = Robustness(missing_label=0.5, label_noise=0.5)
  data = _data(256)
  key = robustness.client_key(jax.random.key(0), 7)
  a, b = (robustness.apply(data, key, p, CLASSES, MODS),
          robustness.apply(data, key, p, CLASSES, MODS))
  np.testing.assert_array_equal(a['examples']['y'], b['examples']['y'])
  other = robustness.apply(data, robustness.client_key(jax.random.key(0), 8), p, CLASSES,
                           MODS)
  assert not np.array_equal(a['examples']['label_mask'], other['examples']['label_mask'])
  assert robustness.apply(data, key, p, CLASSES, MODS, split='test') is data
  assert robustness.apply(data, key, Robustness(), CLASSES, MODS) is data


def test_works_on_v1_and_real_sources():
  spec = synthetic.XRSpec(modalities=('vision', 'audio'), tasks=('gesture', 'emotion'),
                          devices=('apple_vision_pro',), device_weights=(1.0,),
                          max_examples=8, min_examples=8, test_examples=4)
  w = synthetic.make_world(jax.random.key(0), spec)
  p = Robustness(missing_label=0.5, missing_modality=0.5)
  out = jax.jit(lambda c: robustness.apply(synthetic.client_data(w, c, 'train', spec),
                                           robustness.client_key(jax.random.key(0), c), p,
                                           spec.num_classes, spec.modalities))(3)
  assert out['examples']['label_mask'].shape == (8, 2)
  for i, m in enumerate(spec.modalities):   # mask columns follow spec order, not x's
    gone = ~np.asarray(out['examples']['modality_mask'][:, i])
    assert np.all(np.asarray(out['examples']['x'][m])[gone] == 0)
  source = {'train': {'x': {'motion': jnp.ones((2, 6, 8, 3))},
                      'y': jnp.zeros((2, 6, 1), jnp.int32),
                      'num_examples': jnp.array([6, 4])},
            'step_budget': 1, 'device_profile': {'train_flops': 1.0, 'tx_power_dbm': 1.0,
                                                 'compute_power_w': 1.0}}
  real = robustness.apply(federated.client_data(source, 1, 'train'), jax.random.key(1),
                          Robustness(label_noise=1.0), (3,), ('motion',))
  assert np.all(np.asarray(real['examples']['y']) != 0)
  assert not real['examples']['label_mask'][4:].any()   # padding stays unlabelled


def test_v2_applies_the_protocol_to_its_train_split():
  spec = world.WorldSpec(max_examples=16, min_examples=16, test_examples=4, modality_dropout=0.0,
                         devices=('apple_vision_pro',), modalities=('audio', 'motion'),
                         tasks=('gesture', 'emotion', 'gaze_point'),
                         robustness=Robustness(missing_label=0.5, label_noise=0.5,
                                               missing_modality=0.5, per_example=True)).check()
  w = world.make_world(world.world_key(0), spec)
  train = jax.jit(lambda c: world.client_data(w, c, 'train', spec))(0)
  test = jax.jit(lambda c: world.client_data(w, c, 'test', spec))(0)
  ex = jax.tree.map(np.asarray, train['examples'])
  assert 0 < ex['label_mask'].mean() < 1 and 0 < ex['modality_mask'].mean() < 1
  for i, m in enumerate(spec.modalities):
    assert np.all(ex['x'][m][~ex['modality_mask'][:, i]] == 0)
  assert np.asarray(test['examples']['label_mask']).all()
  assert np.asarray(test['examples']['modality_mask']).all()


@pytest.mark.parametrize('kwargs', [dict(missing_modality=-0.1), dict(missing_label=1.5),
                                    dict(label_noise=2.0), dict(noise_sparsity=1.0),
                                    dict(target_noise_std=-1.0)])
def test_impossible_rates_are_refused_in_one_line(kwargs):
  with pytest.raises(ConfigError) as e:
    Robustness(**kwargs).check()
  assert '\n' not in str(e.value)
  with pytest.raises(ConfigError):
    robustness.apply(_data(4), jax.random.key(0), Robustness(label_noise=0.1), (5, 0), MODS)
