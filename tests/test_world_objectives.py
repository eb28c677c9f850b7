"""world v2: per-kind losses and mergeable statistics against hand-computed values."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedxr_jax.data import world
from fedxr_jax.data.world import objectives

T = world.TASKS


def _logit(p):
  return np.log(p) - np.log1p(-p)


def test_classification_loss_is_softmax_cross_entropy():
  raw = jnp.array([[0.0, 0.0], [np.log(3.0), 0.0]])
  loss = objectives.example_losses(T['gaze_target'], raw, jnp.array([0, 0]), None)
  np.testing.assert_allclose(loss, [np.log(2.0), np.log(4.0 / 3.0)], rtol=1e-6)


def test_regression_loss_is_smooth_l1_on_scaled_targets():
  # gaze_point scale 0.1: errors 0.3 and 0.05 -> 3 and 0.5 -> huber 2.5 and 0.125.
  raw = jnp.zeros((1, 2))
  loss = objectives.example_losses(T['gaze_point'], raw, None, jnp.array([[0.3, 0.05]]))
  np.testing.assert_allclose(loss, [(2.5 + 0.125) / 2], rtol=1e-6)


def test_iou_and_giou_known_values():
  a = jnp.array([0.5, 0.5, 0.4, 0.4])
  np.testing.assert_allclose(objectives.iou(a, jnp.array([0.6, 0.5, 0.4, 0.4])), 0.6,
                             rtol=1e-6)
  left, right = jnp.array([0.25, 0.5, 0.2, 0.2]), jnp.array([0.75, 0.5, 0.2, 0.2])
  np.testing.assert_allclose(objectives.iou(left, right), 0.0, atol=1e-7)
  # hull 0.7 x 0.2 = 0.14, union 0.08: GIoU = -(0.14 - 0.08) / 0.14
  np.testing.assert_allclose(objectives.giou(left, right), -0.06 / 0.14, rtol=1e-5)
  np.testing.assert_allclose(objectives.giou(a, a), 1.0, rtol=1e-6)


def test_detection_loss_is_l1_plus_one_minus_giou_of_the_sigmoid_box():
  target = jnp.array([[0.5, 0.5, 0.4, 0.4]])
  exact = jnp.asarray(_logit(np.array([[0.5, 0.5, 0.4, 0.4]])))
  np.testing.assert_allclose(objectives.example_losses(T['object_box'], exact, None, target),
                             [0.0], atol=1e-6)
  shifted = jnp.asarray(_logit(np.array([[0.6, 0.5, 0.4, 0.4]])))
  # L1 mean 0.1 / 4, IoU 0.6, hull = union (0.5 x 0.4 = 0.2): GIoU 0.6.
  np.testing.assert_allclose(objectives.example_losses(T['object_box'], shifted, None, target),
                             [0.025 + 0.4], rtol=1e-5)


def test_classification_stats_and_macro_f1():
  raw = jax.nn.one_hot(jnp.array([0, 2, 2, 1, 0]), 4) * 5.0   # predictions
  y = jnp.array([0, 1, 2, 2, 3])
  mask = jnp.array([True, True, True, True, False])
  s = objectives.stats(T['intent'], raw, y, None, mask)
  assert float(s['count']) == 4 and float(s['correct']) == 2
  np.testing.assert_array_equal(s['tp'], [1, 0, 1, 0])
  np.testing.assert_array_equal(s['fp'], [0, 1, 1, 0])
  np.testing.assert_array_equal(s['fn'], [0, 1, 1, 0])
  m = objectives.summarize(T['intent'], s)
  np.testing.assert_allclose(m['accuracy'], 0.5)
  np.testing.assert_allclose(m['macro_f1'], (1.0 + 0.0 + 0.5) / 3, rtol=1e-6)  # class 3 unseen


def test_regression_stats_mae_and_pck():
  target = jnp.array([[0.5, 0.5], [0.5, 0.5], [0.1, 0.1]])
  raw = jnp.array([[0.53, 0.5], [0.5, 0.44], [0.9, 0.9]])
  s = objectives.stats(T['gaze_point'], raw, None, target, jnp.array([True, True, False]))
  np.testing.assert_allclose(s['abs_err_sum'], 0.09, rtol=1e-5)
  assert float(s['pck_hits']) == 1   # 0.03 <= 0.05 < 0.06
  m = objectives.summarize(T['gaze_point'], s)
  np.testing.assert_allclose(m['mae'], 0.09 / 4, rtol=1e-5)
  np.testing.assert_allclose(m['pck'], 0.5)
  np.testing.assert_allclose(m['rmse'], np.sqrt((0.03 ** 2 + 0.06 ** 2) / 4), rtol=1e-5)


def test_detection_stats_count_iou_hits():
  target = jnp.array([[0.5, 0.5, 0.4, 0.4]] * 2)
  raw = jnp.asarray(_logit(np.array([[0.6, 0.5, 0.4, 0.4], [0.8, 0.5, 0.4, 0.4]])))
  s = objectives.stats(T['object_box'], raw, None, target, jnp.array([True, True]))
  # overlaps 0.3 x 0.4 and 0.1 x 0.4 of boxes 0.16 each: IoU 0.12 / 0.2, 0.04 / 0.28
  np.testing.assert_allclose(s['iou_sum'], 0.6 + 0.04 / 0.28, rtol=1e-5)
  assert float(s['hits']) == 1


@pytest.mark.parametrize('name', ['emotion', 'hand_pose', 'object_box'])
def test_stats_merge_by_addition(name):
  task = T[name]
  key = jax.random.key(0)
  raw = jax.random.normal(key, (10, task.size))
  y = jax.random.randint(jax.random.fold_in(key, 1), (10,), 0, task.size)
  target = jax.random.uniform(jax.random.fold_in(key, 2), (10, task.size), minval=0.1,
                              maxval=0.5)
  mask = jnp.arange(10) != 3
  whole = objectives.stats(task, raw, y, target, mask)
  a = objectives.stats(task, raw[:6], y[:6], target[:6], mask[:6])
  b = objectives.stats(task, raw[6:], y[6:], target[6:], mask[6:])
  for k in whole:
    np.testing.assert_allclose(whole[k], a[k] + b[k], rtol=1e-5)


def test_task_losses_mask_and_mean_every_kind_alike():
  tasks = (T['intent'], T['gaze_point'], T['object_box'])
  outputs = {'intent': jnp.zeros((3, 4)), 'gaze_point': jnp.zeros((3, 2)),
             'object_box': jnp.zeros((3, 4))}
  examples = {'y': jnp.array([[1, 0, 0]] * 3),
              'targets': {'gaze_point': jnp.array([[0.1, 0.0], [0.0, 0.0], [9.0, 9.0]]),
                          'object_box': jnp.full((3, 4), 0.5)}}
  mask = jnp.array([[True, True, True], [True, True, False], [False, False, False]])
  losses, counts = objectives.task_losses(outputs, examples, tasks, mask)
  np.testing.assert_array_equal(counts, [2, 2, 1])
  np.testing.assert_allclose(losses[0], np.log(4.0), rtol=1e-6)
  np.testing.assert_allclose(losses[1], (0.5 / 2 + 0.0) / 2, rtol=1e-6)   # huber(1) = 0.5
  np.testing.assert_allclose(losses[2], 0.0, atol=1e-6)   # sigmoid(0) = 0.5: exact box
