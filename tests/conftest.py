"""Shared fixtures: tiny CPU-sized experiments built from configs/test.py."""
import os
import tempfile

import pytest

# Tests compile many small programs and run each for milliseconds: XLA's unoptimized CPU code
# generation halves their compile time. Tests compare programs with each other, or with hand
# computations within a tolerance, never with numbers made under other flags. Subprocesses
# (the CLI tests) inherit it through the environment.
_FAST_COMPILE = '--xla_backend_optimization_level=0'
if _FAST_COMPILE not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}".strip()

from fedxr_jax.configs import test as test_config   # pylint: disable=wrong-import-position
from fedxr_jax.core import compilation_cache   # pylint: disable=wrong-import-position

# Many tests compile the same round; the persistent cache (shared by xdist
# workers and the CLI subprocesses, through the environment) compiles each
# program once per session.
os.environ.setdefault('FEDXR_XLA_CACHE',
                      os.path.join(tempfile.gettempdir(), 'fedxr_jax_test_xla'))
compilation_cache.enable(os.environ['FEDXR_XLA_CACHE'])


@pytest.fixture
def config():
  return test_config.get_config()
