"""Compression transforms: what a client sends, what it keeps, and the bits it pays."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedxr_jax.core import transforms
from fedxr_jax.errors import ConfigError
from fedxr_jax.transforms import event_trigger
from fedxr_jax.transforms import qsgd
from fedxr_jax.transforms import sign
from fedxr_jax.transforms import topk

KEY = jax.random.key(3)
INFO = transforms.ClientInfo(client_id=jnp.int32(0), start={}, trained={}, data={})


def step(t, update, state, weights=None, key=KEY):
  weights = weights or {r: jnp.ones(()) for r in update}
  info = INFO._replace(server=t.init_server(update))
  return jax.jit(t.update)(update, state, key, weights, info)


def test_topk_global_keeps_the_largest_and_feeds_back_the_rest():
  t = topk.topk(fraction=0.4)          # D = 5 coordinates: k = 2
  update = {'a': jnp.array([3.0, -5.0, 1.0]), 'b': jnp.array([0.5, -4.0])}
  state = t.init(update)
  sent, state, _, stats = step(t, update, state)
  np.testing.assert_array_equal(sent['a'], [0.0, -5.0, 0.0])
  np.testing.assert_array_equal(sent['b'], [0.0, -4.0])
  np.testing.assert_array_equal(state['a'], [3.0, 0.0, 1.0])
  np.testing.assert_array_equal(state['b'], [0.5, 0.0])
  assert float(stats['upload_bits']) == 2 * (32 + 3)        # ceil(log2 5) = 3
  zero = jax.tree.map(jnp.zeros_like, update)
  sent, state, _, _ = step(t, zero, state)                   # the residual goes out next
  np.testing.assert_array_equal(sent['a'], [3.0, 0.0, 1.0])
  np.testing.assert_array_equal(state['b'], [0.5, 0.0])


def test_topk_error_feedback_conserves_the_sum_of_updates():
  t = topk.topk(fraction=0.25)         # D = 16: k = 4, index bits 4
  shapes = {'a': (2, 5), 'b': (6,)}
  state = t.init(jax.tree.map(jnp.zeros, shapes, is_leaf=lambda s: isinstance(s, tuple)))
  total = jax.tree.map(jnp.zeros_like, state)
  sent_total = jax.tree.map(jnp.zeros_like, state)
  for r in range(6):
    k = jax.random.fold_in(KEY, r)
    k_a, k_b = jax.random.split(k)
    update = {'a': jax.random.normal(k_a, (2, 5)), 'b': jax.random.normal(k_b, (6,))}
    sent, state, _, stats = step(t, update, state)
    assert sum(int(jnp.sum(x != 0)) for x in jax.tree.leaves(sent)) == 4
    assert float(stats['upload_bits']) == 4 * (32 + 4)
    total = jax.tree.map(jnp.add, total, update)
    sent_total = jax.tree.map(jnp.add, sent_total, sent)
  jax.tree.map(lambda s, e, u: np.testing.assert_allclose(s + e, u, atol=1e-5),
               sent_total, state, total)


def test_topk_skips_modules_the_client_does_not_hold():
  t = topk.topk(fraction=0.6, scope='per_leaf')   # per leaf: k = ceil(0.6 * 3) = 2
  update = {'a': jnp.array([1.0, -2.5, 3.0]), 'b': jnp.array([9.0, 8.0, 7.0])}
  state = jax.tree.map(lambda x: jnp.full(x.shape, 0.5), update)
  weights = {'a': jnp.ones(()), 'b': jnp.zeros(())}
  sent, state, _, stats = step(t, update, state, weights)
  np.testing.assert_array_equal(sent['a'], [0.0, -2.0, 3.5])   # corrected 1.5, -2, 3.5
  np.testing.assert_array_equal(sent['b'], update['b'])        # not held: not touched
  np.testing.assert_array_equal(state['a'], [1.5, 0.0, 0.0])
  np.testing.assert_array_equal(state['b'], [0.5, 0.5, 0.5])   # residual kept
  assert float(stats['upload_bits']) == 2 * (32 + 2)           # only held leaf 'a'
  # Per-slice weights: only slice 0 of a [2, 2] leaf is held.
  t = topk.topk(fraction=1.0)
  sent, _, _, stats = step(t, {'e': jnp.array([[1.0, 2.0], [3.0, 4.0]])}, t.init(
      {'e': jnp.zeros((2, 2))}), {'e': jnp.array([1.0, 0.0])})
  assert float(stats['upload_bits']) == 2 * (32 + 2)
  with pytest.raises(ConfigError, match='fraction'):
    topk.topk(fraction=0.0)


def test_qsgd_is_unbiased_on_a_lattice_and_counts_bits():
  t = qsgd.qsgd(bits=2)                 # s = 3 levels
  x = jnp.array([0.3, -1.2, 0.5, 0.0, 2.0, -0.7, 0.1, 0.9])
  update = {'a': x, 'b': jnp.array([4.0, -3.0])}
  keys = jax.random.split(KEY, 4000)
  fn = jax.jit(jax.vmap(lambda k: t.update(update, (), k, {'a': jnp.ones(()),
                                                           'b': jnp.ones(())}, INFO)))
  sent, _, _, stats = fn(keys)
  norm = float(jnp.linalg.norm(x))
  levels = np.asarray(sent['a']) * 3 / norm
  np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)   # l * ||x|| / s
  # Each coordinate's error is within ||x|| / s, so its std is at most ||x|| / (2 s):
  # over 4000 keys the mean is within 5 standard errors of x.
  tol = 5 * norm / (2 * 3 * math.sqrt(4000))
  np.testing.assert_allclose(np.mean(sent['a'], axis=0), x, atol=tol)
  tol_b = 5 * 5.0 / (2 * 3 * math.sqrt(4000))           # ||b|| = 5
  np.testing.assert_allclose(np.mean(sent['b'], axis=0), [4.0, -3.0], atol=tol_b)
  np.testing.assert_array_equal(stats['upload_bits'], 3 * 10 + 2 * 32)
  _, _, _, stats = step(t, update, (), {'a': jnp.ones(()), 'b': jnp.zeros(())})
  assert float(stats['upload_bits']) == 3 * 8 + 32


def test_scaled_sign_sends_mean_magnitude_and_keeps_the_error():
  t = sign.scaled_sign()
  update = {'a': jnp.array([1.0, -3.0, 2.0]), 'b': jnp.array([5.0])}
  sent, state, _, stats = step(t, update, t.init(update),
                               {'a': jnp.ones(()), 'b': jnp.zeros(())})
  np.testing.assert_allclose(sent['a'], [2.0, -2.0, 2.0])     # mean |a| = 2
  np.testing.assert_allclose(state['a'], [-1.0, -1.0, 0.0])
  np.testing.assert_array_equal(sent['b'], [5.0])             # not held
  assert float(stats['upload_bits']) == 3 + 32


def test_event_trigger_sends_nothing_under_the_threshold_then_the_accumulated_update():
  t = event_trigger.event_trigger(threshold=1.5)
  update = {'a': jnp.array([0.6, 0.8]), 'b': jnp.array([10.0])}    # held norm 1 (b not held)
  weights = {'a': jnp.ones(()), 'b': jnp.zeros(())}
  state = t.init(update)
  _, state, w, stats = step(t, update, state, weights)
  assert float(stats['upload_bits']) == 0.0 and float(stats['event_trigger/sent']) == 0.0
  assert all(float(x) == 0.0 for x in jax.tree.leaves(w))
  np.testing.assert_allclose(state['pending']['a'], [0.6, 0.8])
  np.testing.assert_array_equal(state['pending']['b'], [0.0])
  sent, state, w, stats = step(t, update, state, weights)        # norm 2 >= 1.5
  np.testing.assert_allclose(sent['a'], [1.2, 1.6])
  assert float(stats['upload_bits']) == 2 * 32 and float(w['a']) == 1.0
  np.testing.assert_array_equal(state['pending']['a'], [0.0, 0.0])


def test_event_trigger_with_a_compressor_counts_its_bits_and_freezes_its_state():
  t = event_trigger.event_trigger(threshold=1.0, accumulate=False,
                                  compressor=topk.topk(fraction=0.5))
  small = {'a': jnp.array([0.1, -0.2, 0.3, 0.0])}
  state = t.init(small)
  _, state, _, stats = step(t, small, state)
  assert float(stats['upload_bits']) == 0.0
  np.testing.assert_array_equal(state['compressor']['a'], np.zeros(4))   # nothing sent or kept
  big = {'a': jnp.array([3.0, -1.0, 0.5, 2.0])}
  sent, state, _, stats = step(t, big, state)
  np.testing.assert_array_equal(sent['a'], [3.0, 0.0, 0.0, 2.0])
  np.testing.assert_array_equal(state['compressor']['a'], [0.0, -1.0, 0.5, 0.0])
  assert float(stats['upload_bits']) == 2 * (32 + 2)


def test_chained_with_an_attack_the_stats_do_not_clash():
  from fedxr_jax.transforms import sign_flip
  t = transforms.chain(sign_flip.sign_flip(), topk.topk(fraction=0.5))
  update = {'a': jnp.array([1.0, -4.0])}
  info = INFO._replace(server=t.init_server(update), data={'malicious': jnp.asarray(True)})
  sent, _, _, stats = jax.jit(t.update)(update, t.init(update), KEY,
                                        {'a': jnp.ones(())}, info)
  np.testing.assert_array_equal(sent['a'], [0.0, 4.0])
  assert set(stats) == {'attack/sign_flip/clients', 'upload_bits'}


def test_vmapped_over_clients_equals_one_by_one():
  t = event_trigger.event_trigger(threshold=2.0, compressor=topk.topk(fraction=0.5))
  updates = {'a': jnp.array([[3.0, 1.0], [0.5, 0.5], [-4.0, 2.0]]),
             'b': jnp.array([[1.0, -2.0], [1.0, 0.0], [5.0, 6.0]])}
  weights = {'a': jnp.array([1.0, 1.0, 0.0]), 'b': jnp.array([1.0, 1.0, 1.0])}
  one = lambda tree, i: jax.tree.map(lambda x: x[i], tree)
  states = jax.vmap(t.init)(updates)
  infos = INFO._replace(client_id=jnp.arange(3, dtype=jnp.int32))
  out = jax.jit(jax.vmap(t.update, in_axes=(0, 0, None, 0, 0)))(
      updates, states, KEY, weights, infos)
  for i in range(3):
    alone = step(t, one(updates, i), t.init(one(updates, i)), one(weights, i))
    jax.tree.map(np.testing.assert_array_equal, one(out, i), alone)
  # Client 1 (norm 1.22) stays silent; client 2 sends only b (top 2 of its 2 held).
  np.testing.assert_array_equal(out[3]['upload_bits'], [2 * 34, 0.0, 2 * 34])
