"""Client update transforms, optax style: what happens to one client's update
between its local training and aggregation.

An update is the delta of the client's shared trees (`trained - start`,
{role: tree}); its weights are the module weights aggregation will use
({role: prefix tree of scalars}, as `FederatedProblem.module_weights`). A
transform may change both (clip, add noise, compress, poison, reweight),
keep a state per client (stacked over the population by the round and
checkpointed with the run, e.g. an error-feedback residual) and a state of
its own on the server (e.g. an adaptive clip norm), and report per-client
statistics, which the round sums over the cohort (inside the chunk loop)
and hands to `update_server` and to the round's metrics.

  t = chain(clip(norm=1.0), topk(fraction=0.1))
  client_state = t.init(shared)                       # one client's
  server_state = t.init_server(shared)
  update, client_state, weights, stats = t.update(
      update, client_state, key, weights, ClientInfo(...))
  server_state = t.update_server(server_state, summed_stats, key)

Stat names are global: two transforms of a chain must not report the same
name. A reported 'upload_bits' replaces the round's count of the bits the
client sends (compression, event-triggered uploads).
"""
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp


class ClientInfo(NamedTuple):
  """What a transform may read about its client (read-only)."""
  client_id: Any      # int32 scalar: the client's id in the population
  start: dict         # {role: tree} shared trees the client started from
  trained: dict       # {role: tree} its shared trees after local training
  data: dict          # its client data (examples and metadata)
  server: Any = ()    # this transform's server state
  # The aggregator's server state, as the server broadcast it with the model
  # (e.g. DP's adaptive clip norm, which the aggregator updates).
  aggregator: Any = ()


def _no_state(shared):
  del shared
  return ()


def _keep(server_state, summed_stats, key):
  del summed_stats, key
  return server_state


class UpdateTransform(NamedTuple):
  # shared {role: tree} -> the state of one client (the round stacks it).
  init: Callable
  # (update, state, key, weights, info) -> (update, state, weights, stats):
  # stats is a dict of per-client scalars, summed over the cohort.
  update: Callable
  # shared -> the transform's server state.
  init_server: Callable = _no_state
  # (server state, summed stats of the whole chain, key) -> server state
  # (the key: e.g. noise on a clipped count, Andrew et al. 2021).
  update_server: Callable = _keep


def stateless(update_fn: Callable) -> UpdateTransform:
  """A transform without state: update_fn(update, key, weights, info) -> (update, weights, stats)."""

  def update(update, state, key, weights, info):
    new_update, new_weights, stats = update_fn(update, key, weights, info)
    return new_update, state, new_weights, stats

  return UpdateTransform(_no_state, update)


def identity() -> UpdateTransform:
  return stateless(lambda update, key, weights, info: (update, weights, {}))


def chain(*transforms: UpdateTransform) -> UpdateTransform:
  """Applies `transforms` in order; states are tuples, one entry each.

  Transform i gets `fold_in(key, i)`, so adding a transform never changes
  the randomness of the ones before it.
  """

  def init(shared):
    return tuple(t.init(shared) for t in transforms)

  def init_server(shared):
    return tuple(t.init_server(shared) for t in transforms)

  def update(updates, state, key, weights, info):
    new_states, stats = [], {}
    for i, (t, s) in enumerate(zip(transforms, state)):
      updates, s, weights, new = t.update(updates, s, jax.random.fold_in(key, i), weights,
                                          info._replace(server=info.server[i]))
      clash = sorted(set(new) & set(stats))
      if clash:
        raise ValueError(f'two update transforms report the same stats {clash}')
      stats.update(new)
      new_states.append(s)
    return updates, tuple(new_states), weights, stats

  def update_server(server_state, summed_stats, key):
    return tuple(t.update_server(s, summed_stats, jax.random.fold_in(key, i))
                 for i, (t, s) in enumerate(zip(transforms, server_state)))

  return UpdateTransform(init, update, init_server, update_server)


def global_norm(update: dict) -> jax.Array:
  """L2 norm of an update over all its trees."""
  leaves = jax.tree.leaves(update)
  return jnp.sqrt(sum((jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves),
                      jnp.zeros((), jnp.float32)))


def sent_model(start: dict, trained: dict, original: dict, update: dict) -> dict:
  """The shared trees a client sends: `start + update`, leaf by leaf.

  A leaf no transform replaced is sent exactly as trained (`start + (trained -
  start)` may differ from `trained` in the last bit), so a chain that
  leaves updates alone changes no number. The check is by object identity
  at trace time: transforms that do not touch a leaf return it unchanged.
  """
  def pick(s, t, o, u):
    return t if u is o else (s + u).astype(t.dtype)
  return jax.tree.map(pick, start, trained, original, update)
