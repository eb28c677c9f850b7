"""Runs a per-client function over the client axis: vmap, in chunks, sharded."""
from typing import Callable, Optional

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from fedxr_jax.errors import ConfigError

CLIENT_AXIS = 'clients'
# The vmap axis of a chunk: per-client code may reduce over it (`core.local`).
VMAP_AXIS = 'chunk'


def client_mesh(devices=None) -> Mesh:
  """A 1-D mesh ('clients',) over the given (default: all) devices."""
  devices = jax.devices() if devices is None else devices
  return Mesh(list(devices), (CLIENT_AXIS,))


def check_layout(num_clients: int, chunk_size: int, mesh: Optional[Mesh]):
  """Raises ConfigError if the client axis cannot be chunked/sharded evenly."""
  if chunk_size and num_clients % chunk_size:
    raise ConfigError(f'chunk_size={chunk_size} does not divide the '
                      f'{num_clients} clients of a round')
  per_call = chunk_size if chunk_size and chunk_size < num_clients else num_clients
  if mesh is not None and per_call % mesh.size:
    raise ConfigError(f'{per_call} clients per vmapped call do not split evenly '
                      f'over {mesh.size} devices')


def _constrain(tree, mesh, spec):
  if mesh is None or mesh.size == 1:
    return tree
  return jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, spec))


def map_clients(fn: Callable, args, *, chunk_size: int = 0,
                mesh: Optional[Mesh] = None, order: Optional[jax.Array] = None):
  """fn mapped over the leading client axis of every leaf of `args`.

  `fn` returns (per_client, summed): `per_client` comes back stacked [C, ...];
  `summed` comes back added over all clients, accumulated chunk by chunk, so
  a reduction never materializes C copies of a model.

  chunk_size > 0 runs `lax.scan` over groups of `chunk_size` vmapped clients:
  the same per-client math in a working set that fits caches (CPU) or memory
  (GPU). With a mesh, each vmapped group is sharded over its devices.
  `order` ([C] positions, `core.schedule`): the chunks take the clients in
  that order; `per_client` still comes back in the order of `args`
  (ignored without chunks).
  """
  num_clients = jax.tree.leaves(args)[0].shape[0]
  check_layout(num_clients, chunk_size, mesh)
  batched = jax.vmap(fn, axis_name=VMAP_AXIS)
  total = sum_over_clients
  if not chunk_size or chunk_size >= num_clients:
    per_client, summed = batched(*_constrain(args, mesh, P(CLIENT_AXIS)))
    return _constrain(per_client, mesh, P(CLIENT_AXIS)), total(summed)
  groups = num_clients // chunk_size
  split = lambda x: x.reshape((groups, chunk_size) + x.shape[1:])
  if order is not None:
    args = jax.tree.map(lambda x: x[order], args)
  grouped = _constrain(jax.tree.map(split, args), mesh, P(None, CLIENT_AXIS))
  one_group = jax.tree.map(lambda x: x[0], grouped)
  summed_shape = jax.eval_shape(lambda a: total(batched(*a)[1]), one_group)

  def body(acc, group):
    per_client, summed = batched(*group)
    return jax.tree.map(jnp.add, acc, total(summed)), per_client

  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), summed_shape)
  summed, per_client = jax.lax.scan(body, zeros, grouped)
  per_client = _constrain(per_client, mesh, P(None, CLIENT_AXIS))
  per_client = jax.tree.map(lambda x: x.reshape((num_clients,) + x.shape[2:]), per_client)
  if order is not None:   # back to the order of `args`
    inverse = jnp.zeros_like(order).at[order].set(jnp.arange(num_clients, dtype=order.dtype))
    per_client = jax.tree.map(lambda x: x[inverse], per_client)
  return per_client, summed


def sum_over_clients(tree):
  return jax.tree.map(lambda x: jnp.sum(x, axis=0), tree)
