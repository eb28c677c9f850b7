"""How many clients one vmapped chunk holds: chunk_size = 0 | N | 'auto'.

'auto' takes the platform's preferred chunk, or the largest smaller one
with which the run fits its memory budget (config.memory_budget_gb, or the
device's free memory):
  cpu    PREFERRED_PER_DEVICE clients per device: chunks small enough for
         the caches, fine-grained enough to group similar step budgets
         (`core.schedule`); measured fastest on the 2-core dev VM
         (benchmarks/results/scheduling.md)
  other  (accelerators) the whole cohort if it fits: not measured yet.
A chunk's working set is screened for free with an upper bound (every
value its program defines, no buffer reuse); only when that bound does not
fit is one chunk compiled for XLA's memory analysis (seconds).
"""
import math
from typing import Callable, Union

import jax
import jax.numpy as jnp
from jax.extend import core as jax_core

from fedxr_jax.core import client as client_lib
from fedxr_jax.core import vectorize
from fedxr_jax.errors import ConfigError

AUTO = 'auto'
PREFERRED_PER_DEVICE = {'cpu': 8}


def parse(chunk_size: Union[int, str]) -> Union[int, str]:
  """0 | N | 'auto' (also as text, as a config override may give it)."""
  if isinstance(chunk_size, str):
    text = chunk_size.strip().lower()
    if text == AUTO:
      return AUTO
    try:
      chunk_size = int(text)
    except ValueError:
      raise ConfigError(f"chunk_size must be 0, a positive int or 'auto', "
                        f'got {chunk_size!r}') from None
  if chunk_size < 0:
    raise ConfigError(f'chunk_size must be >= 0, got {chunk_size}')
  return int(chunk_size)


def free_bytes(device) -> float:
  """Memory free on the device (XLA:CPU: the host's available memory)."""
  stats = device.memory_stats() or {}
  if 'bytes_limit' in stats:
    return float(stats['bytes_limit'] - stats.get('bytes_in_use', 0))
  with open('/proc/meminfo') as f:
    info = dict(line.split(':', 1) for line in f)
  return float(int(info['MemAvailable'].split()[0]) * 1024)


def _least_over_processes(value: float) -> float:
  """The smallest of every process's value: all of them pick the same chunk."""
  if jax.process_count() == 1:
    return value
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return float(multihost_utils.process_allgather(jnp.float32(value)).min())


def _chunk_program(stage: client_lib.LocalStage, states, source, k: int):
  """(fn, abstract args) of one vmapped chunk of k clients."""
  server, clients, frozen = states
  spec = lambda x: jax.ShapeDtypeStruct(jnp.shape(x), x.dtype)
  rows = lambda tree: jax.tree.map(
      lambda x: jax.ShapeDtypeStruct((k,) + tuple(x.shape[1:]), x.dtype), tree)
  chunk = (jax.ShapeDtypeStruct((k,), jnp.int32),
           jax.ShapeDtypeStruct((k,), jax.random.key(0).dtype),
           rows(clients.personal), rows(clients.algorithm), rows(clients.transforms))

  def one_chunk(server, frozen, source, chunk):
    client_fn = client_lib.make_client_fn(stage, server, frozen, source)
    return vectorize.map_clients(client_fn, chunk)

  return one_chunk, (*jax.tree.map(spec, (server, frozen, source)), chunk)


def chunk_memory(stage: client_lib.LocalStage, states, source, k: int) -> dict:
  """XLA's memory analysis of one compiled chunk of k clients, in bytes.

  `states`: (server, clients, frozen), e.g. `jax.eval_shape` of init.
  'temp' is the chunk's working set; 'argument' holds the population's
  states and the data source, shared by every chunk size.
  """
  fn, args = _chunk_program(stage, states, source, k)
  analysis = jax.jit(fn).lower(*args).compile().memory_analysis()
  return {'temp': analysis.temp_size_in_bytes, 'argument': analysis.argument_size_in_bytes,
          'output': analysis.output_size_in_bytes}


