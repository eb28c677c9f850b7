"""The synthetic XR federation and the M3T model as a `FederatedProblem`."""
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
from flax import traverse_util

from fedxr_jax.core import trees
from fedxr_jax.core.problem import FederatedProblem
from fedxr_jax.data import synthetic
from fedxr_jax.data.world import objectives
from fedxr_jax.models.interface import ModelDef


def task_losses(outputs: dict, examples: dict, mask, task_defs):
  """Per-task masked mean loss [T] and the number of labels [T], each task by its kind
  (`data.world.objectives`: cross-entropy, smooth-L1 on targets, box L1 + GIoU)."""
  return objectives.task_losses(outputs, examples, task_defs, mask)


def task_hits(task_defs, outputs: dict, examples: dict):
  """[N, T] in [0, 1]: each example's success at each task -- correct class, the share of
  its points within the PCK threshold, box IoU >= 0.5 -- the tasks' common 'accuracy'."""
  hits = []
  for t, td in enumerate(task_defs):
    raw = outputs[td.name]
    if td.kind == 'classification':
      hits.append((jnp.argmax(raw, -1) == examples['y'][:, t]).astype(jnp.float32))
      continue
    target = examples['targets'][td.name]
    if td.kind == 'regression':
      d = td.point_dims or 1
      dist = jnp.sqrt(jnp.sum((raw - target).reshape(raw.shape[0], -1, d) ** 2, -1))
      hits.append(jnp.mean((dist <= td.pck_threshold).astype(jnp.float32), -1))
    else:
      hits.append((objectives.iou(jax.nn.sigmoid(raw), target) >= objectives.IOU_HIT)
                  .astype(jnp.float32))
  return jnp.stack(hits, 1)


def kind_stats(task_defs, outputs: dict, examples: dict, mask) -> dict:
  """The kind-specific sums of the non-classification tasks ({task: {name: sum}})."""
  return {td.name: objectives.stats(td, outputs[td.name], examples['y'][:, t],
                                    examples['targets'][td.name], mask[:, t])
          for t, td in enumerate(task_defs) if td.kind != 'classification'}


