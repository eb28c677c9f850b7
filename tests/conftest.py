"""Shared fixtures: tiny CPU-sized experiments built from configs/test.py."""
import os
import subprocess
import sys
import tempfile

import pytest

# Tests compile many small programs and run each for milliseconds: XLA's unoptimized CPU code
# generation halves their compile time, and its older loop emitters (in place of the fusion
# emitters) halve it again (a one-round run of configs/test.py: 13.8 s of compile -> 6.5 s).
# Tests compare programs with each other, or with hand computations within a tolerance, never
# with numbers made under other flags. Subprocesses (the CLI tests) inherit them through the
# environment.
# Tests marked `fusion_emitters` assert bit-identity between two programs (a vmapped and a
# single client, a jitted and an eager sum), which the fusion emitters runs use give and the
# loop emitters do not (1 ulp): each runs in a subprocess under the fusion emitters.
_LOOP_EMITTERS = '--xla_cpu_use_fusion_emitters=false'
_EXACT = 'FEDXR_TEST_FUSION_EMITTERS'
for _fast_compile in ('--xla_backend_optimization_level=0',
                      *(() if os.environ.get(_EXACT) else (_LOOP_EMITTERS,))):
  if _fast_compile not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} {_fast_compile}".strip()

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


def pytest_pyfunc_call(pyfuncitem):
  """A `fusion_emitters` test in a process under the loop emitters: re-run it in one that is
  not (its output shown if it fails)."""
  if pyfuncitem.get_closest_marker('fusion_emitters') is None or os.environ.get(_EXACT):
    return None
  env = {**os.environ, _EXACT: '1',
         'XLA_FLAGS': os.environ['XLA_FLAGS'].replace(_LOOP_EMITTERS, '').strip()}
  done = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                         '-p', 'no:xdist', '-o', 'addopts=', pyfuncitem.nodeid],
                        cwd=pyfuncitem.config.rootpath, env=env, capture_output=True,
                        text=True, check=False)
  if done.returncode != 0:
    pytest.fail(f'under the fusion emitters:\n{done.stdout}{done.stderr}', pytrace=False)
  return True
