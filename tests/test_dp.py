"""DP-FedAvg (clip, uniform weights, noisy fixed-denominator mean) and DP-SGD: known answers."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedxr_jax.aggregators import dp_mean as dp_mean_lib
from fedxr_jax.core import aggregation
from fedxr_jax.core import transforms
from fedxr_jax.errors import ConfigError
from fedxr_jax.privacy import dpsgd
from fedxr_jax.transforms import clip as clip_lib

SHAPES = {'lora': {'a': (3, 4), 'b': (5,)}, 'heads': {'t': (2,)}}


def _updates(key, num_clients, scales):
  leaves, treedef = jax.tree.flatten(SHAPES, is_leaf=lambda s: isinstance(s, tuple))
  keys = jax.random.split(key, len(leaves))
  rand = [jax.random.normal(k, (num_clients,) + s) for k, s in zip(keys, leaves)]
  tree = jax.tree.unflatten(treedef, rand)
  return jax.tree.map(lambda x: x * scales.reshape((-1,) + (1,) * (x.ndim - 1)), tree)


def _info(server=()):
  return transforms.ClientInfo(client_id=0, start={}, trained={}, data={}, server=server)


@functools.partial(jax.jit, static_argnums=0)
def _apply(transform, updates, weights, server_state, key):
  """The round's use of a transform: vmapped over clients, stats summed, server step."""
  def one(u, w, k):
    new, _, w, stats = transform.update(u, transform.init(u), k, w, _info(server_state))
    return new, w, stats
  num = jax.tree.leaves(updates)[0].shape[0]
  new, w, stats = jax.vmap(one)(updates, weights, jax.random.split(key, num))
  summed = jax.tree.map(lambda x: jnp.sum(x, 0), stats)
  return new, w, stats, transform.update_server(server_state, summed, key)


def _ones(num):
  return {'lora': jnp.ones(num), 'heads': {'t': jnp.ones(num)}}


def test_every_clipped_update_has_norm_at_most_c_and_small_ones_are_unchanged():
  scales = jnp.array([0.01, 0.1, 1.0, 10.0, 100.0, 0.0])
  updates = _updates(jax.random.key(0), 6, scales)
  t = clip_lib.clip(1.0)
  new, _, stats, _ = _apply(t, updates, _ones(6), (), jax.random.key(1))
  norms = jax.vmap(transforms.global_norm)(new)
  before = jax.vmap(transforms.global_norm)(updates)
  assert np.all(np.asarray(norms) <= 1.0 + 1e-6)
  np.testing.assert_allclose(stats['clip/norm'], before, rtol=1e-6)
  np.testing.assert_array_equal(stats['clip/clipped'], np.asarray(before) > 1.0)
  np.testing.assert_allclose(norms, np.minimum(before, 1.0), rtol=1e-6)
  small = np.asarray(before) <= 1.0
  for x, y in zip(jax.tree.leaves(new), jax.tree.leaves(updates)):
    np.testing.assert_array_equal(np.asarray(x)[small], np.asarray(y)[small])


def test_uniform_weights_are_one_where_held_and_zero_elsewhere():
  weights = {'enc': jnp.array(3.0), 'absent': jnp.array(0.0), 'lora': jnp.array([2.0, 0.0, 7.0])}
  update = {'enc': jnp.ones(2), 'absent': jnp.ones(2), 'lora': jnp.ones((3, 2))}
  out, _, w, stats = clip_lib.uniform_weights().update(update, (), jax.random.key(0), weights,
                                                      _info())
  assert out is update and stats == {}
  np.testing.assert_array_equal(w['enc'], 1.0)
  np.testing.assert_array_equal(w['absent'], 0.0)
  np.testing.assert_array_equal(w['lora'], [1.0, 0.0, 1.0])


