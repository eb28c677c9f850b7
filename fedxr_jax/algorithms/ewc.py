"""EWC for federated continual learning (Kirkpatrick et al. 2017).

Local loss + lam/2 sum_k F_k (theta_k - theta*_k)^2 over the shared trees.
Every round clients report the diagonal empirical Fisher (mean squared
per-example gradient) at the model they received; the server averages it
by examples. When the round before a task boundary (`rounds`: rounds at
which new tasks arrive) ends, the server consolidates: theta* <- that
round's start model and F <- F + its Fisher (online EWC, gamma = 1), both
taken at the same point, one round before the boundary.
"""
import jax
import jax.numpy as jnp

from fedxr_jax.core import algorithm as algorithm_lib
from fedxr_jax.errors import ConfigError


def ewc(facts, *, lam: float = 10.0, rounds: tuple = ()) -> algorithm_lib.Algorithm:
  del facts

  def client_report(ctx, server_state):
    del server_state
    own = {r: v for r, v in ctx.trained.items() if r not in ctx.start}
    grads, valid = ctx.example_grads({**ctx.start, **own})
    count = jnp.maximum(jnp.sum(valid), 1)
    w = valid.astype(jnp.float32)
    return jax.tree.map(lambda g: jnp.tensordot(w, g ** 2, axes=1) / count,
                        {r: grads[r] for r in ctx.start})

  return consolidated('ewc', lam, rounds, client_report, importance='fisher', half=True,
                      arrive='at which new tasks arrive')


def consolidated(name: str, lam: float, rounds, client_report, *, importance: str,
                 half: bool, arrive: str) -> algorithm_lib.Algorithm:
  """A quadratic penalty lam (/2 with `half`) sum_k I_k (theta_k - theta*_k)^2 over the
  shared trees, I the clients' `client_report` averaged by examples (the server state's
  `importance`), consolidated when the round before a boundary in `rounds` ends: theta*
  <- that round's start model, I <- I + its report (EWC's Fisher, MAS's Omega)."""
  boundaries = tuple(int(r) for r in rounds)
  if lam < 0:
    raise ConfigError(f'algorithm.{name}.lam must be >= 0, got {lam}')
  if not boundaries or any(r < 1 for r in boundaries):
    raise ConfigError(f'algorithm.name={name} needs algorithm.{name}.rounds: the rounds '
                      f'(>= 1) {arrive}, got {boundaries}')

  def init_server_state(shared):
    zeros = jax.tree.map(jnp.zeros_like, shared)
    # lam is data (another lam reuses the compiled round).
    return {'anchor': shared, importance: zeros, 'lam': jnp.float32(lam)}

  def regularizer(params, anchor, client_state, server_state):
    del anchor, client_state
    terms = [jnp.sum(f * (p - a) ** 2) for p, a, f in zip(
        jax.tree.leaves({r: params[r] for r in server_state['anchor']}),
        jax.tree.leaves(server_state['anchor']), jax.tree.leaves(server_state[importance]))]
    scale = 0.5 * server_state['lam'] if half else server_state['lam']
    return scale * sum(terms, jnp.zeros(()))

  def update_server_state(server_state, update):
    consolidate = jnp.isin(update.round + 1, jnp.asarray(boundaries))
    new = {'anchor': update.start, 'lam': server_state['lam'],
           importance: jax.tree.map(jnp.add, server_state[importance], update.report)}
    return jax.tree.map(lambda n, o: jnp.where(consolidate, n, o), new, server_state)

  return algorithm_lib.plain(name, init_server_state=init_server_state,
                             regularizer=regularizer, client_report=client_report,
                             update_server_state=update_server_state, needs_server=True)
