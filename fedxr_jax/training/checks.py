"""Start-up checks: a run that cannot work is refused in one line, before it compiles.

  config_sizes(config)        every id and counter fits the 32-bit integers
                              the round uses (ids are int32, keys uint32)
  batches(exp)                a batch is no larger than a client's examples
  layouts(exp, start, stop)   every round's plan is made up front, so a
                              topology that cannot cover a round (semi's D2D
                              clusters) fails before the first compile
  state_memory(exp)           the run state (per-client trees x population)
  step_buffers(exp)           what grows with local_steps: the per-step
                              losses the local loop keeps, per vmapped client
  call_memory(compiled, ...)  XLA's memory analysis of a compiled call
Each memory check names the setting to lower. The limit is
`config.memory_budget_gb`, or (0) the memory free on the device.
"""
import os
from typing import Optional

import jax
import jax.numpy as jnp

from fedxr_jax.core import problem as problem_lib
from fedxr_jax.core import trees
from fedxr_jax.errors import ConfigError
from fedxr_jax.core import hosts
from fedxr_jax.training import guards

INT32_MAX = (1 << 31) - 1
UINT32_MAX = (1 << 32) - 1


def config_sizes(config) -> None:
  """Ids, counters and seeds against the integer widths the round uses."""
  guards.validate(config)
  if not config.memory_budget_gb >= 0:
    raise ConfigError(f'memory_budget_gb must be >= 0 (0: the free memory), got '
                      f'{config.memory_budget_gb}')
  if not 0 <= config.seed <= UINT32_MAX:
    raise ConfigError(f'seed={config.seed} must be in [0, {UINT32_MAX}] (PRNG keys are '
                      '32-bit: larger seeds would repeat smaller ones)')
  ids = config.population_size + config.eval_unseen_clients
  if ids - 1 > INT32_MAX:
    raise ConfigError(
        f'population_size + eval_unseen_clients = {ids} client ids do not fit the int32 '
        f'ids the round uses (at most {INT32_MAX + 1}); lower population_size')
  for key in ('num_rounds', 'local_steps'):
    if config[key] > INT32_MAX:
      raise ConfigError(f'{key}={config[key]} does not fit the int32 counter the round '
                        f'uses (at most {INT32_MAX})')
  if config.local_steps * config.batch_size > INT32_MAX:
    raise ConfigError(f'local_steps x batch_size = {config.local_steps * config.batch_size} '
                      'example positions do not fit int32; lower local_steps')


def _client_data(exp):
  return jax.eval_shape(lambda: exp.problem.client_data(exp.world, jnp.int32(0), 'train',
                                                        jnp.int32(0)))


def batches(exp) -> None:
  """A batch larger than a client's examples only repeats them (and costs memory)."""
  config = exp.config
  held = jax.tree.leaves(_client_data(exp)['examples'])[0].shape[0]
  if config.batch_size > held:
    raise ConfigError(f'batch_size={config.batch_size} exceeds the {held} examples a client '
                      f'holds at most (data.max_examples); lower batch_size to <= {held}')


def layouts(exp, start: int, stop: int) -> None:
  """Makes the plan of every round in [start, stop): a bad layout fails here."""
  for round_idx in range(start, stop):
    exp.plan(round_idx)


def clients_per_call(config, chunk_size: Optional[int] = None) -> int:
  """Clients trained at once: a chunk (the federation's, 'auto' resolved) or the cohort."""
  chunk = config.chunk_size if chunk_size is None else chunk_size
  if not isinstance(chunk, int):   # 'auto' before it is resolved: at most the cohort
    return config.cohort_size
  return chunk if 0 < chunk < config.cohort_size else config.cohort_size


def step_bytes(exp) -> int:
  """Bytes the local loop keeps per step and client: its loss and the loss's sums."""
  data = _client_data(exp)
  params = jax.eval_shape(lambda: exp.problem.init_params(jax.random.key(0)))
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct((exp.config.batch_size,) + x.shape[1:],
                                                      x.dtype), data['examples'])
  _, aux = jax.eval_shape(
      lambda p, b, d: exp.problem.loss(p, b, problem_lib.client_meta(d)), params, batch, data)
  sums = aux.get('sums', {}) if isinstance(aux, dict) else {}
  return 4 + trees.tree_bytes(sums)


