"""Shared fixtures: tiny CPU-sized experiments built from configs/test.py."""
import os
import tempfile

import pytest

from fedxr_jax.configs import test as test_config
from fedxr_jax.core import compilation_cache

# Many tests compile the same round; the persistent cache (shared by xdist
# workers and the CLI subprocesses, through the environment) compiles each
# program once per session.
os.environ.setdefault('FEDXR_XLA_CACHE',
                      os.path.join(tempfile.gettempdir(), 'fedxr_jax_test_xla'))
compilation_cache.enable(os.environ['FEDXR_XLA_CACHE'])


@pytest.fixture
def config():
  return test_config.get_config()
