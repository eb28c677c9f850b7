"""Where and with what a run ran: hardware and software records for a submission.

Both are plain JSON dicts gathered from the running process; nothing here
changes state. The git fields are null when the package is not in a git
checkout (an installed wheel) or git is missing.
"""
import importlib.metadata
import os
import platform
import subprocess
from typing import Optional

PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'numpy')
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_model() -> Optional[str]:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.lower().startswith(('model name', 'hardware', 'cpu model')):
          return line.split(':', 1)[1].strip() or None
  except OSError:
    pass
  return platform.processor() or None


def hardware() -> dict:
  """Device kind, platform and count (jax.devices()), CPU model and count, OS."""
  import jax   # pylint: disable=g-import-not-at-top
  devices = jax.devices()
  return {
      'device_kind': str(devices[0].device_kind),
      'device_platform': str(devices[0].platform),
      'device_count': len(devices),
      'cpu_model': cpu_model(),
      'cpu_count': os.cpu_count(),
      'os': platform.platform(),
  }


def _git(*args) -> Optional[str]:
  try:
    result = subprocess.run(('git', '-C', _PACKAGE_DIR) + args, capture_output=True,
                            text=True, timeout=10, check=False)
  except (OSError, subprocess.SubprocessError):
    return None
  return result.stdout if result.returncode == 0 else None


def git_state() -> tuple:
  """(commit, dirty) of the checkout the package runs from, or (None, None).

  dirty: a tracked or untracked file under the package directory differs
  from the commit (files elsewhere in the repository, e.g. runs/, do not count).
  """
  commit = _git('rev-parse', 'HEAD')
  if not commit:
    return None, None
  status = _git('status', '--porcelain', '--untracked-files=normal', '--', '.')
  return commit.strip(), (None if status is None else bool(status.strip()))


def version_of(package: str) -> Optional[str]:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return None


def versions() -> dict:
  """The fedxr_jax version, its git commit and dirty flag, Python and packages."""
  from fedxr_jax import __version__   # pylint: disable=g-import-not-at-top
  commit, dirty = git_state()
  return {
      'fedxr_jax': version_of('fedxr_jax') or __version__,
      'git_commit': commit,
      'git_dirty': dirty,
      'python': platform.python_version(),
      'packages': {p: version_of(p) for p in PACKAGES},
  }
