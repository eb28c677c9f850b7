"""TAP, two-stage adaptive personalization (Lee et al. 2025; lee3296/TAP).

Stage 1, every round: a client trains the global model (sent to the server)
and its personal model; for each task t it holds, if the locally trained
global model beats the personal one by a margin (l_T + margin < l_S), the
personal model takes the global head of t; the shared body (every other
shared tree) is taken when the global model wins on the mean over the
client's tasks. (The body is shared by all tasks, so it cannot be swapped
per task; the reference code's per-task backbone keys are a known bug.)

Stage 2: the teacher is the global model fine-tuned on the client's data;
the personal model is distilled from it with CE + distill_lambda
KL(teacher || student), for `finetune_steps` steps.

As published: `pair_modules=True, distill_once=True`.
  pair_modules  mismatched client and server architectures: the server holds
                one module per modality-task pair (a linear expert from the
                pooled final features into task t's outputs, active where
                modality m is present), each client the pairs of its sensors
                and tasks (module weight: its examples with m and labels of t;
                a pair it lacks is neither downloaded nor sent). Stage 1
                replaces task t's head and pairs together.
  distill_once  stage 2 runs once, after federated training: at the
                evaluation after the last round; earlier evaluations see the
                stage-1 personal models the clients hold.
compare_examples (N > 0): stage 1 compares the two models on the client's
first N examples, not all of them: two forward passes over every example
cost more than the round's training on a client with many.
The defaults (one architecture, stage 2 before every evaluation) are the
variant the tracks and tests were measured with.
"""
import jax
import jax.numpy as jnp

from fedxr_jax.algorithms import model_extension
from fedxr_jax.algorithms.local_ft import check_steps, finetune
from fedxr_jax.core import algorithm as algorithm_lib
from fedxr_jax.errors import ConfigError

PAIRS = 'pair_modules'   # the pair modules' entry in the param dict (heads role)


def _kl(teacher_logits, student_logits):
  t = jax.nn.log_softmax(teacher_logits)
  s = jax.nn.log_softmax(student_logits)
  return jnp.sum(jnp.exp(t) * (t - s), axis=-1)


def extend_model(model, spec, plan, *, pair_modules, **unused):
  """With `pair_modules`: the server's modality-task pair modules (module doc)."""
  del plan, unused
  if not pair_modules:
    return model
  tasks, modalities = tuple(spec.tasks), tuple(spec.modalities)

  def init(key, base):
    del key, base
    return {t: {m: {'kernel': jnp.zeros((model.width, k)), 'bias': jnp.zeros((k,))}
                for m in modalities} for t, k in spec.tasks.items()}

  def apply(base_apply, base, own, x, mask):
    if model.apply_features is not None:   # the features from the outputs' own pass
      outputs, routing, tokens = model.apply_features(base, x, mask)
    else:
      outputs, routing = base_apply(base, x, mask)
      tokens = model.features(base, x, mask)
    pooled = jnp.mean(tokens, axis=-2)                              # [B, width]
    present = mask.astype(pooled.dtype)
    out = dict(outputs)
    for t in tasks:
      out[t] = outputs[t] + sum(present[:, i:i + 1] * (pooled @ own[t][m]['kernel']
                                                       + own[t][m]['bias'])
                                for i, m in enumerate(modalities))
    return out, routing

  def weights(counts):
    return {t: {m: counts['pairs'][t][m] for m in modalities} for t in tasks}

  return model_extension.with_modules(model, PAIRS, 'heads', init=init, apply=apply,
                                      weights=weights)


def tap(facts, *, margin: float = 0.0, distill_lambda: float = 1.0,
        finetune_steps: int = 4, pair_modules: bool = False,
        distill_once: bool = False, compare_examples: int = 0) -> algorithm_lib.Algorithm:
  """pair_modules, distill_once: TAP as published (module doc); compare_examples: stage
  1 compares the models on the client's first N examples (0: all of them)."""
  tasks, lam, steps = tuple(facts.tasks), distill_lambda, finetune_steps
  if lam < 0 or margin < 0:
    raise ConfigError('algorithm.tap.distill_lambda and algorithm.tap.margin must be >= 0')
  if compare_examples < 0:
    raise ConfigError(f'algorithm.tap.compare_examples must be >= 0 (0: every example), '
                      f'got {compare_examples}')
  first = compare_examples or None
  if facts.plan.get('heads') != 'shared':
    raise ConfigError("algorithm.name=tap needs shared heads (it swaps task heads "
                      "between the global and the personal model): --config.plan.heads=shared")
  check_steps('tap.finetune_steps', steps, facts.local_steps)
  if distill_once and facts.num_rounds < 1:
    raise ConfigError('algorithm.tap.distill_once distils after the last round: needs the '
                      "run's num_rounds (RunFacts.num_rounds >= 1)")

  def init_client_state(shared):
    return {'personal': shared}

  def swap(ctx, personal, better, body_better):
    """The personal model after taking the global heads and body that won."""
    new = {}
    for r in ctx.start:
      if r == 'heads':   # task t's head (and its pair modules) as one component
        new[r] = dict(personal['heads'])
        for part in [p for p in ('heads', PAIRS) if p in personal['heads']]:
          own = dict(personal['heads'][part])
          for t, name in enumerate(tasks):
            own[name] = jax.tree.map(lambda g, p: jnp.where(better[t], g, p),
                                     ctx.trained['heads'][part][name], own[name])
          new[r][part] = own
      else:
        new[r] = jax.tree.map(lambda g, p: jnp.where(body_better, g, p),
                              ctx.trained[r], personal[r])
    return new

  def personalize(ctx, client_state, server_state):
    del server_state
    own = {r: v for r, v in ctx.trained.items() if r not in ctx.start}
    personal, stats = ctx.train({**client_state['personal'], **own})
    compare = ctx.task_losses if first is None else (
        lambda params: ctx.task_losses(params, first=first))
    loss_global, loss_personal = compare(ctx.trained), compare(personal)
    held = ctx.data['task_mask']
    better = (loss_global + margin < loss_personal) & held
    n_held = jnp.maximum(jnp.sum(held), 1)
    body_better = (jnp.sum(jnp.where(held, loss_global, 0.0)) / n_held + margin
                   < jnp.sum(jnp.where(held, loss_personal, 0.0)) / n_held)
    # Two forward passes over the compared examples.
    compared = ctx.data['num_examples']
    if first is not None:
      compared = jnp.minimum(compared, first)
    cost = algorithm_lib.ClientCost(train_steps=stats['steps'],
                                    forward_examples=2 * compared)
    return {'personal': swap(ctx, personal, better, body_better)}, cost

  def eval_model(model, client_state):
    del model
    return client_state['personal']

  def eval_adapt(ctx, client_state):
    if not distill_once:
      return distil(ctx, client_state)
    # Once, after federated training: the evaluation after the last round.
    skip = algorithm_lib.ClientCost(train_steps=jnp.int32(0), forward_examples=jnp.int32(0))
    return jax.lax.cond(ctx.round >= facts.num_rounds, lambda: distil(ctx, client_state),
                        lambda: (ctx.trained, skip))

  def distil(ctx, client_state):
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