@functools.partial(jax.jit, static_argnums=(0, 1))
def _adaptive_round(transform, agg, updates, weights, state, key):
  """Clients clip to the broadcast C, report it with the upload; the server steps C."""
  shared = jax.tree.map(lambda x: jnp.zeros(x.shape[1:]), updates)

  def one(u, w, k):
    info = transforms.ClientInfo(client_id=0, start={}, trained={}, data={},
                                 server=transform.init_server({}), aggregator=state)
    new, _, w, stats = transform.update(u, transform.init(u), k, w, info)
    return agg.contribute(aggregation.ClientUpdate(new, new, w, 0, stats)), (new, w, stats)

  num = jax.tree.leaves(updates)[0].shape[0]
  contrib, (new, w, stats) = jax.vmap(one)(updates, weights, jax.random.split(key, num))
  sums = jax.tree.map(lambda x: jnp.sum(x, 0), contrib)
  _, state, _ = agg.aggregate(shared, state, sums, key)
  return new, w, stats, state


def _adaptive(quantile=0.5, count_stddev=0.0, clip_norm=1.0, cohort=4):
  agg = dp_mean_lib.dp_mean(
      noise_multiplier=0.0, expected_cohort_size=cohort, clip_norm=clip_norm,
      adaptive=dp_mean_lib.AdaptiveClip(target_quantile=quantile, learning_rate=0.2,
                                        count_stddev=count_stddev))
  return agg, agg.init({})


def test_adaptive_clip_one_step_known_answer_in_a_chain():
  # All 4 clients clipped: b = 0, so C <- C * exp(lr * gamma) exactly.
  t = transforms.chain(clip_lib.uniform_weights(), clip_lib.clip(1.0, adaptive=True))
  agg, state = _adaptive()
  updates = _updates(jax.random.key(2), 4, jnp.full(4, 10.0))
  weights = jax.tree.map(lambda w: 7.0 * w, _ones(4))
  new, w, stats, state = _adaptive_round(t, agg, updates, weights, state, jax.random.key(3))
  np.testing.assert_allclose(state['clip_norm'], math.exp(0.1), rtol=1e-6)
  np.testing.assert_array_equal(stats['clip/participants'], np.ones(4))
  np.testing.assert_allclose(jax.vmap(transforms.global_norm)(new), np.ones(4), rtol=1e-6)
  assert all(np.all(np.asarray(x) == 1.0) for x in jax.tree.leaves(w))


@pytest.mark.parametrize('quantile, low, high', [(0.5, 5.0, 6.0), (0.9, 9.0, 10.0)])
def test_adaptive_clip_settles_at_the_target_quantile_of_the_norms(quantile, low, high):
  # Ten clients with update norms 1..10: C stops moving once exactly
  # `quantile` of them are unclipped, i.e. in [low, high).
  num = 10
  directions = _updates(jax.random.key(4), num, jnp.ones(num))
  lengths = jnp.arange(1.0, 11.0) / jax.vmap(transforms.global_norm)(directions)
  updates = jax.tree.map(lambda x: x * lengths.reshape((-1,) + (1,) * (x.ndim - 1)), directions)
  t = clip_lib.clip(0.1, adaptive=True)
  agg, state = _adaptive(quantile, clip_norm=0.1, cohort=num)
  for r in range(120):
    state = _adaptive_round(t, agg, updates, _ones(num), state, jax.random.key(r))[3]
  assert low <= float(state['clip_norm']) < high


def test_adaptive_clip_count_noise_comes_from_the_key():
  t = clip_lib.clip(1.0, adaptive=True)
  agg, state = _adaptive(count_stddev=1.0)
  updates = _updates(jax.random.key(5), 4, jnp.ones(4))
  run = lambda k: _adaptive_round(t, agg, updates, _ones(4), state, k)[3]['clip_norm']
  a, b = run(jax.random.key(0)), run(jax.random.key(1))
  assert float(a) != float(b)
  assert float(a) == float(run(jax.random.key(0)))


