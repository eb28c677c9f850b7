"""Losses and mergeable evaluation statistics, one set per task kind.

Every task's head emits raw outputs [N, size]. `example_losses` gives a
per-example loss [N] whatever the kind, so the federated stages treat every
task alike (mask, mean, weight); `stats` gives sums over examples that merge
across batches and clients by addition; `summarize` turns summed stats into
Table 6-style metrics.

  classification  softmax cross-entropy; accuracy and macro-F1 (per-class TP/FP/FN)
  regression      smooth-L1 (Huber, delta 1) on targets / task.scale; MAE, RMSE and
                  PCK (points within task.pck_threshold)
  detection       box = sigmoid(raw) as [cx, cy, w, h]; L1 + (1 - GIoU); mean IoU and
                  the rate of IoU >= 0.5
"""
import jax
import jax.numpy as jnp
import optax

from fedxr_jax.data.world.tasks import TaskDef

IOU_HIT = 0.5


def decode(task: TaskDef, raw):
  """The prediction a head's raw output stands for."""
  if task.kind == 'classification':
    return jnp.argmax(raw, -1)
  if task.kind == 'detection':
    return jax.nn.sigmoid(raw)
  return raw


def raw_target(task: TaskDef, label, target):
  """[N, size]: the raw head output each example asks for (what `decode` maps to its
  label): a class's one-hot, the target vector, a box's logits (clipped off 0 and 1)."""
  if task.kind == 'classification':
    return jax.nn.one_hot(label, task.size)
  if task.kind == 'regression':
    return target
  box = jnp.clip(target, 1e-3, 1.0 - 1e-3)
  return jnp.log(box) - jnp.log1p(-box)


def example_losses(task: TaskDef, raw, label, target):
  """Per-example loss [N]. label: int [N] (classification); target: [N, size]."""
  if task.kind == 'classification':
    return optax.softmax_cross_entropy_with_integer_labels(raw, label)
  if task.kind == 'regression':
    return jnp.mean(optax.huber_loss((raw - target) / task.scale, delta=1.0), -1)
  box = jax.nn.sigmoid(raw)
  return jnp.mean(jnp.abs(box - target), -1) + 1.0 - giou(box, target)


def task_losses(outputs: dict, examples: dict, tasks: tuple, mask):
  """Per-task masked mean loss [T] and labelled examples [T].

  outputs: {task name: raw [N, size]}; tasks: TaskDefs in label order;
  mask: bool [N, T] (example_mask & label_mask & task_mask).
  """
  losses, counts = [], []
  for t, task in enumerate(tasks):
    per = example_losses(task, outputs[task.name], examples['y'][:, t],
                         examples.get('targets', {}).get(task.name))
    m = mask[:, t].astype(per.dtype)
    counts.append(jnp.sum(m))
    losses.append(jnp.sum(per * m) / jnp.maximum(jnp.sum(m), 1.0))
  return jnp.stack(losses), jnp.stack(counts)


def _corners(box):
  cx, cy, w, h = jnp.moveaxis(box, -1, 0)
  return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def iou(a, b):
  """IoU of [..., 4] boxes [cx, cy, w, h]."""
  return _iou_parts(a, b)[0]


def _iou_parts(a, b):
  ax0, ay0, ax1, ay1 = _corners(a)
  bx0, by0, bx1, by1 = _corners(b)
  inter = (jnp.maximum(jnp.minimum(ax1, bx1) - jnp.maximum(ax0, bx0), 0.0)
           * jnp.maximum(jnp.minimum(ay1, by1) - jnp.maximum(ay0, by0), 0.0))
  union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
  hull = ((jnp.maximum(ax1, bx1) - jnp.minimum(ax0, bx0))
          * (jnp.maximum(ay1, by1) - jnp.minimum(ay0, by0)))
  return inter / jnp.maximum(union, 1e-9), union, hull


def giou(a, b):
  """Generalized IoU (Rezatofighi et al. 2019): IoU - (hull - union) / hull."""
  value, union, hull = _iou_parts(a, b)
  return value - (hull - union) / jnp.maximum(hull, 1e-9)


def stats(task: TaskDef, raw, label, target, mask):
  """Sums over the examples where mask [N] is True; merge by adding."""
  m = mask.astype(jnp.float32)
  loss = example_losses(task, raw, label, target)
  out = {'count': jnp.sum(m), 'loss_sum': jnp.sum(loss * m)}
  if task.kind == 'classification':
    pred = jnp.argmax(raw, -1)
    k = jnp.arange(task.size)
    hit, p_k, y_k = (pred == label), pred[:, None] == k, label[:, None] == k
    out['correct'] = jnp.sum(hit * m)
    out['tp'] = jnp.sum((p_k & y_k) * m[:, None], 0)
    out['fp'] = jnp.sum((p_k & ~y_k) * m[:, None], 0)
    out['fn'] = jnp.sum((~p_k & y_k) * m[:, None], 0)
  elif task.kind == 'regression':
    err = raw - target
    out['abs_err_sum'] = jnp.sum(jnp.abs(err) * m[:, None])
    out['sq_err_sum'] = jnp.sum(err ** 2 * m[:, None])
    d = task.point_dims or 1
    dist = jnp.sqrt(jnp.sum(err.reshape(err.shape[0], -1, d) ** 2, -1))   # [N, P]
    out['pck_hits'] = jnp.sum((dist <= task.pck_threshold) * m[:, None])
  else:
    overlap = iou(jax.nn.sigmoid(raw), target)
    out['iou_sum'] = jnp.sum(overlap * m)
    out['hits'] = jnp.sum((overlap >= IOU_HIT) * m)
  return out


def summarize(task: TaskDef, s: dict) -> dict:
  """Metrics of summed stats (works on numpy or jax arrays)."""
  n = jnp.maximum(s['count'], 1.0)
  out = {'loss': s['loss_sum'] / n}
  if task.kind == 'classification':
    seen = (s['tp'] + s['fp'] + s['fn']) > 0
    f1 = 2 * s['tp'] / jnp.maximum(2 * s['tp'] + s['fp'] + s['fn'], 1.0)
    out['accuracy'] = s['correct'] / n
    out['macro_f1'] = jnp.sum(f1 * seen) / jnp.maximum(jnp.sum(seen), 1)
  elif task.kind == 'regression':
    out['mae'] = s['abs_err_sum'] / (n * task.size)
    out['rmse'] = jnp.sqrt(s['sq_err_sum'] / (n * task.size))
    out['pck'] = s['pck_hits'] / (n * task.num_points)
  else:
    out['mean_iou'] = s['iou_sum'] / n
    out['iou50_rate'] = s['hits'] / n
  return out
