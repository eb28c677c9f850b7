"""Local training on one client: a `lax.while_loop` up to its step budget.

Heterogeneous compute is a per-client step budget (at most `local_steps`).
Under vmap the loop runs until every client of the batch is done and masks
the finished ones, so a vmapped chunk costs its largest budget, not
`local_steps` (`core.schedule` groups similar budgets into one chunk).
Per-step values go into [local_steps] buffers and are summed as a scan's
stacked outputs were: the same numbers, bit for bit.
"""
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from fedxr_jax.core import problem as problem_lib
from fedxr_jax.core import trees

DPSGD_STREAM = 0xD95D   # a client's DP-SGD noise keys, folded into its local key


def hyperparams_of(optimizer: optax.GradientTransformation) -> dict:
  """{name: value} an `optax.inject_hyperparams` optimizer keeps in its state ({}: none)."""
  state = optimizer.init(jnp.zeros((), jnp.float32))
  return dict(getattr(state, 'hyperparams', {}))


def with_hyperparams(opt_state, hyperparams: Optional[dict]):
  """A fresh optimizer state holding `hyperparams` (data: any value, one executable)."""
  if not hyperparams:
    return opt_state
  own = opt_state.hyperparams
  return opt_state._replace(hyperparams={
      **own, **{k: jnp.asarray(v, own[k].dtype) for k, v in hyperparams.items()}})


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


class Hooks(NamedTuple):
  """What an algorithm changes in a client's local steps (see `make_local_update`)."""
  regularizer: Optional[Callable] = None
  correct_grads: Optional[Callable] = None
  role_active: Optional[Callable] = None
  objective: Optional[Callable] = None


def _sums_of(aux) -> dict:
  return aux.get('sums', {}) if isinstance(aux, dict) else {}


def _active_roles(hooks: Hooks, trainable: dict, params: dict, s) -> dict:
  """{role: bool}: the roles this step updates (schedule and what the client can train)."""
  active = dict(hooks.role_active(s, tuple(params))) if hooks.role_active is not None else {}
  for role in params:
    a = active.get(role, True)
    if role in trainable:
      a = a & trainable[role]
    active[role] = a
  return active


def _grad_fn(base_loss: Callable, hooks: Hooks, frozen, meta, key,
             private_grads: Optional[Callable]) -> Callable:
  """(params, batch, step) -> ((loss, aux), grads): plain, or example-level DP-SGD."""

  def total_loss(p, batch):
    loss, aux = base_loss({**frozen, **p}, batch, meta)
    if hooks.regularizer is not None:
      loss = loss + hooks.regularizer(p)
    return loss, aux

  if private_grads is None:
    grad_fn = jax.value_and_grad(total_loss, has_aux=True)
    return lambda p, batch, s: grad_fn(p, batch), total_loss
  private = private_grads(lambda p, batch: base_loss({**frozen, **p}, batch, meta),
                          hooks.regularizer)
  noise_key = jax.random.fold_in(key, DPSGD_STREAM)
  return lambda p, batch, s: private(p, batch, jax.random.fold_in(noise_key, s)), total_loss


