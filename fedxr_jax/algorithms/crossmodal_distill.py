"""Cross-modal distillation for asymmetric inputs (the paper's Solution 1).

Rich-modality clients (headsets with gaze, motion, depth) distil into the
shared trees what modality-poor clients (glasses: camera and microphone)
need: each local step adds, to the task loss on the client's own inputs,

  weight * mean_t D_t( teacher_t, student_t )

over the client's labelled examples and tasks, D_t = KL(p_teacher || p_student)
for a classification task and the mean squared difference of the outputs for
a regression or detection task (the predicted point, pose or box), where the teacher is the
model on every modality the example has (no gradient) and the student the
same model on the example with only `student_modalities` left present (the
others read as missing: the model's absent tokens). A client whose
examples carry only student modalities gets KL = 0: it trains as FedAvg
does, so the term is distillation on the modalities a client has. Server:
FedAvg's. The weight lives in the server state (data: another weight reuses
the compiled round; weight 0 is FedAvg's training).
"""
import jax
import jax.numpy as jnp

from fedxr_jax.core import algorithm as algorithm_lib
from fedxr_jax.errors import ConfigError


def kl(teacher_logits, student_logits):
  """KL(softmax(teacher) || softmax(student)) over the last axis."""
  t = jax.nn.log_softmax(teacher_logits)
  s = jax.nn.log_softmax(student_logits)
  return jnp.sum(jnp.exp(t) * (t - s), axis=-1)


def squared(teacher_out, student_out):
  """Mean squared difference over the last axis (a regression or detection output)."""
  return jnp.mean(jnp.square(teacher_out - student_out), axis=-1)


def divergence(kind: str):
  """The distillation term of a task kind."""
  return kl if kind == 'classification' else squared


def student_view(batch: dict, keep) -> dict:
  """`batch` with only the modalities of `keep` ([M] bool) present."""
  return {**batch, 'modality_mask': batch['modality_mask'] & keep[None, :]}


def crossmodal_distill(facts, *, weight: float = 1.0,
                       student_modalities: tuple = ('vision', 'audio')
                       ) -> algorithm_lib.Algorithm:
  """weight: of the distillation term; student_modalities: what the poor devices
  sense (default: smart glasses' camera and microphone, Table 1)."""
  if weight < 0:
    raise ConfigError(f'algorithm.crossmodal_distill.weight must be >= 0, got {weight}')
  unknown = sorted(set(student_modalities) - set(facts.modalities))
  if unknown or not student_modalities:
    raise ConfigError(f'algorithm.crossmodal_distill.student_modalities={student_modalities} '
                      f'must be a non-empty subset of the data\'s modalities {facts.modalities}')
  kinds = tuple(facts.task_kinds) or ('classification',) * len(facts.tasks)
  keep = jnp.asarray([m in student_modalities for m in facts.modalities])
  if bool(jnp.all(keep)):
    raise ConfigError('algorithm.crossmodal_distill.student_modalities names every modality '
                      'of the data: the student would be the teacher')

  def init_server_state(shared):
    del shared
    return {'weight': jnp.float32(weight)}

  def objective(problem, anchor, client_state, server_state):
    del anchor, client_state
    if problem.predict is None:
      raise ConfigError('algorithm.name=crossmodal_distill needs a problem with predict '
                        '(its outputs are distilled)')

    def total(params, batch, meta):
      loss, aux = problem.loss(params, batch, meta)
      teacher = jax.lax.stop_gradient(problem.predict(params, batch, meta))
      student = problem.predict(params, student_view(batch, keep), meta)
      mask = (batch['example_mask'][:, None] & meta['task_mask'][None, :]).astype(jnp.float32)
      per_task = jnp.stack([jnp.sum(divergence(kinds[i])(teacher[t], student[t]) * mask[:, i])
                            / jnp.maximum(jnp.sum(mask[:, i]), 1.0)
                            for i, t in enumerate(facts.tasks)])
      held = meta['task_mask'].astype(jnp.float32)
      term = jnp.sum(per_task * held) / jnp.maximum(jnp.sum(held), 1.0)
      return loss + server_state['weight'] * term, aux

    return total

  return algorithm_lib.plain('crossmodal_distill', init_server_state=init_server_state,
                             objective=objective)

