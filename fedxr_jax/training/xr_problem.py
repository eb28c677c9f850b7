"""The synthetic XR federation and the M3T model as a `FederatedProblem`."""
import functools

import jax
import jax.numpy as jnp
import optax

from fedxr_jax.core import trees
from fedxr_jax.core.problem import FederatedProblem
from fedxr_jax.data import synthetic
from fedxr_jax.models import m3t


def task_losses(logits: dict, labels, mask, tasks):
  """Per-task masked mean cross-entropy [T] and the number of labels [T]."""
  losses, counts = [], []
  for t, name in enumerate(tasks):
    ce = optax.softmax_cross_entropy_with_integer_labels(logits[name], labels[:, t])
    m = mask[:, t].astype(ce.dtype)
    counts.append(jnp.sum(m))
    losses.append(jnp.sum(ce * m) / jnp.maximum(jnp.sum(m), 1.0))
  return jnp.stack(losses), jnp.stack(counts)


def make_xr_problem(spec: synthetic.XRSpec, model: m3t.M3TModel) -> FederatedProblem:
  tasks = spec.tasks

  def init_params(key):
    x = {m: jnp.zeros((1,) + shape) for m, (shape, _) in
         spec.model_modalities().items()}
    mask = jnp.ones((1, len(spec.modalities)), bool)
    params = model.init(key, x, mask)['params']
    return trees.split_by_role(params, m3t.role_of)

  def apply(params, examples):
    variables = {'params': trees.merge_roles(*params.values())}
    return model.apply(variables, examples['x'], examples['modality_mask'])

  def label_mask(examples, task_mask):
    return examples['example_mask'][:, None] & task_mask[None, :]

  def loss(params, batch, meta):
    """Mean over the client's tasks of each task's mean cross-entropy."""
    per_task, _ = task_losses(apply(params, batch), batch['y'],
                              label_mask(batch, meta['task_mask']), tasks)
    active = meta['task_mask'].astype(per_task.dtype)
    return jnp.sum(per_task * active) / jnp.maximum(jnp.sum(active), 1.0), per_task

  def module_weights(data):
    ex = data['examples']
    valid = ex['example_mask']
    n = jnp.sum(valid).astype(jnp.float32)
    present = jnp.sum(ex['modality_mask'] & valid[:, None], axis=0).astype(jnp.float32)
    absent = jnp.sum(~ex['modality_mask'] & valid[:, None], axis=0).astype(jnp.float32)
    labeled = jnp.sum(label_mask(ex, data['task_mask']), axis=0).astype(jnp.float32)
    encoders = {m: present[i] for i, m in enumerate(spec.modalities)}
    encoders['absent'] = {m: absent[i] for i, m in enumerate(spec.modalities)}
    return {
        'encoders': {'encoders': encoders},
        'heads': {'heads': {t: labeled[i] for i, t in enumerate(tasks)}},
        'lora': n, 'prompts': n, 'base': n,
    }

  def eval_stats(params, data):
    ex = data['examples']
    logits = apply(params, ex)
    mask = label_mask(ex, data['task_mask'])
    per_task, counts = task_losses(logits, ex['y'], mask, tasks)
    correct = jnp.stack([
        jnp.sum((jnp.argmax(logits[name], -1) == ex['y'][:, t]) & mask[:, t])
        for t, name in enumerate(tasks)]).astype(jnp.float32)
    return {'correct': correct, 'count': counts, 'loss_sum': per_task * counts}

  return FederatedProblem(
      init_params=init_params, loss=loss,
      client_data=functools.partial(_client_data, spec=spec),
      module_weights=module_weights, eval_stats=eval_stats)


def _client_data(world, client_id, split, spec):
  return synthetic.client_data(world, client_id, split, spec)
