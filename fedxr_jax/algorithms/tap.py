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
CE + distill_lambda KL(teacher || student), for `finetune_steps` steps.
"""
import jax
import jax.numpy as jnp

from fedxr_jax.algorithms.local_ft import check_steps, finetune
from fedxr_jax.core import algorithm as algorithm_lib
from fedxr_jax.errors import ConfigError


def _kl(teacher_logits, student_logits):
  t = jax.nn.log_softmax(teacher_logits)
  s = jax.nn.log_softmax(student_logits)
  return jnp.sum(jnp.exp(t) * (t - s), axis=-1)


def tap(facts, *, margin: float = 0.0, distill_lambda: float = 1.0,
        finetune_steps: int = 4) -> algorithm_lib.Algorithm:
  tasks, lam, steps = tuple(facts.tasks), distill_lambda, finetune_steps
  if lam < 0 or margin < 0:
    raise ConfigError('algorithm.tap.distill_lambda and algorithm.tap.margin must be >= 0')
  if facts.plan.get('heads') != 'shared':
    raise ConfigError("algorithm.name=tap needs shared heads (it swaps task heads "
                      "between the global and the personal model): --config.plan.heads=shared")
  check_steps('tap.finetune_steps', steps, facts.local_steps)

  def init_client_state(shared):
    return {'personal': shared}

  def swap(ctx, personal, better, body_better):
    """The personal model after taking the global heads and body that won."""
    new = {}
    for r in ctx.start:
      if r == 'heads':
        heads = dict(personal['heads']['heads'])
        for t, name in enumerate(tasks):
          heads[name] = jax.tree.map(lambda g, p: jnp.where(better[t], g, p),
                                     ctx.trained['heads']['heads'][name], heads[name])
        new[r] = {**personal['heads'], 'heads': heads}
      else:
        new[r] = jax.tree.map(lambda g, p: jnp.where(body_better, g, p),
                              ctx.trained[r], personal[r])
    return new

  def personalize(ctx, client_state, server_state):
    del server_state
    own = {r: v for r, v in ctx.trained.items() if r not in ctx.start}
    personal, stats = ctx.train({**client_state['personal'], **own})
    loss_global = ctx.task_losses(ctx.trained)
    loss_personal = ctx.task_losses(personal)
    held = ctx.data['task_mask']
    better = (loss_global + margin < loss_personal) & held
    n_held = jnp.maximum(jnp.sum(held), 1)
    body_better = (jnp.sum(jnp.where(held, loss_global, 0.0)) / n_held + margin
                   < jnp.sum(jnp.where(held, loss_personal, 0.0)) / n_held)
    # Two forward passes over the client's examples compare the models.
    cost = algorithm_lib.ClientCost(train_steps=stats['steps'],
                                    forward_examples=2 * ctx.data['num_examples'])
    return {'personal': swap(ctx, personal, better, body_better)}, cost

  def eval_model(model, client_state):
    del model
    return client_state['personal']

  def eval_adapt(ctx, client_state):
    del client_state
    own = {r: v for r, v in ctx.trained.items() if r not in ctx.start}
    teacher, teacher_stats = finetune(ctx._replace(trained={**ctx.start, **own}), steps)
    frozen_teacher = jax.lax.stop_gradient(teacher)

    def objective(params, batch, meta):
      loss, aux = ctx.loss(params, batch, meta)
      t_logits = ctx.predict(frozen_teacher, batch, meta)
      s_logits = ctx.predict({r: params[r] for r in teacher}, batch, meta)
      mask = batch['example_mask'][:, None] & meta['task_mask'][None, :]
      kl = sum(jnp.sum(_kl(t_logits[name], s_logits[name]) * mask[:, t])
               / jnp.maximum(jnp.sum(mask[:, t]), 1) for t, name in enumerate(tasks))
      return loss + lam * kl / len(tasks), aux

    student, stats = ctx.train(ctx.trained, objective=objective, steps=steps)
    # Each distillation step also runs the teacher forward on its batch.
    cost = algorithm_lib.ClientCost(train_steps=teacher_stats['steps'] + stats['steps'],
                                    forward_examples=stats['steps'] * facts.batch_size)
    return student, cost

  return algorithm_lib.plain('tap', init_client_state=init_client_state,
                             personalize=personalize, eval_model=eval_model,
                             eval_adapt=eval_adapt)
