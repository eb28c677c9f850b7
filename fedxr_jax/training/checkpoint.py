"""Orbax checkpoints of a run's state, restored against an abstract target."""
import fcntl
import json
import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

from fedxr_jax.errors import CheckpointError


class Checkpoints:
  """Saves {'server', 'clients'} at round numbers; restores the latest."""

  def __init__(self, directory: str, max_to_keep: int = 3):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_round(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, round_idx: int, state: Any) -> None:
    self._manager.save(round_idx, args=ocp.args.StandardSave(state))
    self._manager.wait_until_finished()

  def restore(self, round_idx: int, target: Any) -> Any:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    path = os.path.join(self.directory, str(round_idx))
    try:
      restored = self._manager.restore(round_idx,
                                       args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # orbax raises many types for damaged files
      first_line = str(e).strip().splitlines()[0][:300] if str(e).strip() else ''
      raise CheckpointError(
          f'checkpoint {path} is corrupt or from another run '
          f'({type(e).__name__}: {first_line}); delete it to restart from the '
          'previous one') from None
    _check_same_structure(restored, target, path)
    return restored

  def close(self):
    self._manager.close()


def _check_same_structure(restored, target, path):
  got = jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), restored)
  want = jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), target)
  if got != want:
    raise CheckpointError(f'checkpoint {path} does not match this run\'s state '
                          '(shapes or dtypes differ)')


def write_run_config(workdir: str, config_json: str, immutable_keys) -> None:
  """Saves the run's config; refuses a workdir that belongs to another run.

  Only keys outside `immutable_keys` (num_rounds, eval/checkpoint cadence...)
  may change when a run is resumed.
  """
  path = os.path.join(workdir, 'config.json')
  new = json.loads(config_json)
  if os.path.exists(path):
    try:
      with open(path) as f:
        old = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
      raise CheckpointError(f'{path} is unreadable ({e}); is this a fedxr workdir?')
    changed = sorted(k for k in set(old) | set(new)
                     if k in immutable_keys and old.get(k) != new.get(k))
    if changed:
      raise CheckpointError(
          f'workdir {workdir} holds a run with different {changed}; use a new '
          '--workdir (only num_rounds and the eval/checkpoint cadence may change '
          'on resume)')
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    f.write(json.dumps(new, indent=2, sort_keys=True))
  os.replace(tmp, path)


def lock_workdir(workdir: str):
  """An exclusive lock on the workdir, held while the returned file is open.

  Two runs writing one workdir would interleave checkpoints and metrics.
  """
  handle = open(os.path.join(workdir, '.lock'), 'a+')
  try:
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    handle.close()
    raise CheckpointError(f'workdir {workdir} is in use by another fedxr-train run')
  return handle
