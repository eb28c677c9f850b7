"""TAP, task-aware personalization (lee3296/TAP), both stages.

Stage 1, every round: a client trains the global model (sent to the server)
and its personal model; for each task t it holds, if the locally trained
global model beats the personal one by a margin (l_T + margin < l_S), the
personal model takes the global head of t; the shared body (every other
shared tree) is taken when the global model wins on the mean over the
client's tasks. (The body is shared by all tasks, so it cannot be swapped
per task; the reference code's per-task backbone keys are a known bug.)

Stage 2, before evaluation: the teacher is the global model fine-tuned on
the client's data; the personal model is distilled from it with
CE + lambda KL(teacher || student), for `finetune_steps` steps.
"""
import jax
import jax.numpy as jnp

from fedxr_jax.algorithms import base
from fedxr_jax.algorithms.local_ft import finetune
from fedxr_jax.errors import ConfigError


def _kl(teacher_logits, student_logits):
  t = jax.nn.log_softmax(teacher_logits)
  s = jax.nn.log_softmax(student_logits)
  return jnp.sum(jnp.exp(t) * (t - s), axis=-1)


def tap(config, tasks=None) -> base.Algorithm:
  """`tasks`: the problem's task names in label order (default config.data.tasks)."""
  a = config.algorithm
  margin, lam, steps = float(a.tap_margin), float(a.tap_distill_lambda), int(a.finetune_steps)
  tasks = tuple(tasks or config.data.tasks)
  if lam < 0 or margin < 0:
    raise ConfigError('algorithm.tap_distill_lambda and algorithm.tap_margin must be >= 0')
  if config.plan.get('heads') != 'shared':
    raise ConfigError("algorithm.name=tap needs plan.heads='shared' (it swaps "
                      'task heads between the global and the personal model)')
  if not 1 <= steps <= config.local_steps:
    raise ConfigError(f'algorithm.finetune_steps={steps} must be in '
                      f'[1, local_steps={config.local_steps}]')

  def init_client_state(shared):
    return {'personal': shared}

  def personalize(ctx, client_state, server_state):
    del server_state
    shared_roles = tuple(ctx.start)
    own = {r: v for r, v in ctx.trained.items() if r not in ctx.start}
    personal, _ = ctx.train({**client_state['personal'], **own})
    loss_global = ctx.task_losses(ctx.trained)
    loss_personal = ctx.task_losses(personal)
    held = ctx.data['task_mask']
    better = (loss_global + margin < loss_personal) & held
    n_held = jnp.maximum(jnp.sum(held), 1)
    body_better = (jnp.sum(jnp.where(held, loss_global, 0.0)) / n_held + margin
                   < jnp.sum(jnp.where(held, loss_personal, 0.0)) / n_held)
    new = {}
    for r in shared_roles:
      if r == 'heads':
        heads = dict(personal['heads']['heads'])
        for t, name in enumerate(tasks):
          heads[name] = jax.tree.map(lambda g, p: jnp.where(better[t], g, p),
                                     ctx.trained['heads']['heads'][name], heads[name])
        new[r] = {**personal['heads'], 'heads': heads}
      else:
        new[r] = jax.tree.map(lambda g, p: jnp.where(body_better, g, p),
                              ctx.trained[r], personal[r])
    return {'personal': new}

  def eval_model(model, client_state):
    del model
    return client_state['personal']

  def eval_adapt(ctx, client_state):
    del client_state
    own = {r: v for r, v in ctx.trained.items() if r not in ctx.start}
    teacher = finetune(ctx._replace(trained={**ctx.start, **own}), steps)
    frozen_teacher = jax.lax.stop_gradient(teacher)

    def objective(params, batch, meta):
      loss, aux = ctx.loss(params, batch, meta)
      t_logits = ctx.predict(frozen_teacher, batch, meta)
      s_logits = ctx.predict({r: params[r] for r in teacher}, batch, meta)
      mask = batch['example_mask'][:, None] & meta['task_mask'][None, :]
      kl = sum(jnp.sum(_kl(t_logits[name], s_logits[name]) * mask[:, t])
               / jnp.maximum(jnp.sum(mask[:, t]), 1) for t, name in enumerate(tasks))
      return loss + lam * kl / len(tasks), aux

    student, _ = ctx.train(ctx.trained, objective=objective, steps=steps)
    return student

  return base.plain('tap')._replace(
      init_client_state=init_client_state, personalize=personalize,
      eval_model=eval_model, eval_adapt=eval_adapt)