def test_non_participants_report_nothing():
  weights = {'lora': jnp.array([1.0, 0.0]), 'heads': {'t': jnp.array([1.0, 0.0])}}
  updates = _updates(jax.random.key(6), 2, jnp.full(2, 10.0))
  _, _, stats, _ = _apply(clip_lib.clip(1.0), updates, weights, (), jax.random.key(0))
  np.testing.assert_array_equal(stats['clip/participants'], [1.0, 0.0])
  np.testing.assert_array_equal(stats['clip/clipped'], [1.0, 0.0])


@functools.partial(jax.jit, static_argnums=0)
def _stream(agg, shared, updates, weights, key):
  """The streamed path: contribute per client, summed, then aggregate."""
  def one(u, w):
    model = jax.tree.map(jnp.add, shared, u)
    return agg.contribute(aggregation.ClientUpdate(model, u, w, 0))
  sums = jax.tree.map(lambda x: jnp.sum(x, 0), jax.vmap(one)(updates, weights))
  return agg.aggregate(shared, agg.init(shared), sums, key)


def _shared():
  return jax.tree.map(lambda s: jnp.full(s, 0.5), SHAPES, is_leaf=lambda s: isinstance(s, tuple))


def test_noiseless_unclipped_dp_mean_is_the_uniform_mean():
  num = 5
  updates = _updates(jax.random.key(7), num, jnp.arange(1.0, 6.0))
  shared = _shared()
  agg = dp_mean_lib.dp_mean(noise_multiplier=0.0, expected_cohort_size=num, clip_norm=math.inf)
  target, _, metrics = _stream(agg, shared, updates, _ones(num), jax.random.key(0))
  mean = aggregation.weighted_mean()
  expected, _, _ = _stream(mean, shared, updates, _ones(num), jax.random.key(0))
  for x, y in zip(jax.tree.leaves(target), jax.tree.leaves(expected)):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6)
  assert float(metrics['dp/noise_stddev']) == 0.0


def test_dp_mean_divides_by_the_fixed_denominator_on_held_modules_only():
  # 'heads' held by clients 0 and 2 of 4: its sum over holders / 4, not / 2.
  shared = {'lora': jnp.zeros(2), 'heads': jnp.zeros(2)}
  updates = {'lora': jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]),
             'heads': jnp.array([[1.0, 1.0], [100.0, 100.0], [3.0, 5.0], [100.0, 100.0]])}
  weights = {'lora': jnp.ones(4), 'heads': jnp.array([1.0, 0.0, 1.0, 0.0])}
  agg = dp_mean_lib.dp_mean(noise_multiplier=0.0, expected_cohort_size=4, clip_norm=1.0)
  target, _, _ = _stream(agg, shared, updates, weights, jax.random.key(0))
  np.testing.assert_allclose(target['lora'], [4.0, 5.0])
  np.testing.assert_allclose(target['heads'], [1.0, 1.5])


def test_dp_mean_noise_std_is_sigma_c_over_the_denominator():
  # Zero updates: target - shared is pure noise with std sigma * C / m.
  # 64 keys x 2000 coordinates: the sample std has relative s.e. 1/sqrt(2n)
  # = 0.18%; we allow 1% (5.6 s.e.), and |mean| < 5 s.e. of the mean.
  sigma, clip_norm, m = 2.0, 0.5, 4
  shared = {'a': jnp.zeros(1500), 'b': {'c': jnp.zeros((20, 25))}}
  zeros = jax.tree.map(lambda x: jnp.zeros((3,) + x.shape), shared)
  weights = {'a': jnp.ones(3), 'b': jnp.ones(3)}
  agg = dp_mean_lib.dp_mean(noise_multiplier=sigma, expected_cohort_size=m, clip_norm=clip_norm)
  run = jax.jit(jax.vmap(lambda k: _stream(agg, shared, zeros, weights, k)[0]))
  out = run(jax.random.split(jax.random.key(8), 64))
  flat = np.concatenate([np.asarray(x).reshape(64, -1) for x in jax.tree.leaves(out)], 1)
  expected = sigma * clip_norm / m
  assert abs(flat.std() / expected - 1) < 0.01
  assert abs(flat.mean()) < 5 * expected / math.sqrt(flat.size)
  # Independent leaves: correlation of 'a' with 'b' draws is ~0.
  corr = np.corrcoef(flat[:, :500].ravel(), flat[:, 1500:2000].ravel())[0, 1]
  assert abs(corr) < 5 / math.sqrt(64 * 500)


