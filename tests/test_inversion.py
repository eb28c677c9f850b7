"""Gradient inversion on a tiny 8x8 net: succeeds on raw gradients, fails under DP noise."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedxr_jax.errors import ConfigError
from fedxr_jax.privacy import dpsgd
from fedxr_jax.privacy import inversion

D, H, K = 64, 32, 4


def _init(key):
  k1, k2 = jax.random.split(key)
  return {'hidden': {'kernel': jax.random.normal(k1, (D, H)) / 8, 'bias': jnp.zeros(H)},
          'out': {'kernel': jax.random.normal(k2, (H, K)) / jnp.sqrt(H), 'bias': jnp.zeros(K)}}


def _loss(params, x, y):
  """One example: an 8x8 image in [0, 1] (flattened), soft label y [K]."""
  h = jax.nn.sigmoid(x @ params['hidden']['kernel'] + params['hidden']['bias'])
  return optax.softmax_cross_entropy(h @ params['out']['kernel'] + params['out']['bias'], y)


def _batch_loss(params, batch):
  per = jax.vmap(_loss, in_axes=(None, 0, 0))(params, batch['x'], jax.nn.one_hot(batch['y'], K))
  return jnp.mean(per), {}


PARAMS = _init(jax.random.key(0))
X = jax.random.uniform(jax.random.key(1), (D,))
LABEL = 2
X0 = jax.random.uniform(jax.random.key(2), (D,))


@functools.partial(jax.jit, static_argnames=('kind', 'steps', 'known_label'))
def _attack(grads, *, kind='cosine', steps=600, known_label=True):
  label = inversion.label_from_gradient(grads['out']['bias']) if known_label else None
  return inversion.invert_gradients(_loss, PARAMS, grads, X0, num_classes=K, label=label,
                                    steps=steps, learning_rate=0.05, kind=kind, bounds=(0.0, 1.0))


def _true_grads():
  return jax.grad(_loss)(PARAMS, X, jax.nn.one_hot(LABEL, K))


@pytest.mark.parametrize('label', range(K))
def test_idlg_reads_the_label_off_the_last_layer(label):
  grads = jax.grad(_loss)(PARAMS, X, jax.nn.one_hot(label, K))
  assert int(inversion.label_from_gradient(grads['out']['bias'])) == label
  assert int(inversion.label_from_gradient(grads['out']['kernel'])) == label


def test_match_loss_and_psnr_known_answers():
  g = {'a': jnp.array([1.0, 2.0]), 'b': jnp.array([[2.0]])}
  neg = jax.tree.map(lambda x: -x, g)
  assert float(inversion.gradient_match_loss(g, g)) == pytest.approx(0.0, abs=1e-7)
  assert float(inversion.gradient_match_loss(g, neg)) == pytest.approx(2.0)
  assert float(inversion.gradient_match_loss(g, neg, 'l2')) == pytest.approx(4 * 9.0)
  psnr = inversion.psnr(jnp.full(10, 0.6), jnp.full(10, 0.5))   # MSE 0.01
  assert float(psnr) == pytest.approx(20.0, rel=1e-5)


def test_raw_gradient_gives_the_input_back():
  rec = _attack(_true_grads())
  report = inversion.attack_report(rec, X, LABEL)
  assert report['label_recovered']
  assert report['psnr'] > 40.0
  assert float(rec.match_loss) < 1e-4


def test_dlg_recovers_input_and_label_jointly_with_l2():
  rec = _attack(_true_grads(), kind='l2', steps=1500, known_label=False)
  report = inversion.attack_report(rec, X, LABEL)
  assert report['label_recovered']
  assert report['psnr'] > 30.0


def _dp_grads(clip_norm, sigma, key):
  """What a server sees of one example's DP-SGD step (a batch of one)."""
  fn = dpsgd.private_value_and_grad(_batch_loss, clip_norm=clip_norm, noise_multiplier=sigma)
  return fn(PARAMS, {'x': X[None], 'y': jnp.array([LABEL])}, key)[1]


def test_clipping_alone_does_not_stop_the_cosine_attack():
  grads = jax.jit(functools.partial(_dp_grads, 0.05, 0.0))(jax.random.key(3))
  np.testing.assert_allclose(jnp.sqrt(sum(jnp.sum(x ** 2) for x in jax.tree.leaves(grads))),
                             0.05, rtol=1e-5)
  assert inversion.attack_report(_attack(grads), X, LABEL)['psnr'] > 40.0


def test_dp_noise_defeats_the_attack():
  # sigma C = 1 per coordinate against a gradient of norm ~3 over 2212 of them.
  grads = jax.jit(functools.partial(_dp_grads, 1.0, 1.0))(jax.random.key(4))
  report = inversion.attack_report(_attack(grads), X, LABEL)
  assert report['psnr'] < 10.0    # a uniform guess in the box scores ~7.8 dB


def test_bad_input_is_one_line_config_error():
  with pytest.raises(ConfigError, match='inversion.kind must be one of'):
    inversion.invert_gradients(_loss, PARAMS, _true_grads(), X0, num_classes=K, kind='dot')
  with pytest.raises(ConfigError, match='num_classes >= 2'):
    inversion.invert_gradients(_loss, PARAMS, _true_grads(), X0, num_classes=0)