def make_local_update(loss_fn: Callable, optimizer: optax.GradientTransformation,
                      *, local_steps: int, batch_size: int, shuffle: bool = True,
                      batch_axis: Optional[str] = None,
                      private_grads: Optional[Callable] = None):
  """Returns local_update(params, frozen, data, key, **hooks) -> (params, stats).

  Hooks (all optional; algorithms supply them; `Hooks`):
    regularizer(params) -> scalar added to the loss (FedProx, Ditto, EWC);
    correct_grads(grads) -> grads (SCAFFOLD);
    role_active(step, roles) -> {role: bool}: roles updated at this step (FedRep's
      head-then-body schedule); a role also stays fixed where the client's
      `data['trainable'][role]` is False (it cannot afford to train it);
    objective(params, batch, meta) -> (loss, aux), replacing `loss_fn`
      (TAP's distillation);
    hyperparams: {name: value} written into the optimizer's fresh state (an
      `optax.inject_hyperparams` optimizer: the server's learning rate, data).
  `stats['role_steps']` counts the steps that updated each role;
  `stats['sums']` adds `aux['sums']` (if the loss reports any, e.g. tokens
  routed to each expert) over the steps actually run.
  `batch_axis`: the name of the vmap axis it runs under (`vectorize.map_clients`),
  if any: the loop then runs to the batch's largest budget, one counter
  for the batch, as a scan would (none: to this client's budget).
  `private_grads(data_loss, regularizer) -> grad_fn(params, batch, key)`:
  example-level DP-SGD (`privacy.dpsgd.local_grads`) in place of the plain
  gradient, step s keyed by fold_in(fold_in(key, DPSGD_STREAM), s) (None:
  the plain gradient).
  """

  def local_update(params, frozen, data, key, *, regularizer=None, correct_grads=None,
                   role_active=None, objective=None, hyperparams=None):
    hooks = Hooks(regularizer, correct_grads, role_active, objective)
    examples, meta = data['examples'], problem_lib.client_meta(data)
    num_examples = data['num_examples']
    steps_done = jnp.clip(data.get('step_budget', local_steps), 0, local_steps)
    order = example_order(key, num_examples, jax.tree.leaves(examples)[0].shape[0], shuffle)
    grad_at, total_loss = _grad_fn(objective or loss_fn, hooks, frozen, meta, key,
                                   private_grads)
    batch_at = lambda s: jax.tree.map(
        lambda x: x[batch_indices(s, order, num_examples, batch_size)], examples)
    step = _make_step(grad_at, hooks, optimizer, data.get('trainable', {}), params, batch_at)
    opt_state = with_hyperparams(optimizer.init(params), hyperparams)
    # [local_steps] buffers of each step's (loss, sums), shaped by one forward.
    loss, aux = jax.eval_shape(lambda: total_loss(params, batch_at(0)))
    buffers = jax.tree.map(lambda x: jnp.zeros((local_steps,) + x.shape, x.dtype),
                           (loss, _sums_of(aux)))
    # An unbatched bound (the batch's largest budget) keeps the counter a
    # scalar: a batched one would mask every carry again at every step.
    bound = steps_done if batch_axis is None else jax.lax.pmax(steps_done, batch_axis)
    init = (jnp.int32(0), params, opt_state, buffers, {r: jnp.int32(0) for r in params})
    _, params, _, (losses, sums), ran = jax.lax.while_loop(
        lambda carry: carry[0] < bound, _body(step, steps_done), init)
    stats = {'loss': jnp.sum(losses) / jnp.maximum(steps_done, 1),
             'steps': steps_done,
             'sums': jax.tree.map(lambda x: jnp.sum(x, axis=0), sums),
             # Steps that updated each role: a role that took none is unchanged.
             'role_steps': ran}
    return params, stats

  return local_update


def _make_step(grad_at, hooks: Hooks, optimizer, trainable, params, batch_at) -> Callable:
  """(params, opt_state, s) -> (params, opt_state, loss, sums, roles) of one step."""

  def step(p, opt_state, s):
    (loss, aux), grads = grad_at(p, batch_at(s), s)
    if hooks.correct_grads is not None:
      grads = hooks.correct_grads(grads)
    roles = _active_roles(hooks, trainable, params, s)
    # A fixed role gets no gradient (momentum decays) and keeps its value.
    grads = {r: jax.tree.map(lambda g: jnp.where(roles[r], g, 0.0), grads[r])
             for r in grads}
    updates, new_opt_state = optimizer.update(grads, opt_state, p)
    new_p = optax.apply_updates(p, updates)
    new_p = {r: trees.where_tree(roles[r], new_p[r], p[r]) for r in new_p}
    return new_p, new_opt_state, loss, _sums_of(aux), roles

  return step


def _body(step: Callable, steps_done) -> Callable:
  """The while loop's body: a step, kept only within this client's budget."""

  def body(carry):
    s, p, opt_state, logs, ran = carry
    new_p, new_opt_state, loss, sums, roles = step(p, opt_state, s)
    active = s < steps_done   # False past this client's budget, within the batch's
    p = trees.where_tree(active, new_p, p)
    opt_state = trees.where_tree(active, new_opt_state, opt_state)
    # Row s of each buffer, written once (a past-budget step writes 0).
    put = lambda buf, x: buf.at[s].set(jnp.where(active, x, jnp.zeros_like(x)))
    ran = {r: ran[r] + (active & roles[r]).astype(jnp.int32) for r in ran}
    return s + 1, p, opt_state, jax.tree.map(put, logs, (loss, sums)), ran

  return body
