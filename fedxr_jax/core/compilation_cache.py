"""JAX's persistent compilation cache (a rerun or resume skips XLA compiles), and a
count of this process's compiles."""
import os

import jax

# FEDXR_XLA_CACHE overrides the directory; set it empty to disable the cache.
DEFAULT_DIR = os.environ.get(
    'FEDXR_XLA_CACHE', os.path.join(os.path.expanduser('~'), '.cache', 'fedxr_jax', 'xla'))


def enable(directory: str = DEFAULT_DIR, min_compile_secs: float = 0.5) -> None:
  """Caches every XLA executable that took longer than `min_compile_secs`."""
  if not directory:
    return
  os.makedirs(directory, exist_ok=True)
  jax.config.update('jax_compilation_cache_dir', directory)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', min_compile_secs)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


# Compile counting: XLA compiles of this process by function name, less the
# persistent cache's hits (sweeps report how many programs they compiled).

COMPILES = {}     # fun_name -> compile requests
CACHE_HITS = [0]
_LISTENING = [False]
ROUND_FUNCTIONS = ('round_step', 'rounds')   # a vmapped lane axis keeps the name


def listen() -> None:
  """Starts counting (idempotent)."""
  if _LISTENING[0]:
    return

  def on_duration(event, duration, **kwargs):
    del duration
    if event == '/jax/core/compile/backend_compile_duration':
      name = str(kwargs.get('fun_name', '?'))
      name = name[4:-1] if name.startswith('jit(') and name.endswith(')') else name
      COMPILES[name] = COMPILES.get(name, 0) + 1

  def on_event(event, **kwargs):
    del kwargs
    if event == '/jax/compilation_cache/cache_hits':
      CACHE_HITS[0] += 1

  jax.monitoring.register_event_duration_secs_listener(on_duration)
  jax.monitoring.register_event_listener(on_event)
  _LISTENING[0] = True


def compile_counts() -> dict:
  """{'xla': compiles (cache hits excluded), 'round': of the round, 'cache_hits': ...}."""
  total = sum(COMPILES.values())
  return {'xla': total - CACHE_HITS[0], 'cache_hits': CACHE_HITS[0],
          'round_requests': sum(COMPILES.get(n, 0) for n in ROUND_FUNCTIONS)}