def test_dp_mean_noises_unheld_modules_but_not_kept_roles():
  shared = {'lora': jnp.zeros(3), 'residual': jnp.zeros(3)}
  updates = jax.tree.map(lambda x: jnp.ones((2,) + x.shape), shared)
  weights = {'lora': jnp.zeros(2), 'residual': jnp.zeros(2)}
  agg = dp_mean_lib.dp_mean(noise_multiplier=1.0, expected_cohort_size=2, clip_norm=1.0,
                            keep_roles=('residual',))
  target, _, _ = _stream(agg, shared, updates, weights, jax.random.key(9))
  assert np.all(np.asarray(target['lora']) != 0.0)
  np.testing.assert_array_equal(target['residual'], shared['residual'])


def test_dp_mean_noises_with_the_adaptive_clip_norm_in_its_state():
  shared = {'a': jnp.zeros(4000)}
  agg = dp_mean_lib.dp_mean(noise_multiplier=1.0, expected_cohort_size=1, clip_norm=1.0,
                            adaptive=dp_mean_lib.AdaptiveClip())
  sums = {'sum': {'a': jnp.zeros(4000)}, 'clipped': jnp.float32(0.0),
          'participants': jnp.float32(1.0)}
  target, _, metrics = jax.jit(agg.aggregate)(shared, {'clip_norm': jnp.float32(3.0)}, sums,
                                              jax.random.key(0))
  assert abs(float(jnp.std(target['a'])) / 3.0 - 1) < 0.06   # 4000 draws: s.e. 1.1%
  assert float(metrics['dp/clip_norm']) == 3.0


def _linear_loss(params, batch):
  pred = batch['x'] @ params['w'] + params['b']
  err = jnp.square(pred - batch['y'])
  if 'example_mask' in batch:
    m = batch['example_mask'].astype(err.dtype)
    return jnp.sum(err * m) / jnp.maximum(jnp.sum(m), 1.0), {'n': jnp.sum(m)}
  return jnp.mean(err), {'n': jnp.float32(err.shape[0])}


def _batch(key, n):
  kx, ky = jax.random.split(key)
  return {'x': jax.random.normal(kx, (n, 3)), 'y': jax.random.normal(ky, (n,))}


PARAMS = {'w': jnp.array([0.5, -1.0, 2.0]), 'b': jnp.array(0.3)}