def _bytes(x) -> int:
  return math.prod(x.shape) * x.dtype.itemsize   # PRNG keys too (np.dtype has none)


def _tree_bytes(tree) -> int:
  return sum(_bytes(x) for x in jax.tree.leaves(tree))


def _defined_bytes(jaxpr) -> int:
  total = 0
  for eqn in jaxpr.eqns:
    total += sum(_bytes(v.aval) for v in eqn.outvars if hasattr(v.aval, 'shape'))
    for param in eqn.params.values():
      for sub in param if isinstance(param, (tuple, list)) else (param,):
        if isinstance(sub, jax_core.ClosedJaxpr):
          total += _defined_bytes(sub.jaxpr)
        elif isinstance(sub, jax_core.Jaxpr):
          total += _defined_bytes(sub)
  return total


def chunk_bytes_bound(stage: client_lib.LocalStage, states, source, k: int) -> int:
  """Bytes of every value one chunk's program defines: >= its working set."""
  fn, args = _chunk_program(stage, states, source, k)
  return _defined_bytes(jax.make_jaxpr(fn)(*args).jaxpr)


def auto_chunk_size(num_clients: int, *, platform: str, budget_bytes: float,
                    bound: Callable[[int], float], measure: Callable[[int], float],
                    mesh_size: int = 1) -> int:
  """The preferred chunk of `platform`, or the largest smaller one that fits.

  bound(n) >= measure(n): bytes of n clients of a chunk on one device (a
  cheap upper bound; XLA's compiled temporaries). Candidates divide
  `num_clients` and split evenly over the mesh; returns 0 for the whole
  cohort in one call.
  """
  preferred = PREFERRED_PER_DEVICE.get(platform, num_clients) * mesh_size
  remaining = [k for k in range(min(preferred, num_clients), 0, -1)
               if num_clients % k == 0 and k % mesh_size == 0]
  if not remaining:
    raise ConfigError(f'no chunk of the {num_clients} clients splits evenly over '
                      f'{mesh_size} devices')
  while remaining:
    k = remaining.pop(0)
    n = k // mesh_size
    if bound(n) <= budget_bytes or measure(n) <= budget_bytes:
      return 0 if k == num_clients else k
    # Temporaries grow at least in proportion: drop the chunks that cannot fit.
    per_client = measure(n) / n
    remaining = [c for c in remaining if c // mesh_size * per_client <= budget_bytes]
  raise ConfigError(f'not even {mesh_size} client(s) per chunk fit the memory budget: '
                    f'one client trains in an estimated {per_client / 1e9:.3g} GB but '
                    f'{budget_bytes / 1e9:.3g} GB is left beside the run state '
                    '(memory_budget_gb or the free memory); lower local_steps, batch_size '
                    'or the model size')


def resolve(chunk_size, stage: client_lib.LocalStage, states, source, *, num_clients: int,
            mesh=None, memory_budget_gb: float = 0.0) -> int:
  """chunk_size as an int: 'auto' measured on this federation (`auto_chunk_size`).

  The budget (memory_budget_gb x 1e9 bytes, 0: the device's free memory)
  holds the run's state and data, resident whatever the chunk, and one
  chunk's working set.
  """
  chunk_size = parse(chunk_size)
  if chunk_size != AUTO:
    return chunk_size
  device = jax.local_devices()[0]   # of this process: another's has no memory_stats here
  budget = memory_budget_gb * 1e9 if memory_budget_gb > 0 else _least_over_processes(
      free_bytes(device))
  resident = _tree_bytes((states, source))
  one_client = chunk_bytes_bound(stage, states, source, 1)
  measured = {}

  def measure(n):
    if n not in measured:
      measured[n] = chunk_memory(stage, states, source, n)['temp']
    return measured[n]

  return auto_chunk_size(num_clients, platform=device.platform,
                         budget_bytes=budget - resident, bound=lambda n: n * one_client,
                         measure=measure, mesh_size=1 if mesh is None else mesh.size)
