"""Memory Aware Synapses (Aljundi et al. 2018) for federated continual learning.

Replay-free and label-free. A parameter's importance is how much the
model's outputs move when it moves: Omega_k = mean over examples of
|d ||f(x)||_2^2 / d theta_k|, the outputs f(x) of every head of a task the
client holds. Every round clients report Omega at the model they received
(on their first `batch_size` examples); the server averages it by examples.
When the round before a boundary (`rounds`) ends, the server consolidates
as EWC here does: theta* <- that round's start model, Omega <- Omega + its
importance. The local loss adds lam sum_k Omega_k (theta_k - theta*_k)^2 over
the shared trees (encoders, heads, experts, ...: every module's own
importance). Unlike EWC's Fisher it needs no labels: examples whose labels
are missing count too.
"""
import jax
import jax.numpy as jnp

from fedxr_jax.algorithms import ewc
from fedxr_jax.core import algorithm as algorithm_lib


def mas(facts, *, lam: float = 1.0, rounds: tuple = ()) -> algorithm_lib.Algorithm:
  """lam: the penalty's weight; rounds: the rounds (>= 1) at which new tasks arrive."""
  tasks = tuple(facts.tasks)

  def client_report(ctx, server_state):
    del server_state
    own = {r: v for r, v in ctx.trained.items() if r not in ctx.start}
    params = {**ctx.start, **own}
    held = ctx.data['task_mask'].astype(jnp.float32)
    first = jax.tree.map(lambda x: x[:facts.batch_size], ctx.data['examples'])

    def sq_norm(p, example):
      outputs = ctx.predict(p, jax.tree.map(lambda x: x[None], example), ctx.data)
      return sum(held[i] * jnp.sum(outputs[t] ** 2) for i, t in enumerate(tasks))

    grads = jax.vmap(jax.grad(sq_norm), in_axes=(None, 0))(params, first)
    valid = (jnp.arange(jax.tree.leaves(first)[0].shape[0]) < ctx.data['num_examples'])
    w = valid.astype(jnp.float32)
    count = jnp.maximum(jnp.sum(w), 1.0)
    return jax.tree.map(lambda g: jnp.tensordot(w, jnp.abs(g), axes=1) / count,
                        {r: grads[r] for r in ctx.start})

  return ewc.consolidated('mas', lam, rounds, client_report, importance='omega', half=False,
                          arrive='at which new tasks arrive or the context changes')