def test_dpsgd_without_noise_or_clipping_is_the_plain_mean_gradient():
  batch = _batch(jax.random.key(10), 6)
  fn = jax.jit(dpsgd.private_value_and_grad(_linear_loss, clip_norm=math.inf,
                                            noise_multiplier=0.0))
  (loss, aux), grads = fn(PARAMS, batch, jax.random.key(0))
  (loss0, aux0), grads0 = jax.jit(jax.value_and_grad(_linear_loss, has_aux=True))(PARAMS, batch)
  np.testing.assert_allclose(loss, loss0, rtol=1e-6)
  assert aux == aux0
  for x, y in zip(jax.tree.leaves(grads), jax.tree.leaves(grads0)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_dpsgd_ignores_padded_examples_and_keeps_the_batch_size_denominator():
  valid = _batch(jax.random.key(11), 4)
  junk = {'x': jnp.full((2, 3), jnp.nan), 'y': jnp.full((2,), 1e6)}
  batch = {'x': jnp.concatenate([valid['x'], junk['x']]),
           'y': jnp.concatenate([valid['y'], junk['y']]), 'example_mask': jnp.arange(6) < 4}
  fn = jax.jit(dpsgd.private_value_and_grad(_linear_loss, clip_norm=math.inf,
                                            noise_multiplier=0.0))
  _, grads = fn(PARAMS, batch, jax.random.key(0))
  plain = jax.jit(jax.grad(lambda p: _linear_loss(p, valid)[0]))(PARAMS)
  for x, y in zip(jax.tree.leaves(grads), jax.tree.leaves(plain)):
    np.testing.assert_allclose(x, y * 4 / 6, rtol=1e-5, atol=1e-6)


def test_dpsgd_clips_each_example_to_c():
  # One example with a huge gradient: the result is it scaled to norm C.
  batch = {'x': jnp.array([[100.0, 0.0, 0.0]]), 'y': jnp.array([-50.0])}
  fn = jax.jit(dpsgd.private_value_and_grad(_linear_loss, clip_norm=0.5,
                                            noise_multiplier=0.0))
  _, grads = fn(PARAMS, batch, jax.random.key(0))
  plain = jax.jit(jax.grad(lambda p: _linear_loss(p, batch)[0]))(PARAMS)
  np.testing.assert_allclose(transforms.global_norm(grads), 0.5, rtol=1e-6)
  scale = 0.5 / float(transforms.global_norm(plain))
  for x, y in zip(jax.tree.leaves(grads), jax.tree.leaves(plain)):
    np.testing.assert_allclose(x, y * scale, rtol=1e-5)


def test_dpsgd_noise_std_is_sigma_c_over_the_batch_size():
  # A constant loss has zero gradients: the output is pure noise. 2000
  # coordinates x 32 keys: relative s.e. of the std 0.4%; we allow 2%.
  sigma, clip_norm, size = 3.0, 0.2, 8
  params = {'w': jnp.zeros(2000)}
  loss = lambda p, b: (jnp.sum(p['w'] * 0.0) + jnp.mean(b['x']) * 0.0, {})
  fn = jax.jit(jax.vmap(dpsgd.private_value_and_grad(loss, clip_norm=clip_norm,
                                                     noise_multiplier=sigma),
                        in_axes=(None, None, 0)))
  _, grads = fn(params, {'x': jnp.ones((size, 1))}, jax.random.split(jax.random.key(12), 32))
  std = float(jnp.std(grads['w']))
  assert abs(std / (sigma * clip_norm / size) - 1) < 0.02


@pytest.mark.parametrize('call, message', [
    (lambda: clip_lib.clip(0.0), 'privacy.clip_norm must be > 0'),
    (lambda: dp_mean_lib.dp_mean(noise_multiplier=0.0, expected_cohort_size=3,
                                 clip_norm=math.inf, adaptive=dp_mean_lib.AdaptiveClip()),
     'needs a finite privacy.clip_norm'),
    (lambda: dp_mean_lib.dp_mean(noise_multiplier=0.0, expected_cohort_size=3, clip_norm=1.0,
                                 adaptive=dp_mean_lib.AdaptiveClip(target_quantile=2.0)),
     'target_quantile must be in [0, 1]'),
    (lambda: dp_mean_lib.dp_mean(noise_multiplier=1.0, expected_cohort_size=3,
                                 clip_norm=math.inf), 'needs a finite privacy.clip_norm'),
    (lambda: dp_mean_lib.dp_mean(noise_multiplier=1.0, expected_cohort_size=0, clip_norm=1.0),
     'expected_cohort_size > 0'),
    (lambda: dpsgd.private_value_and_grad(_linear_loss, clip_norm=1.0, noise_multiplier=-1.0),
     'privacy.noise_multiplier must be >= 0'),
])
def test_bad_input_is_one_line_config_error(call, message):
  with pytest.raises(ConfigError) as err:
    call()
  assert message in str(err.value)
  assert '\n' not in str(err.value)