def available_bytes() -> Optional[int]:
  """Free memory of this process's first device (CPU: the host's, within its cgroup)."""
  device = jax.local_devices()[0]
  if device.platform != 'cpu':
    stats = device.memory_stats() or {}
    if 'bytes_limit' not in stats:
      return None
    return stats['bytes_limit'] - stats.get('bytes_in_use', 0)
  free = []
  try:
    with open('/proc/meminfo') as f:
      info = dict(line.split(':', 1) for line in f)
    free.append(int(info['MemAvailable'].split()[0]) * 1024)
  except (OSError, KeyError, ValueError):
    pass
  for limit, used in (('memory.max', 'memory.current'),
                      ('memory/memory.limit_in_bytes', 'memory/memory.usage_in_bytes')):
    try:
      with open(os.path.join('/sys/fs/cgroup', limit)) as f, \
           open(os.path.join('/sys/fs/cgroup', used)) as g:
        free.append(int(f.read()) - int(g.read()))
    except (OSError, ValueError):   # 'max': no limit
      pass
  return min(free) if free else None


def limit(config, resident: int = 0) -> tuple:
  """(bytes a run may plan to use, its name); (None, '') when unknown."""
  if config.memory_budget_gb:
    return int(config.memory_budget_gb * 1e9), 'memory_budget_gb'
  free = hosts.least(available_bytes())   # every process decides alike
  return (None, '') if free is None else (free + resident, 'the free memory')


def gb(n: float) -> str:
  return f'{n / 1e9:.3g} GB'


def state_memory(exp) -> None:
  """The run state (server, every client's trees, frozen trees), before it is made."""
  config = exp.config
  shapes = jax.eval_shape(exp.federation.init, exp.world, exp.key)
  total, per_client = trees.tree_bytes(shapes), trees.tree_bytes(shapes[1])
  cap, name = limit(config, 0)
  if cap is not None and total > cap:
    lower = ('population_size' if per_client > total / 2
             else 'the model (model.width, model.depth)')
    raise ConfigError(f'the run state needs an estimated {gb(total)} ({gb(per_client)} of it '
                      f'the trees of {config.population_size} clients) but {name} is '
                      f'{gb(cap)}; lower {lower}')


def step_buffers(exp, per_step: int) -> None:
  """What grows with local_steps, from shapes (no compile): refused if it alone cannot fit."""
  config = exp.config
  clients = clients_per_call(config, exp.federation.chunk_size)
  need = config.local_steps * clients * per_step
  cap, name = limit(config, 0)
  if cap is not None and need > cap:
    raise ConfigError(
        f'local_steps={config.local_steps} needs an estimated {gb(need)} of per-step buffers '
        f'({clients} clients at once x {per_step} bytes a step) but {name} '
        f'is {gb(cap)}; lower local_steps (or chunk_size)')


def call_memory(compiled, config, per_step: int,
                chunk_size: Optional[int] = None) -> Optional[int]:
  """The compiled call's estimated peak (XLA's analysis); refused above the limit."""
  stats = compiled.memory_analysis()
  if stats is None:
    return None
  state = stats.argument_size_in_bytes
  working = stats.temp_size_in_bytes + stats.output_size_in_bytes - stats.alias_size_in_bytes
  peak = state + working
  cap, name = limit(config, state)
  if cap is None or peak <= cap:
    return peak
  steps = config.local_steps * clients_per_call(config, chunk_size) * per_step
  if steps >= working / 2:
    lower = 'local_steps (or chunk_size)'
  elif state >= working:
    lower = 'population_size or the model size'
  else:
    lower = ('batch_size or cohort_size, or set chunk_size to train fewer clients at once'
             if clients_per_call(config, chunk_size) == config.cohort_size
             else 'chunk_size or batch_size')
  raise ConfigError(f'one call needs an estimated {gb(peak)} (XLA memory analysis: '
                    f'{gb(state)} state and inputs + {gb(working)} working set, '
                    f'{gb(steps)} of it per-step buffers) but {name} is {gb(cap)}; '
                    f'lower {lower}')
