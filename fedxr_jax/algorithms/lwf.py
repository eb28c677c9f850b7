"""Learning without Forgetting (Li and Hoiem 2017), federated and per module.

Replay-free: no old data is kept. At each boundary (`rounds`: rounds at
which new tasks arrive or the context changes) the server takes the global
model as the teacher; from then on every client adds to its local loss,
on its current examples (labels not needed), a distillation term per module
kind, each with its own weight:
  heads     T^2 KL(softmax(teacher / T) || softmax(student / T)) of each head of
            a task the teacher knew (labels seen before the boundary), the
            client's or not (the outputs of every known head are kept);
  features  the squared distance between the teacher's and the student's
            pooled final features, over the width: the representation the
            encoders and the body hand to the heads;
  experts   KL between the teacher's and the student's gate distributions
            of each MoE block (which expert each example goes to).
As EWC here, the teacher is the model the round before a boundary started
from (`ServerUpdate.start`), taken when that round ends. Before the first
boundary it is FedAvg. The weights live in the server state (data).
"""
import jax
import jax.numpy as jnp

from fedxr_jax.core import algorithm as algorithm_lib
from fedxr_jax.errors import ConfigError


def _kl(teacher, student):
  t = jax.nn.log_softmax(teacher)
  return jnp.sum(jnp.exp(t) * (t - jax.nn.log_softmax(student)), axis=-1)


def distillation(teacher: dict, student: dict, tasks, known, valid, temperature) -> dict:
  """{'heads', 'features', 'experts'}: the three terms, means over valid examples.

  teacher / student: `FederatedProblem.represent` outputs; known: [T] the
  tasks (in `tasks` order) the teacher knew; valid: [B] mask.
  """
  w = valid.astype(jnp.float32)
  n = jnp.maximum(jnp.sum(w), 1.0)
  mean = lambda per_example: jnp.sum(per_example * w) / n
  tau = temperature
  heads = [mean(_kl(teacher['outputs'][t] / tau, student['outputs'][t] / tau))
           * tau ** 2 * known[i] for i, t in enumerate(tasks)]
  out = {'heads': sum(heads) / jnp.maximum(jnp.sum(known), 1.0), 'features': jnp.zeros(()),
         'experts': jnp.zeros(())}
  if 'features' in teacher:
    out['features'] = mean(jnp.mean((teacher['features'] - student['features']) ** 2, -1))
  routing = teacher.get('routing', {})
  if routing:
    out['experts'] = sum(mean(_kl(jnp.log(jnp.maximum(routing[b], 1e-9)),
                                  jnp.log(jnp.maximum(student['routing'][b], 1e-9))))
                         for b in routing) / len(routing)
  return out


def lwf(facts, *, rounds: tuple = (), heads: float = 1.0, features: float = 0.0,
        experts: float = 0.0, temperature: float = 2.0) -> algorithm_lib.Algorithm:
  """rounds: the boundaries; heads / features / experts: each module kind's weight."""
  tasks = tuple(facts.tasks)
  boundaries = tuple(int(r) for r in rounds)
  if not boundaries or any(r < 1 for r in boundaries):
    raise ConfigError('algorithm.name=lwf needs algorithm.lwf.rounds: the rounds (>= 1) at '
                      f'which new tasks arrive or the context changes, got {boundaries}')
  if min(heads, features, experts) < 0 or temperature <= 0:
    raise ConfigError('algorithm.lwf: weights must be >= 0 and temperature > 0')
  if experts > 0 and 'experts' not in facts.plan:
    raise ConfigError('algorithm.lwf.experts > 0 needs a model with experts '
                      '(model.m3t.num_experts > 0)')
  weights = jnp.asarray([heads, features, experts], jnp.float32)

  def init_server_state(shared):
    return {'teacher': shared, 'active': jnp.zeros((), bool),
            'known': jnp.zeros((len(tasks),), bool), 'seen': jnp.zeros((len(tasks),), bool),
            'weights': weights}

  def represent(problem, params, batch, meta):
    if features > 0 or experts > 0:
      return problem.represent(params, batch, meta)
    return {'outputs': problem.predict(params, batch, meta)}

  def objective(problem, anchor, client_state, server_state):
    del anchor, client_state

    def distill(params, batch, meta):
      teacher = jax.lax.stop_gradient(represent(
          problem, {**params, **server_state['teacher']}, batch, meta))
      student = represent(problem, params, batch, meta)
      terms = distillation(teacher, student, tasks, server_state['known'].astype(jnp.float32),
                           batch['example_mask'], temperature)
      w = server_state['weights']
      return w[0] * terms['heads'] + w[1] * terms['features'] + w[2] * terms['experts']

    def loss(params, batch, meta):
      total, aux = problem.loss(params, batch, meta)
      # Before the first boundary there is no teacher: no distillation, no passes.
      extra = jax.lax.cond(server_state['active'], lambda: distill(params, batch, meta),
                           lambda: jnp.zeros(()))
      return total + extra, aux

    return loss

  def client_report(ctx, server_state):
    del server_state
    ex = ctx.data['examples']
    labels = ex['example_mask'][:, None] & ctx.data['task_mask'][None, :]
    return {'labeled': jnp.sum(labels, 0).astype(jnp.float32)
                       / jnp.maximum(ctx.data['num_examples'].astype(jnp.float32), 1.0)}

  def update_server_state(state, update):
    seen = state['seen'] | (update.report['labeled'] > 0)
    consolidate = jnp.isin(update.round + 1, jnp.asarray(boundaries))
    new = {**state, 'teacher': update.start, 'active': jnp.ones((), bool), 'known': seen,
           'seen': seen}
    return jax.tree.map(lambda n, o: jnp.where(consolidate, n, o), new, {**state, 'seen': seen})

  return algorithm_lib.plain('lwf', init_server_state=init_server_state, objective=objective,
                             client_report=client_report,
                             update_server_state=update_server_state, needs_server=True)
