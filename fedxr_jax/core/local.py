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
                      *, local_steps: int, batch_size: int, shuffle: bool = True,
                      algorithm=None):
  """Returns local_update(trainable, frozen, data, key, ...) -> (trainable, stats).

  With an `algorithms.Algorithm`, the local loss gains its regularizer
  (anchored at `anchor`, the shared trees the client started from) and the
  gradients its correction (from the client's and the server's state).
  """

  def local_update(trainable, frozen, data, key, anchor=None, client_state=None,
                   server_state=None):
    examples = data['examples']
    meta = problem_lib.client_meta(data)
    max_examples = jax.tree.leaves(examples)[0].shape[0]
    num_examples = data['num_examples']
    budget = data.get('step_budget', local_steps)
    order = example_order(key, num_examples, max_examples, shuffle)

    def objective(params, batch):
      loss, aux = loss_fn({**frozen, **params}, batch, meta)
      if algorithm is not None:
        loss = loss + algorithm.regularizer(params, anchor)
      return loss, aux

    grad_fn = jax.value_and_grad(objective, has_aux=True)

    def step(carry, s):
      params, opt_state = carry
      idx = batch_indices(s, order, num_examples, batch_size)
      batch = jax.tree.map(lambda x: x[idx], examples)
      (loss, _), grads = grad_fn(params, batch)
      if algorithm is not None:
        grads = algorithm.correct_grads(grads, client_state, server_state)
      updates, new_opt_state = optimizer.update(grads, opt_state, params)
      new_params = optax.apply_updates(params, updates)
      active = s < budget
      carry = (trees.where_tree(active, new_params, params),
               trees.where_tree(active, new_opt_state, opt_state))
      return carry, jnp.where(active, loss, 0.0)

    init = (trainable, optimizer.init(trainable))
    (trainable, _), losses = jax.lax.scan(step, init, jnp.arange(local_steps))
    steps_done = jnp.clip(budget, 0, local_steps)
    stats = {'loss': jnp.sum(losses) / jnp.maximum(steps_done, 1),
             'steps': steps_done}
    return trainable, stats

  return local_update
