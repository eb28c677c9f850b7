"""Orbax checkpoints of a run's state, restored against an abstract target.

The directory must hold only what orbax writes (a directory per round,
orbax's temporary ones); anything else is refused in one line before orbax
opens it. Saves are synchronous, so a failed save is an error, never a
background thread left waiting. A damaged checkpoint is moved aside to
`damaged_checkpoints/` and the next older one is used (`restore_newest`).
With several processes (`core.hosts`) every one saves and
restores its part through orbax; the leader alone moves files.
"""
import fcntl
import json
import os
import re
import shutil
from typing import Any, NamedTuple, Optional

import jax
import orbax.checkpoint as ocp

from fedxr_jax.errors import CheckpointError
from fedxr_jax.core import hosts

# In-progress saves (orbax renames them to '<step>' when complete).
_TMP = re.compile(r'^\d+\.orbax-checkpoint-tmp')
DAMAGED_DIR = 'damaged_checkpoints'


def step_dirs(directory: str) -> list:
  """Rounds saved in `directory`; CheckpointError for entries orbax did not write."""
  if not os.path.exists(directory):
    return []
  if not os.path.isdir(directory):
    raise CheckpointError(f'{directory} is a file, not a checkpoint directory; '
                          'move it away (or restore the directory)')
  steps, foreign = [], []
  for name in sorted(os.listdir(directory)):
    path = os.path.join(directory, name)
    if name.isdigit() and os.path.isdir(path):
      steps.append(int(name))
    elif not (_TMP.match(name) and os.path.isdir(path)):
      foreign.append(name)
  if foreign:
    raise CheckpointError(f'{directory} holds entries orbax did not write: {foreign[:5]}; '
                          'move them out of it')
  return sorted(steps)


class Restored(NamedTuple):
  round: int            # 0: no checkpoint (the initial state)
  state: Any
  notes: tuple          # one line per damaged checkpoint moved aside


class Checkpoints:
  """Saves {'server', 'clients'} at round numbers; restores the newest good one."""

  def __init__(self, directory: str, max_to_keep: int = 3):
    self.directory = os.path.abspath(directory)
    self.max_to_keep = max_to_keep
    step_dirs(self.directory)
    self._manager = self._open()

  def _open(self):
    return ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(
            max_to_keep=self.max_to_keep, create=True, cleanup_tmp_directories=True,
            enable_async_checkpointing=False))

  def steps(self) -> list:
    return sorted(self._manager.all_steps())

  def latest_round(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, round_idx: int, state: Any) -> None:
    try:
      self._manager.save(round_idx, args=ocp.args.StandardSave(state))
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except  (orbax wraps OSErrors)
      detail = getattr(e, 'strerror', None) or ' '.join(str(e).split())[:200]
      raise CheckpointError(f'cannot save checkpoint {round_idx} in {self.directory}: '
                            f'{detail}') from None

  def restore(self, round_idx: int, target: Any) -> Any:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    path = os.path.join(self.directory, str(round_idx))
    try:
      restored = self._manager.restore(round_idx,
                                       args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # orbax raises many types for damaged files
      first_line = str(e).strip().splitlines()[0][:200] if str(e).strip() else ''
      raise CheckpointError(f'checkpoint {path} is corrupt or from another run '
                            f'({type(e).__name__}: {first_line})') from None
    _check_same_structure(restored, target, path)
    return restored

  def restore_newest(self, target: Any, at_most: Optional[int] = None,
                     initial_ok: bool = False) -> Restored:
    """The newest good checkpoint at or before `at_most` (None: any).

    A damaged one is moved to `damaged_checkpoints/` (kept for inspection)
    and the next older one is tried. None left: round 0 with `state` None,
    except that every checkpoint of a run being damaged is an error unless
    `initial_ok` (training again from round 0 is the user's call).
    """
    notes, candidates = [], [s for s in self.steps() if at_most is None or s <= at_most]
    for step in reversed(candidates):
      try:
        return Restored(step, self.restore(step, target), tuple(notes))
      except CheckpointError as e:
        if step == candidates[0] and not initial_ok:
          raise CheckpointError(f'{e}; no older good checkpoint: move '
                                f'{self.directory} away to train again from round 0') from None
        notes.append(f'{e}; moved it to {self._set_aside(step)}')
    return Restored(0, None, tuple(notes))

  def _set_aside(self, step: int) -> str:
    self._manager.close()
    # Several processes: each has read the damaged step before the leader moves it.
    hosts.barrier(f'fedxr_set_aside_{step}')
    dest = hosts.leader_value(lambda: self._move_aside(step))
    self._manager = self._open()
    return dest

  def _move_aside(self, step: int) -> str:
    aside = os.path.join(os.path.dirname(self.directory), DAMAGED_DIR)
    os.makedirs(aside, exist_ok=True)
    dest, n = os.path.join(aside, str(step)), 1
    while os.path.exists(dest):
      dest, n = os.path.join(aside, f'{step}-{n}'), n + 1
    shutil.move(os.path.join(self.directory, str(step)), dest)
    return dest

  def close(self):
    self._manager.close()


def _check_same_structure(restored, target, path):
  got = jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), restored)
  want = jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), target)
  if got != want:
    raise CheckpointError(f'checkpoint {path} does not match this run\'s state '
                          '(shapes or dtypes differ)')


def check_run_config(workdir: str, new: dict, immutable_keys) -> Optional[dict]:
  """The workdir's previous config (None: none); refuses one of another run.

  Only keys outside `immutable_keys` (num_rounds, eval/checkpoint cadence...)
  may change when a run is resumed. A workdir with no trained round yet (no
  checkpoint, no metrics row: a run refused at start-up) takes any config.
  """
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      old = json.load(f)
  except (OSError, ValueError) as e:
    old = e
  metrics = os.path.join(workdir, 'metrics.jsonl')
  if not step_dirs(os.path.join(workdir, 'checkpoints')) and not (
      os.path.exists(metrics) and os.path.getsize(metrics)):
    return old if isinstance(old, dict) else None
  if isinstance(old, Exception):
    raise CheckpointError(f'{path} is unreadable ({old}); is this a fedxr workdir?')
  if not isinstance(old, dict):
    raise CheckpointError(f'{path} is not a run config; is this a fedxr workdir?')
  changed = sorted(k for k in set(old) | set(new)
                   if k in immutable_keys and old.get(k) != new.get(k))
  if changed:
    raise CheckpointError(
        f'workdir {workdir} holds a run with different {changed}; use a new '
        '--workdir (only num_rounds, the eval/checkpoint cadence and the guards '
        'may change on resume; num_rounds not where privacy.target_epsilon '
        'calibrates the noise for it or the client rate\'s schedule spans it)')
  return old


def write_run_config(workdir: str, config_json: str, immutable_keys) -> Optional[dict]:
  """Saves the run's config after `check_run_config`; returns the previous one."""
  new = json.loads(config_json)
  previous = check_run_config(workdir, new, immutable_keys)
  path = os.path.join(workdir, 'config.json')
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    f.write(json.dumps(new, indent=2, sort_keys=True))
  os.replace(tmp, path)
  return previous


def lock_workdir(workdir: str):
  """An exclusive lock on the workdir, held while the returned file is open.

  Two runs writing one workdir would interleave checkpoints and metrics.
  """
  handle = open(os.path.join(workdir, '.lock'), 'a+')
  try:
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    handle.close()
    raise CheckpointError(f'workdir {workdir} is in use by another fedxr-train run') from None
  return handle
