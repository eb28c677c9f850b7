"""Core tree ops, keys and local training, with hand-computed answers."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedxr_jax.core import local as local_lib
from fedxr_jax.core import plan as plan_lib
from fedxr_jax.core import rng
from fedxr_jax.core import trees
from fedxr_jax.errors import ConfigError


def test_masked_module_averaging_matches_hand_computation():
  # Three clients; module 'enc' held by clients 0 and 2 (3 and 1 examples),
  # module 'head' by nobody: it must keep its old value.
  stacked = {'enc': {'w': jnp.array([[1.0, 2.0], [100.0, 100.0], [5.0, 6.0]])},
             'head': jnp.array([[7.0], [8.0], [9.0]])}
  weights = {'enc': jnp.array([3.0, 0.0, 1.0]), 'head': jnp.zeros(3)}
  old = {'enc': {'w': jnp.array([0.0, 0.0])}, 'head': jnp.array([-1.0])}
  out = trees.aggregate_modules(stacked, weights, old)
  np.testing.assert_allclose(out['enc']['w'], [(3 * 1 + 5) / 4, (3 * 2 + 6) / 4])
  np.testing.assert_array_equal(out['head'], [-1.0])


def test_scalar_weight_covers_a_whole_tree():
  stacked = {'a': jnp.array([[1.0], [3.0]]), 'b': jnp.array([2.0, 4.0])}
  out = trees.aggregate_modules(stacked, jnp.array([1.0, 3.0]),
                                {'a': jnp.zeros(1), 'b': jnp.zeros(())})
  np.testing.assert_allclose(out['a'], [2.5])
  np.testing.assert_allclose(out['b'], 3.5)


def test_split_and_merge_roles_round_trip():
  params = {'backbone': {'q': {'kernel': 1, 'lora_A': 2}}, 'heads': {'t': 3}}
  role_of = lambda p: 'lora' if p[-1].startswith('lora_') else p[0]
  roles = trees.split_by_role(params, role_of)
  assert roles == {'backbone': {'backbone': {'q': {'kernel': 1}}},
                   'lora': {'backbone': {'q': {'lora_A': 2}}},
                   'heads': {'heads': {'t': 3}}}
  assert trees.merge_roles(*roles.values()) == params


def test_tree_bytes_counts_dtypes():
  tree = {'a': jnp.zeros((3, 4), jnp.float32), 'b': jnp.zeros((5,), jnp.bfloat16)}
  assert trees.tree_bytes(tree) == 3 * 4 * 4 + 5 * 2


def test_cohort_is_a_pure_function_of_seed_and_round():
  key = jax.random.key(3)
  a = rng.sample_cohort(key, 5, 100, 10)
  np.testing.assert_array_equal(a, rng.sample_cohort(key, 5, 100, 10))
  assert len(set(np.asarray(a).tolist())) == 10  # no client twice
  assert np.all(np.diff(np.asarray(a)) > 0)
  assert not np.array_equal(a, rng.sample_cohort(key, 6, 100, 10))
  np.testing.assert_array_equal(rng.sample_cohort(key, 0, 7, 7), np.arange(7))
  # An empty draw (eval.panel_size=0) is an empty cohort, not an out-of-bounds index.
  assert rng.sample_cohort(key, 0, 7, 0).shape == (0,)


def test_cohort_sampling_is_uniform_over_clients():
  # Floyd's algorithm: each of 10 clients is in a 3-client cohort w.p. 0.3.
  sample = jax.jit(jax.vmap(lambda r: rng.sample_cohort(jax.random.key(0), r, 10, 3)))
  cohorts = np.asarray(sample(jnp.arange(4000)))
  assert all(len(set(c)) == 3 for c in cohorts[:200])
  freq = np.bincount(cohorts.ravel(), minlength=10) / len(cohorts)
  # Binomial std of each frequency: sqrt(0.3 * 0.7 / 4000) = 0.0072; 5 sigma.
  np.testing.assert_allclose(freq, 0.3, atol=0.036)
  big = rng.sample_cohort(jax.random.key(1), 0, 10**6, 32)
  assert len(set(np.asarray(big).tolist())) == 32 and int(big.max()) < 10**6


def test_client_keys_do_not_depend_on_cohort_order():
  key = jax.random.key(0)
  a = rng.client_keys(key, jnp.array([4, 9]))
  b = rng.client_keys(key, jnp.array([9, 1, 4]))
  np.testing.assert_array_equal(jax.random.key_data(a[0]), jax.random.key_data(b[2]))


def _quadratic_loss(params, batch, meta):
  del meta
  return jnp.mean((batch['x'] * params['w']['v'] - batch['y']) ** 2), ()


def test_step_budget_masks_steps_past_it():
  data = {'examples': {'x': jnp.arange(1.0, 5.0), 'y': jnp.ones(4)},
          'num_examples': jnp.int32(4)}
  params = {'w': {'v': jnp.array(0.5)}}
  run = lambda steps, budget: local_lib.make_local_update(
      _quadratic_loss, optax.sgd(0.1), local_steps=steps, batch_size=2,
      shuffle=False)(params, {}, {**data, 'step_budget': jnp.int32(budget)},
                     jax.random.key(0))
  short, stats_short = run(1, 1)
  long_masked, stats_masked = run(3, 1)
  np.testing.assert_array_equal(short['w']['v'], long_masked['w']['v'])
  np.testing.assert_array_equal(stats_short['loss'], stats_masked['loss'])
  assert int(stats_masked['steps']) == 1


def test_one_sgd_step_by_hand():
  # loss = mean((x v - y)^2) on x=[1,2], y=[1,1], v=0.5:
  # grad = mean(2 x (x v - y)) = (2*1*(-0.5) + 2*2*0) / 2 = -0.5
  data = {'examples': {'x': jnp.array([1.0, 2.0]), 'y': jnp.ones(2)},
          'num_examples': jnp.int32(2)}
  out, _ = local_lib.make_local_update(
      _quadratic_loss, optax.sgd(0.1), local_steps=1, batch_size=2,
      shuffle=False)({'w': {'v': jnp.array(0.5)}}, {}, data, jax.random.key(0))
  np.testing.assert_allclose(out['w']['v'], 0.5 + 0.1 * 0.5, rtol=1e-6)


def test_batches_cycle_over_valid_examples_only():
  order = local_lib.example_order(jax.random.key(1), 3, 8, shuffle=True)
  assert sorted(np.asarray(order[:3]).tolist()) == [0, 1, 2]
  idx = [np.asarray(local_lib.batch_indices(s, order, 3, 2)) for s in range(3)]
  assert set(np.concatenate(idx).tolist()) == {0, 1, 2}


def test_plan_validation():
  assert plan_lib.validate_plan({'a': 'frozen', 'b': 'shared'}, ['a', 'b'])
  with pytest.raises(ConfigError, match='unknown parameter tree'):
    plan_lib.validate_plan({'a': 'frozen', 'c': 'shared'}, ['a'])
  with pytest.raises(ConfigError, match='does not say'):
    plan_lib.validate_plan({'a': 'shared'}, ['a', 'b'])
  with pytest.raises(ConfigError, match='trains nothing'):
    plan_lib.validate_plan({'a': 'frozen'}, ['a'])
