"""Local training on one client: a `lax.scan` over a fixed number of steps.

Heterogeneous compute is a per-client step budget: the scan always runs
`local_steps` steps (static shapes, one compile) and masks the steps past a
client's budget, so a straggler's update simply stops early.
"""
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from fedxr_jax.core import problem as problem_lib
from fedxr_jax.core import trees


def batch_indices(step, order, num_examples, batch_size):
  """Example indices of `step`: consecutive slices of `order` over valid examples."""
  pos = (step * batch_size + jnp.arange(batch_size)) % jnp.maximum(num_examples, 1)
  return order[pos]


def example_order(key, num_examples, max_examples, shuffle: bool):
  """A permutation of [0, N) with the valid examples first (shuffled if asked)."""
  if not shuffle:
    return jnp.arange(max_examples)
  noise = jax.random.uniform(key, (max_examples,))
  # Valid examples get keys in [0, 1), padding in [2, 3): valid ones sort first.
  rank = jnp.where(jnp.arange(max_examples) < num_examples, noise, 2.0 + noise)
  return jnp.argsort(rank)


def make_local_update(loss_fn: Callable, optimizer: optax.GradientTransformation,
                      *, local_steps: int, batch_size: int, shuffle: bool = True):
  """Returns local_update(params, frozen, data, key, **hooks) -> (params, stats).

  Hooks (all optional; algorithms supply them):
    regularizer(params) -> scalar added to the loss (FedProx, Ditto, EWC);
    correct_grads(grads) -> grads (SCAFFOLD);
    role_active(step, roles) -> {role: bool}: roles updated at this step (FedRep's
      head-then-body schedule); a role also stays fixed where the client's
      `data['trainable'][role]` is False (it cannot afford to train it);
    objective(params, batch, meta) -> (loss, aux), replacing `loss_fn`
      (TAP's distillation).
  `stats['role_steps']` counts the steps that updated each role;
  `stats['sums']` adds `aux['sums']` (if the loss reports any, e.g. tokens
  routed to each expert) over the steps actually run.
  """

  def local_update(params, frozen, data, key, *, regularizer=None, correct_grads=None,
                   role_active=None, objective=None):
    examples = data['examples']
    meta = problem_lib.client_meta(data)
    max_examples = jax.tree.leaves(examples)[0].shape[0]
    num_examples = data['num_examples']
    budget = data.get('step_budget', local_steps)
    trainable = data.get('trainable', {})
    order = example_order(key, num_examples, max_examples, shuffle)
    base_loss = objective or loss_fn

    def total_loss(p, batch):
      loss, aux = base_loss({**frozen, **p}, batch, meta)
      if regularizer is not None:
        loss = loss + regularizer(p)
      return loss, aux

    grad_fn = jax.value_and_grad(total_loss, has_aux=True)

    def active_roles(s):
      active = dict(role_active(s, tuple(params))) if role_active is not None else {}
      for role in params:
        a = active.get(role, True)
        if role in trainable:
          a = a & trainable[role]
        active[role] = a
      return active

    def step(carry, s):
      p, opt_state = carry
      idx = batch_indices(s, order, num_examples, batch_size)
      batch = jax.tree.map(lambda x: x[idx], examples)
      (loss, aux), grads = grad_fn(p, batch)
      if correct_grads is not None:
        grads = correct_grads(grads)
      roles = active_roles(s)
      # A fixed role gets no gradient (momentum decays) and keeps its value.
      grads = {r: jax.tree.map(lambda g: jnp.where(roles[r], g, 0.0), grads[r])
               for r in grads}
      updates, new_opt_state = optimizer.update(grads, opt_state, p)
      new_p = optax.apply_updates(p, updates)
      new_p = {r: trees.where_tree(roles[r], new_p[r], p[r]) for r in new_p}
      active = s < budget
      carry = (trees.where_tree(active, new_p, p),
               trees.where_tree(active, new_opt_state, opt_state))
      sums = aux.get('sums', {}) if isinstance(aux, dict) else {}
      sums = jax.tree.map(lambda x: jnp.where(active, x, 0.0), sums)
      ran = {r: (active & roles[r]).astype(jnp.int32) for r in roles}
      return carry, (jnp.where(active, loss, 0.0), sums, ran)

    init = (params, optimizer.init(params))
    (params, _), (losses, sums, ran) = jax.lax.scan(step, init, jnp.arange(local_steps))
    steps_done = jnp.clip(budget, 0, local_steps)
    stats = {'loss': jnp.sum(losses) / jnp.maximum(steps_done, 1),
             'steps': steps_done,
             'sums': jax.tree.map(lambda x: jnp.sum(x, axis=0), sums),
             # Steps that updated each role: a role that took none is unchanged.
             'role_steps': {r: jnp.sum(n) for r, n in ran.items()}}
    return params, stats

  return local_update
