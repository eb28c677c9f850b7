"""JAX's persistent compilation cache: a rerun or resume skips XLA compiles."""
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
