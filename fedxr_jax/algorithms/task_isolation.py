"""Task-isolated update paths (SHIFT F; the paper's Solution 4).

Each task gets a path of its own through the model: the LoRA rank
components are dealt out to the tasks (component r belongs to task r mod T)
and task t's outputs come from a forward pass that sees only its components
(the others masked to zero) and its head. A task-t-only update therefore
changes only t's components and t's head; every other task's outputs,
losses and head stay as they were, on the client and, through per-component
module weights (component r is averaged over the clients holding labels of
its task), in the global model.

The trees every task passes through (encoders, prompts, adapters, a trained
base: the common path) are, by `common`:
  'pcgrad'  trained with gradient surgery (PCGrad, Yu et al. 2020): each task
            pass gets its own copy of the common trees, and the backward pass
            projects each task's gradient off every other task's it conflicts
            with (negative inner product; in task order, where PCGrad draws a
            random order: the step stays a function of the batch), then sums
            them. A client's tasks stop undoing one another; a task another
            client trains can still move the common path.
  'fixed'   not trained: the isolation is exact, across clients too (the
            trade-off: the common path no longer adapts).
Cost: one backbone pass per task instead of one in all (the measured FLOPs
of a step and of a forward count it).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from fedxr_jax.algorithms import model_extension
from fedxr_jax.core import algorithm as algorithm_lib
from fedxr_jax.errors import ConfigError

COMMON = ('pcgrad', 'fixed')
TASK_ROLES = ('lora_a', 'lora_b', 'heads')   # the trees split by task


def pcgrad_weights(gram: jax.Array) -> jax.Array:
  """[T] weights w with PCGrad's sum of projected gradients = sum_k w_k g_k.

  gram: [T, T] inner products of the task gradients g_k. Each projected
  gradient stays in their span, g_i' = sum_k m_ik g_k, so the projections run
  on the Gram matrix alone: for j != i in order, where g_i' . g_j < 0,
  g_i' -= (g_i' . g_j / |g_j|^2) g_j. A zero gradient (a task the client does
  not hold) projects nothing.
  """
  num = gram.shape[0]
  rows = []
  for i in range(num):
    m = jnp.zeros(num, gram.dtype).at[i].set(1.0)
    for j in range(num):
      if j == i:
        continue
      dot = m @ gram[:, j]
      step = jnp.where(dot < 0, dot / jnp.maximum(gram[j, j], 1e-30), 0.0)
      m = m.at[j].add(-step)
    rows.append(m)
  return jnp.sum(jnp.stack(rows), axis=0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def fan_out(tree, copies: int):
  """`copies` copies of `tree` stacked [copies, ...]; their gradients meet by PCGrad."""
  return jax.tree.map(lambda x: jnp.broadcast_to(x, (copies,) + x.shape), tree)


def _fan_out_fwd(tree, copies):
  return fan_out(tree, copies), None


def _fan_out_bwd(copies, _, cotangent):
  del copies
  leaves = [c.reshape(c.shape[0], -1) for c in jax.tree.leaves(cotangent)]
  gram = sum(g @ g.T for g in leaves)
  w = pcgrad_weights(gram)
  return (jax.tree.map(lambda c: jnp.tensordot(w, c, axes=1), cotangent),)


fan_out.defvjp(_fan_out_fwd, _fan_out_bwd)


def owners(rank: int, num_tasks: int) -> np.ndarray:
  """The task each LoRA rank component belongs to."""
  return np.arange(rank) % num_tasks


def extend_model(model, spec, plan, *, common):
  """The model with one pass per task over its own LoRA components (module doc)."""
  tasks = tuple(spec.tasks)
  if model.lora_rank < len(tasks):
    raise ConfigError(f'algorithm.name=task_isolation deals the LoRA rank components out to '
                      f'the {len(tasks)} tasks: needs a LoRA rank >= {len(tasks)}, got '
                      f'{model.lora_rank}')
  if model.num_experts:
    raise ConfigError('not supported yet: algorithm.name=task_isolation with experts '
                      '(the router is common to every task pass)')
  owner = owners(model.lora_rank, len(tasks))
  trained = {r for r, mode in plan.items() if mode != 'frozen'}
  common_roles = trained - set(TASK_ROLES) if common == 'pcgrad' else set()

  def apply(base_apply, params, x, mask):
    flat = traverse_util.flatten_dict(params)
    role = {path: model.role_of(path) for path in flat}
    shared = {p: v for p, v in flat.items() if role[p] in common_roles}
    copies = fan_out(shared, len(tasks)) if shared else {}
    outputs = {}
    for t, name in enumerate(tasks):
      keep = jnp.asarray(owner == t, jnp.float32)
      own = {p: v * keep.reshape((-1,) + (1,) * (v.ndim - 1)).astype(v.dtype)
             for p, v in flat.items() if role[p] in ('lora_a', 'lora_b')}
      path_params = {**flat, **own, **{p: c[t] for p, c in copies.items()}}
      outputs[name] = base_apply(traverse_util.unflatten_dict(path_params), x, mask)[0][name]
    return outputs, {}

  def module_weights(weights, counts):
    labeled = jnp.stack([jnp.asarray(counts['labeled'][t], jnp.float32) for t in tasks])
    per_rank = labeled[owner]
    lora = jnp.asarray(counts['lora'], jnp.float32)
    if lora.ndim:   # heterogeneous ranks: only the client's first ranks
      per_rank = per_rank * (lora > 0)
    return {**weights, **{r: per_rank for r in ('lora_a', 'lora_b') if r in weights}}

  return model_extension.with_paths(model, apply, module_weights)


def task_isolation(facts, *, common: str = 'pcgrad') -> algorithm_lib.Algorithm:
  """common: 'pcgrad' | 'fixed' (module doc)."""
  if common not in COMMON:
    raise ConfigError(f'algorithm.task_isolation.common={common!r} is not one of {COMMON}')
  plan = facts.plan
  if plan and plan.get('lora_a', 'frozen') == 'frozen':
    raise ConfigError('algorithm.name=task_isolation gives each task its own LoRA '
                      'components: needs plan.lora=shared (or personal) and a LoRA rank')
  if 'lora_residual' in plan:
    raise ConfigError('not supported yet: algorithm.name=task_isolation with an exact LoRA '
                      'rule (the folded residual is common to every task)')
  if common == 'pcgrad':
    return algorithm_lib.plain('task_isolation')
  fixed = {r for r, mode in plan.items() if mode != 'frozen'} - set(TASK_ROLES)

  def role_schedule(step, roles):
    del step
    return {r: r not in fixed for r in roles}

  return algorithm_lib.plain('task_isolation', role_schedule=role_schedule)