def make_xr_problem(spec: synthetic.XRSpec, model: ModelDef, *,
                    device_lora_ranks: Sequence[int] = (),
                    client_data_fn: Optional[Callable] = None,
                    client_position_fn: Optional[Callable] = None,
                    client_device_fn: Optional[Callable] = None) -> FederatedProblem:
  """The model (a `models.interface.ModelDef`) on a federation described by `spec`.

  The problem keeps the task losses, label masks and evaluation statistics
  and asks the model for the rest (parameters by role, outputs, routing,
  module weights).
  device_lora_ranks: LoRA rank of each of `spec.devices` (heterogeneous
  ranks, zero-padded to the model's rank): a client trains and uses only its
  first r_i rank components, and gives the others zero aggregation weight.
  The MoE load-balancing loss (Switch Transformer) weighs `model.m3t.moe_balance`.
  client_data_fn: (source, client_id, split, round_idx) -> client data;
  client_position_fn: (source, client_id, round_idx) -> [2] metres;
  client_device_fn: (source, client_id) -> device index; defaults: the
  synthetic generator's.
  """
  tasks, task_defs = spec.tasks, spec.task_defs
  r_max = model.lora_rank
  moe = model.num_experts > 0
  client_data = data_fn(spec, device_lora_ranks, client_data_fn, model.signature)
  client_position_fn = client_position_fn or (
      lambda source, c, r: synthetic.client_position(source, c, r, spec))
  client_device_fn = client_device_fn or (
      lambda source, c: synthetic.client_profile(source, c, spec)['device'])

  def rank_mask(meta):
    rank = meta.get('lora_rank', r_max)
    return (jnp.arange(r_max) < rank).astype(jnp.float32)

  def init_params(key):
    return trees.split_by_role(model.init(key), model.role_of)

  def client_params(params, meta):
    """The model's params as the client runs it (merged over roles)."""
    if 'lora_rank' in meta:   # a client of rank r_i sees only its first r_i ranks
      mask = rank_mask(meta)
      params = {**params, **{r: jax.tree.map(lambda x: x * trees.expand_weight(mask, x),
                                             params[r])
                             for r in ('lora_a', 'lora_b') if r in params}}
    return trees.merge_roles(*params.values())

  def inputs(examples):
    """The model's inputs: the sensors, and the user's signature where it takes one."""
    if 'signature' in examples:
      return {**examples['x'], 'signature': examples['signature']}
    return examples['x']

  def apply(params, examples, meta):
    """(logits {task: [B, K]}, per-example MoE routing {block: (tokens, probs)})."""
    if 'path' in examples:   # each example read out after its own blocks (resource_aware)
      return model.apply_path(client_params(params, meta), inputs(examples),
                              examples['modality_mask'], examples['path'])
    return model.apply(client_params(params, meta), inputs(examples), examples['modality_mask'])

  def label_mask(examples, task_mask):
    """[N, T]: a valid example's label of a task the client holds (and, where the
    data withholds labels, `examples['label_mask']`)."""
    mask = examples['example_mask'][:, None] & task_mask[None, :]
    return mask & examples['label_mask'] if 'label_mask' in examples else mask

  def loss(params, batch, meta):
    """Mean over the client's tasks of each task's mean cross-entropy."""
    logits, routing = apply(params, batch, meta)
    per_task, _ = task_losses(logits, batch, label_mask(batch, meta['task_mask']), task_defs)
    active = meta['task_mask'].astype(per_task.dtype)
    total = jnp.sum(per_task * active) / jnp.maximum(jnp.sum(active), 1.0)
    valid = batch['example_mask'].astype(jnp.float32)[:, None]
    sums = {}
    if moe:
      tokens = {b: jnp.sum(t * valid, axis=0) for b, (t, _) in routing.items()}
      sums['expert_tokens'] = tokens
      total = total + model.moe_balance * sum(
          _balance_loss(tokens[b], p, valid) for b, (_, p) in routing.items())
    return total, {'per_task': per_task, 'sums': sums}

  def module_weights(data, stats=None):
    ex = data['examples']
    valid = ex['example_mask']
    n = jnp.sum(valid).astype(jnp.float32)
    present = jnp.sum(ex['modality_mask'] & valid[:, None], axis=0).astype(jnp.float32)
    absent = jnp.sum(~ex['modality_mask'] & valid[:, None], axis=0).astype(jnp.float32)
    labels = label_mask(ex, data['task_mask'])
    labeled = jnp.sum(labels, axis=0).astype(jnp.float32)
    # [T, M]: labeled examples of each task that carry each modality.
    pairs = labels.astype(jnp.float32).T @ (ex['modality_mask'] & valid[:, None]).astype(
        jnp.float32)
    return model.module_weights({
        'examples': n,
        # Heterogeneous ranks: one weight per rank slice (zero past the client's rank).
        'lora': n * rank_mask(data) if device_lora_ranks else n,
        'present': {m: present[i] for i, m in enumerate(spec.modalities)},
        'absent': {m: absent[i] for i, m in enumerate(spec.modalities)},
        'labeled': {t: labeled[i] for i, t in enumerate(tasks)},
        'pairs': {t: {m: pairs[i, j] for j, m in enumerate(spec.modalities)}
                  for i, t in enumerate(tasks)},
        # Tokens routed to each expert during local training (None: at evaluation).
        'routed': None if stats is None or not moe else stats['sums']['expert_tokens']})

  def eval_stats(params, data):
    ex = data['examples']
    logits, routing = apply(params, ex, data)
    mask = label_mask(ex, data['task_mask'])
    per_task, counts = task_losses(logits, ex, mask, task_defs)
    hits = task_hits(task_defs, logits, ex)
    correct = jnp.sum(hits * mask, 0)
    stats = {'correct': correct, 'count': counts, 'loss_sum': per_task * counts}
    if any(td.kind != 'classification' for td in task_defs):
      stats['tasks'] = kind_stats(task_defs, logits, ex, mask)
    if 'eventual_task_mask' in data:   # task arrival: the client's tasks not there yet
      later = label_mask(ex, data['eventual_task_mask'] & ~data['task_mask'])
      stats['correct_before_arrival'] = jnp.sum(hits * later, 0)
      stats['count_before_arrival'] = jnp.sum(later, 0).astype(jnp.float32)
    # Submodule activation: labeled examples of each task that carry each
    # modality [T, M], and the LoRA rank they ran with, summed [T].
    labeled = mask.astype(jnp.float32)
    present = (ex['modality_mask'] & ex['example_mask'][:, None]).astype(jnp.float32)
    stats['modality_examples'] = labeled.T @ present
    stats['lora_rank_sum'] = jnp.sum(labeled, 0) * jnp.sum(rank_mask(data))
    if moe:   # tokens each task's examples route to each expert: [T, L, E]
      routed = jnp.stack([tokens for tokens, _ in routing.values()], 1)
      stats['expert_tokens'] = jnp.einsum('nt,nle->tle', mask.astype(jnp.float32), routed)
    return stats

  def predict(params, batch, meta):
    return apply(params, batch, meta)[0]

  def represent(params, batch, meta):
    """Outputs, the mean of the final token features, MoE gate probabilities."""
    outputs, routing = apply(params, batch, meta)
    features = model.features(client_params(params, meta), inputs(batch),
                              batch['modality_mask'])
    return {'outputs': outputs, 'features': jnp.mean(features, axis=-2),
            'routing': {b: p for b, (_, p) in routing.items()}}

  def head_statistics(params, data):
    """{task: {'gram', 'cross'}} over the client's labelled examples (`FederatedProblem`)."""
    ex = data['examples']
    x = model.head_inputs(client_params(params, data), inputs(ex), ex['modality_mask'])
    x = jnp.concatenate([x.astype(jnp.float32), jnp.ones(x.shape[:-1] + (1,))], -1)
    mask = label_mask(ex, data['task_mask']).astype(jnp.float32)
    out = {}
    for t, td in enumerate(task_defs):
      xm = x * mask[:, t:t + 1]
      target = objectives.raw_target(td, ex['y'][:, t], ex.get('targets', {}).get(td.name))
      out[td.name] = {'gram': xm.T @ x, 'cross': xm.T @ target}
    return out

  def map_heads(params, fn):
    flat = {role: traverse_util.flatten_dict(tree) for role, tree in params.items()}
    for name in tasks:
      kernel, bias = model.head_path(name) + ('kernel',), model.head_path(name) + ('bias',)
      role = flat[model.role_of(kernel)]
      w = fn(name, jnp.concatenate([role[kernel], role[bias][None]], 0))
      role[kernel], role[bias] = w[:-1].astype(role[kernel].dtype), w[-1].astype(
          role[bias].dtype)
    return {role: traverse_util.unflatten_dict(f) for role, f in flat.items()}

  readout = model.head_inputs is not None and model.head_path is not None
  return FederatedProblem(
      init_params=init_params, loss=loss, client_data=client_data,
      module_weights=module_weights, eval_stats=eval_stats, predict=predict,
      client_position=client_position_fn, client_device=client_device_fn,
      area_m=float(spec.area_m), represent=represent,
      head_statistics=head_statistics if readout else None,
      map_heads=map_heads if readout else None)


