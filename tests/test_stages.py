"""Each stage of the round on its own, and the round as their composition."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from fedxr_jax.core import aggregation
from fedxr_jax.core import algorithm as algorithm_lib
from fedxr_jax.core import client as client_lib
from fedxr_jax.core import device_costs
from fedxr_jax.data import devices
from fedxr_jax.core import round_plan
from fedxr_jax.core import server as server_lib
from fedxr_jax.core import transforms
from fedxr_jax.compose import optimizers
import tiny
from helpers import assert_trees_close, assert_trees_equal, run_rounds


def _info(update, server=((), ())):
  return transforms.ClientInfo(client_id=jnp.int32(3), start=update, trained=update, data={},
                               server=server)


def test_chain_applies_transforms_in_order_with_their_own_keys():
  seen = []

  def record(i):
    def update(u, key, weights, info):
      seen.append((i, jax.random.key_data(key)))
      return jax.tree.map(lambda x: 2 * x + i, u), weights, {f's{i}': jnp.float32(i)}
    return transforms.stateless(update)

  chain = transforms.chain(record(1), record(2))
  key = jax.random.key(7)
  u = {'a': jnp.ones(2)}
  out, state, w, stats = chain.update(u, chain.init(u), key, {'a': 1.0}, _info(u))
  np.testing.assert_array_equal(out['a'], 2 * (2 * 1 + 1) + 2)   # (2x + 1) then (2x + 2)
  assert stats == {'s1': 1.0, 's2': 2.0} and state == ((), ())
  np.testing.assert_array_equal(seen[0][1], jax.random.key_data(jax.random.fold_in(key, 0)))
  np.testing.assert_array_equal(seen[1][1], jax.random.key_data(jax.random.fold_in(key, 1)))


def test_chain_refuses_two_transforms_reporting_one_stat():
  same = transforms.stateless(lambda u, k, w, i: (u, w, {'norm': jnp.float32(0)}))
  chain = transforms.chain(same, same)
  u = {'a': jnp.ones(1)}
  with pytest.raises(ValueError, match='same stats'):
    chain.update(u, chain.init(u), jax.random.key(0), {'a': 1.0}, _info(u))


def test_a_stateful_transform_keeps_its_state_per_client():
  def update(u, state, key, weights, info):
    return u, {'n': state['n'] + 1}, weights, {}
  counter = transforms.UpdateTransform(lambda shared: {'n': jnp.int32(0)}, update)
  u = {'a': jnp.ones(1)}
  _, state, _, _ = counter.update(u, counter.init(u), jax.random.key(0), {}, _info(u, ()))
  assert int(state['n']) == 1


def test_sent_model_is_the_trained_tree_where_no_transform_touched_it():
  start = {'a': jnp.float32(3.0), 'b': jnp.float32(1.0)}
  trained = {'a': jnp.float32(1e-8), 'b': jnp.float32(3.0)}
  update = jax.tree.map(jnp.subtract, trained, start)
  # start + (trained - start) is not always trained in float32:
  assert float(start['a'] + update['a']) != float(trained['a'])
  sent = transforms.sent_model(start, trained, update, {**update, 'b': update['b'] * 0.5})
  assert float(sent['a']) == float(trained['a'])        # untouched: bit for bit
  assert float(sent['b']) == 1.0 + 1.0                  # halved update


def test_streamed_mean_equals_the_stacked_mean_and_keeps_unheld_modules():
  models = {'m': {'w': jnp.array([[1.0, 2.0], [3.0, 5.0], [9.0, 9.0]])},
            'n': {'v': jnp.array([1.0, 2.0, 3.0])}}
  weights = {'m': jnp.array([1.0, 3.0, 0.0]), 'n': jnp.zeros(3)}
  shared = {'m': {'w': jnp.zeros(2)}, 'n': {'v': jnp.float32(-4.0)}}
  stacked = aggregation.ClientUpdate(models, models, weights, jnp.arange(3))
  streamed = aggregation.weighted_mean()
  sums = jax.tree.map(lambda x: jnp.sum(x, 0), jax.vmap(streamed.contribute)(stacked))
  a = streamed.aggregate(shared, {}, sums, None)[0]
  b = aggregation.stacked_weighted_mean().aggregate(shared, {}, stacked, None)[0]
  np.testing.assert_allclose(a['m']['w'], [(1 + 9) / 4, (2 + 15) / 4])
  assert float(a['n']['v']) == -4.0                      # nobody holds it
  assert_trees_close(a, b, rtol=1e-6, atol=0)


def test_server_step_with_sgd_one_lands_on_the_target_and_waits_without_sync():
  shared, target = {'x': jnp.array([1.0, 2.0])}, {'x': jnp.array([0.5, 4.0])}
  opt = optax.sgd(1.0, momentum=0.9)
  state = opt.init(shared)
  new, new_state = server_lib.step(opt, shared, state, target, jnp.array(True))
  np.testing.assert_allclose(new['x'], target['x'])
  held, held_state = server_lib.step(opt, shared, state, target, jnp.array(False))
  assert_trees_equal(held, shared)
  assert_trees_equal(held_state, state)


def test_fedadagrad_follows_reddi_et_al():
  cfg = ml_collections.ConfigDict(dict(name='adagrad', learning_rate=0.1,
                                       adagrad=dict(b1=0.0, eps=1e-3)))
  opt = optimizers.make(cfg, 'server_optimizer')
  x, v = 1.0, 1e-6   # v_0 = tau^2
  params = {'x': jnp.float32(x)}
  state = opt.init(params)
  for g in (0.5, -0.2):
    updates, state = opt.update({'x': jnp.float32(g)}, state, params)
    params = optax.apply_updates(params, updates)
    v += g * g
    x -= 0.1 * g / (np.sqrt(v) + 1e-3)
  np.testing.assert_allclose(params['x'], x, rtol=1e-6)


def test_updated_weights_drop_trees_the_client_did_not_update():
  weights = {'body': jnp.float32(5.0), 'head': jnp.float32(5.0)}
  stats = {'role_steps': {'body': jnp.int32(0), 'head': jnp.int32(2)}}
  out = client_lib.updated_weights(weights, stats, jnp.array(True))
  assert float(out['body']) == 0.0 and float(out['head']) == 5.0
  out = client_lib.updated_weights(weights, stats, jnp.array(False))
  assert float(out['head']) == 0.0


def test_payload_bits_and_compute_seconds_by_hand():
  shared = {'r': {'a': jnp.zeros((2, 3)), 'b': jnp.zeros((4,))}}
  # Per-slice weight over a's 2 rows: one of two slices held; b not held.
  weights = {'r': {'a': jnp.array([1.0, 0.0]), 'b': jnp.float32(0.0)}}
  assert float(device_costs.payload_bits(weights, shared)) == 0.5 * 8 * 4 * 6
  costs = device_costs.DeviceCosts(flops_per_step=2e9, flops_per_forward_example=1e8)
  extra = algorithm_lib.ClientCost(train_steps=1, forward_examples=10)
  seconds = device_costs.compute_seconds(costs, 3, extra, 1e12)
  np.testing.assert_allclose(seconds, (4 * 2e9 + 10 * 1e8) / 1e12)
  # A bf16 base: its share of the FLOPs at the device's 16-bit rate.
  half = costs._replace(half_share=0.75)
  np.testing.assert_allclose(device_costs.compute_seconds(half, 3, extra, 1e12, 2.0),
                             (4 * 2e9 + 10 * 1e8) / 1e12 * (0.25 + 0.75 / 2))
  assert devices.DEVICES['meta_quest_3'].half_rate == 2.0          # Adreno: fp16 at 2x
  assert devices.DEVICES['apple_vision_pro'].half_rate == 1.0      # Apple GPU: same rate


def test_plans_stack_and_k_rounds_in_one_call_equal_k_single_calls():
  setup = tiny.setup(population=12, cohort=4)
  fed = setup.federation
  server, clients, frozen = jax.jit(fed.init)(setup.world, setup.key)
  plans = [setup.plan(r)[0] for r in range(3)]
  assert len({tuple(np.asarray(p.cohort)) for p in plans}) > 1   # cohorts change
  one = jax.jit(fed.round)
  s, c, singles = server, clients, []
  for p in plans:
    s, c, m = one(s, c, frozen, setup.world, p)
    singles.append(m)
  s3, c3, stacked = jax.jit(fed.rounds)(server, clients, frozen, setup.world,
                                        round_plan.stack(plans))
  assert_trees_equal(s.shared, s3.shared)
  assert_trees_equal(c.personal, c3.personal)
  for i, m in enumerate(singles):
    for key, value in m.items():
      np.testing.assert_array_equal(stacked[key][i], value, err_msg=key)


def test_the_round_samples_nothing_itself_the_plan_decides_the_cohort():
  setup = tiny.setup(population=12, cohort=4, plan={'body': 'shared', 'head': 'personal'})
  fed = setup.federation
  server, clients, frozen = jax.jit(fed.init)(setup.world, setup.key)
  plan = setup.plan(0)[0]
  other = plan._replace(cohort=jnp.array([0, 1, 2, 3], jnp.int32))
  _, new_clients, _ = jax.jit(fed.round)(server, clients, frozen, setup.world, other)
  moved = np.flatnonzero(np.any(np.asarray(new_clients.personal['head']['b'])
                                != np.asarray(clients.personal['head']['b']), axis=-1))
  assert moved.size and set(moved.tolist()) <= {0, 1, 2, 3}
