"""Robust aggregators on hand-made stacks of uploads, with hand-computed answers."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedxr_jax.aggregators import centered_clipping as cc_lib
from fedxr_jax.aggregators import geometric_median as gm_lib
from fedxr_jax.aggregators import krum as krum_lib
from fedxr_jax.aggregators import median as median_lib
from fedxr_jax.aggregators import norm_bounding as nb_lib
from fedxr_jax.aggregators import trimmed_mean as tm_lib
from fedxr_jax.core import aggregation
from fedxr_jax.errors import ConfigError


def arrays(tree):
  """Nested lists at the leaves of `tree` as float32 arrays."""
  return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree,
                      is_leaf=lambda x: isinstance(x, list))


def uploads(models, weights):
  """Stacked ClientUpdate of clients that all started from 0 (update = model)."""
  models, weights = arrays(models), arrays(weights)
  size = jax.tree.leaves(weights)[0].shape[0]
  return aggregation.ClientUpdate(model=models, update=models, weights=weights,
                                  client_id=jnp.arange(size, dtype=jnp.int32))


def run(agg, stacked, shared, state=None):
  state = agg.init(shared) if state is None else state
  target, state, _ = jax.jit(agg.aggregate)(shared, state, stacked, jax.random.key(0))
  return target, state


# Five clients; client 3 (value 100) holds no encoder, nobody holds the head.
ENC = [[1.0, 10.0], [2.0, 20.0], [3.0, -5.0], [100.0, 100.0], [4.0, 0.0]]
SHARED = {'enc': {'w': jnp.zeros(2)}, 'head': jnp.array([-1.0])}


def coordinate_stack(enc_weights):
  return uploads({'enc': {'w': ENC}, 'head': [[7.0], [8.0], [9.0], [1.0], [2.0]]},
                 {'enc': enc_weights, 'head': [0.0] * 5})


def test_median_over_holders_even_and_odd():
  even, _ = run(median_lib.median(), coordinate_stack([1, 1, 1, 0, 2]), SHARED)
  np.testing.assert_allclose(even['enc']['w'], [2.5, 5.0])   # {1,2,3,4}, {-5,0,10,20}
  np.testing.assert_array_equal(even['head'], [-1.0])        # nobody holds it
  odd, _ = run(median_lib.median(), coordinate_stack([1, 1, 1, 0, 0]), SHARED)
  np.testing.assert_allclose(odd['enc']['w'], [2.0, 10.0])   # {1,2,3}, {-5,10,20}


def test_median_and_trimmed_mean_per_slice():
  # Two experts: slice 0 held by clients 0-2, slice 1 by clients 3-4.
  experts = [[[1.0], [50.0]], [[2.0], [60.0]], [[7.0], [70.0]],
             [[-9.0], [5.0]], [[-9.0], [9.0]]]
  w = [[1, 0], [1, 0], [1, 0], [0, 1], [0, 1]]
  stacked = uploads({'e': experts}, {'e': w})
  shared = {'e': jnp.zeros((2, 1))}
  med, _ = run(median_lib.median(), stacked, shared)
  np.testing.assert_allclose(med['e'], [[2.0], [7.0]])
  # beta = 0.34: floor(0.34 * 3) = 1 trimmed per side of slice 0, floor(0.68) = 0 of slice 1.
  tm, _ = run(tm_lib.trimmed_mean(beta=0.34), stacked, shared)
  np.testing.assert_allclose(tm['e'], [[2.0], [7.0]])


def test_trimmed_mean_over_holders_only():
  # Holders 0-4 (client 5 has weight 0 and an outlier value); beta 0.2 trims 1 per side.
  x = [[1.0], [2.0], [3.0], [4.0], [100.0], [1000.0]]
  stacked = uploads({'a': x}, {'a': [1, 1, 1, 1, 5, 0]})
  out, _ = run(tm_lib.trimmed_mean(beta=0.2), stacked, {'a': jnp.zeros(1)})
  np.testing.assert_allclose(out['a'], [3.0])                 # mean(2, 3, 4)
  # 0.42 * 150 is 62.999996 in float32: still trims 63 of 150 per side (values i^2).
  many = uploads({'a': [[float(i * i)] for i in range(150)]}, {'a': [1] * 150})
  out, _ = run(tm_lib.trimmed_mean(beta=0.42), many, {'a': jnp.zeros(1)})
  np.testing.assert_allclose(out['a'], [sum(i * i for i in range(63, 87)) / 24], rtol=1e-6)
  untrimmed, _ = run(tm_lib.trimmed_mean(beta=0.0), coordinate_stack([1, 1, 1, 0, 2]), SHARED)
  np.testing.assert_allclose(untrimmed['enc']['w'], [2.5, 25 / 4])   # unweighted mean
  with pytest.raises(ConfigError, match='beta'):
    tm_lib.trimmed_mean(beta=0.5)


def krum_stack():
  # enc held by clients 0-4 (client 5 holds nothing: not a candidate); head by 2 and 3.
  # Squared distances (zero-filled head: +1 for pairs with client 2) give Krum scores
  # over n - f - 2 = 3 neighbours: c0 17.25, c1 8.25, c2 11.75, c3 14.25, c4 > 6000.
  enc = [[0.0], [1.0], [2.5], [3.0], [50.0], [999.0]]
  head = [[0.0], [0.0], [1.0], [0.0], [0.0], [5.0]]
  return uploads({'enc': enc, 'head': head},
                 {'enc': [1, 1, 2, 1, 1, 0], 'head': [0, 0, 1, 1, 0, 0]})


KRUM_SHARED = {'enc': jnp.zeros(1), 'head': jnp.array([-1.0])}


def test_krum_selects_the_best_score():
  out, _ = run(krum_lib.krum(num_byzantine=1), krum_stack(), KRUM_SHARED)
  np.testing.assert_allclose(out['enc'], [1.0])     # client 1
  np.testing.assert_array_equal(out['head'], [-1.0])  # client 1 holds no head


def test_multi_krum_averages_selected_holders_by_weight():
  out, _ = run(krum_lib.multi_krum(num_byzantine=1), krum_stack(), KRUM_SHARED)
  # m = n - f = 4: clients 0-3; enc weights 1, 1, 2, 1; head held by 2 and 3.
  np.testing.assert_allclose(out['enc'], [(0 + 1 + 2 * 2.5 + 3) / 5])
  np.testing.assert_allclose(out['head'], [0.5])
  two, _ = run(krum_lib.multi_krum(num_byzantine=1, num_selected=2), krum_stack(), KRUM_SHARED)
  np.testing.assert_allclose(two['enc'], [(1 + 2 * 2.5) / 3])   # clients 1 and 2
  np.testing.assert_allclose(two['head'], [1.0])


def test_krum_distances_and_cohort_check():
  d = np.asarray(krum_lib.sq_distances(krum_stack()))
  np.testing.assert_allclose(d[0, 2], 2.5 ** 2 + 1)
  np.testing.assert_allclose(d[1, 3], 4.0)
  with pytest.raises(ConfigError, match='more than 2f'):
    krum_lib.check_cohort(4, 1)
  stacked = uploads({'a': [[0.0]] * 4}, {'a': [1] * 4})
  with pytest.raises(ConfigError, match='cohort of 4'):
    run(krum_lib.krum(num_byzantine=1), stacked, {'a': jnp.zeros(1)})
  with pytest.raises(ConfigError, match='num_byzantine'):
    krum_lib.krum(num_byzantine=-1)


def test_nobody_holds_keeps_old_for_every_aggregator():
  stacked = uploads({'a': [[3.0], [5.0], [9.0], [1.0], [2.0]]}, {'a': [0.0] * 5})
  old = {'a': jnp.array([-7.0])}
  for agg in (median_lib.median(), tm_lib.trimmed_mean(), krum_lib.krum(1),
              krum_lib.multi_krum(1), gm_lib.geometric_median(),
              cc_lib.centered_clipping(center='momentum')):
    out, _ = run(agg, stacked, old)
    np.testing.assert_array_equal(out['a'], [-7.0], err_msg=agg.name)


def test_geometric_median_is_the_fermat_point_of_a_symmetric_triangle():
  # A(-1, 0), B(1, 0), C(0, 3): minimizing 2 sqrt(1 + y^2) + 3 - y gives y = 1/sqrt(3)
  # (the mean is (0, 1)); client 3 far away holds nothing.
  pts = [[-1.0, 0.0], [1.0, 0.0], [0.0, 3.0], [100.0, 100.0]]
  stacked = uploads({'p': pts}, {'p': [1, 1, 1, 0]})
  out, _ = run(gm_lib.geometric_median(iterations=200), stacked, {'p': jnp.zeros(2)})
  np.testing.assert_allclose(out['p'], [0.0, 1 / math.sqrt(3)], atol=1e-5)


def test_geometric_median_on_a_line_is_the_median():
  stacked = uploads({'p': [[0.0], [0.0], [0.0], [10.0]]}, {'p': [1, 1, 1, 1]})
  out, _ = run(gm_lib.geometric_median(iterations=40), stacked, {'p': jnp.zeros(1)})
  np.testing.assert_allclose(out['p'], [0.0], atol=1e-5)     # the mean is 2.5


def test_centered_clipping_large_tau_is_the_weighted_mean():
  stacked = coordinate_stack([1, 1, 1, 0, 2])
  out, _ = run(cc_lib.centered_clipping(tau=1e6, iterations=1), stacked, SHARED)
  mean = aggregation.stacked_weighted_mean().aggregate(SHARED, {}, stacked, None)[0]
  np.testing.assert_allclose(out['enc']['w'], mean['enc']['w'], rtol=1e-6)
  np.testing.assert_allclose(out['enc']['w'], [(1 + 2 + 3 + 8) / 5, (10 + 20 - 5) / 5])
  np.testing.assert_array_equal(out['head'], [-1.0])


def test_centered_clipping_steps_and_momentum():
  # 1-D clients 0, 0, 10 around 0, tau = 1: v1 = (0 + 0 + 1) / 3; then the diffs
  # -1/3, -1/3, 29/3 clip to -1/3, -1/3, 1 and v2 = 1/3 + 1/9 = 4/9.
  stacked = uploads({'a': [[0.0], [0.0], [10.0]]}, {'a': [1, 1, 1]})
  shared = {'a': jnp.zeros(1)}
  one, _ = run(cc_lib.centered_clipping(tau=1.0, iterations=1), stacked, shared)
  two, _ = run(cc_lib.centered_clipping(tau=1.0, iterations=2), stacked, shared)
  np.testing.assert_allclose(one['a'], [1 / 3], rtol=1e-6)
  np.testing.assert_allclose(two['a'], [4 / 9], rtol=1e-6)
  # Momentum: round 2 restarts from round 1's aggregate, i.e. one more step.
  agg = cc_lib.centered_clipping(tau=1.0, iterations=1, center='momentum')
  first, state = run(agg, stacked, shared)
  np.testing.assert_allclose(state['momentum']['a'], [1 / 3], rtol=1e-6)
  second, _ = run(agg, stacked, shared, state)
  np.testing.assert_allclose(second['a'], [4 / 9], rtol=1e-6)
  with pytest.raises(ConfigError, match='center'):
    cc_lib.centered_clipping(center='median')


def test_norm_bounding_scales_by_the_held_norm_on_the_streamed_path():
  # Client 0 holds enc [3, 4] and head [12]: norm 13, scaled by 1/13. Client 1 holds
  # only enc [0.3, 0.4] (norm 0.5 <= 1: kept); its head update (100) is not held.
  stacked = uploads({'enc': [[3.0, 4.0], [0.3, 0.4]], 'head': [[12.0], [100.0]]},
                    {'enc': [1, 1], 'head': [1, 0]})
  shared = {'enc': jnp.zeros(2), 'head': jnp.zeros(1)}
  agg = nb_lib.norm_bounding(max_norm=1.0)
  assert not agg.stacked

  def go(stacked):
    sums = jax.tree.map(lambda x: jnp.sum(x, 0), jax.vmap(agg.contribute)(stacked))
    return agg.aggregate(shared, {}, sums, None)[0]

  out = jax.jit(go)(stacked)
  np.testing.assert_allclose(out['enc'], [(3 / 13 + 0.3) / 2, (4 / 13 + 0.4) / 2], rtol=1e-6)
  np.testing.assert_allclose(out['head'], [12 / 13], rtol=1e-6)
  kept = nb_lib.bounded_model(jax.tree.map(lambda x: x[1], stacked), 1.0)
  np.testing.assert_array_equal(kept['enc'], stacked.model['enc'][1])   # bit for bit