def _balance_loss(routed, probs, valid):
  """Switch-Transformer load balance E * sum_e f_e P_e for one block.

  routed: tokens sent to each expert [E] (summed over the batch); probs:
  per-example mean gate probabilities [B, E]; valid: [B, 1] example mask.
  """
  num_experts = routed.shape[-1]
  fraction = routed / jnp.maximum(jnp.sum(routed), 1.0)
  mean_prob = jnp.sum(probs * valid, axis=0) / jnp.maximum(jnp.sum(valid), 1.0)
  return num_experts * jnp.sum(fraction * mean_prob)


def data_fn(spec, device_lora_ranks: Sequence[int] = (),
            client_data_fn: Optional[Callable] = None,
            signature: Optional[Callable] = None) -> Callable:
  """(source, client_id, split, round_idx) -> client data, with each client's
  LoRA rank under heterogeneous ranks, and where the model conditions on a user
  signature (`ModelDef.signature`), the user's: computed from its trace (its
  training examples of the round) and given to every example of either split.
  Default source: the synthetic generator."""
  if client_data_fn is None:
    client_data_fn = lambda world, c, split, r: synthetic.client_data(
        world, c, split, spec, round_idx=r)
  ranks = jnp.asarray(device_lora_ranks or (1,) * len(spec.devices), jnp.int32)

  def client_data(source, client_id, split, round_idx=0):
    data = client_data_fn(source, client_id, split, round_idx)
    if device_lora_ranks:
      data['lora_rank'] = ranks[data['device']]
    if signature is not None:
      trace = data if split == 'train' else client_data_fn(source, client_id, 'train',
                                                           round_idx)
      sig = signature(trace['examples'])
      size = data['examples']['example_mask'].shape[0]
      data['examples'] = {**data['examples'],
                          'signature': jnp.broadcast_to(sig, (size,) + sig.shape)}
    return data

  return client_data
