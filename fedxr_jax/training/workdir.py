"""The workdir: a directory this run can write, or a finished run it can only read.

`prepare(workdir)` says which, in one line when it is neither (a file, a
path that cannot be created). A read-only workdir holding the finished run
of this config is still reported (`report_finished`): the summary of its
last evaluated round, nothing written.
"""
import json
import os
import tempfile

from fedxr_jax.errors import CheckpointError
from fedxr_jax.training import checkpoint as checkpoint_lib
from fedxr_jax.training import metrics_log

SUMMARY_FILE = 'summary.json'
FILES = ('config.json', 'metrics.jsonl', SUMMARY_FILE)


def prepare(workdir: str) -> bool:
  """Creates `workdir` if needed; True if this process can write it."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise CheckpointError(f'--workdir {workdir} is a file, not a directory; '
                          'give a new or an existing run directory')
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    if not os.path.isdir(workdir):
      raise CheckpointError(f'cannot create --workdir {workdir}: {e.strerror}') from None
  for name in FILES:
    path = os.path.join(workdir, name)
    if os.path.exists(path) and not os.path.isfile(path):
      raise CheckpointError(f'{path} is not a file; is {workdir} a fedxr-train workdir?')
  return _writable(workdir)


def _writable(workdir: str) -> bool:
  # A probe file, not os.access: access() and a write can disagree (root, ACLs, NFS).
  try:
    with tempfile.TemporaryFile(dir=workdir):
      return True
  except OSError:
    return False


def report_finished(config, workdir: str, immutable_keys) -> list:
  """Rows of a finished run in a read-only workdir, or one line saying why not."""
  reason = f'--workdir {workdir} is not writable'
  if not os.path.exists(os.path.join(workdir, 'config.json')):
    raise CheckpointError(f'{reason}; give a writable directory')
  checkpoint_lib.check_run_config(workdir, json.loads(config.to_json()), immutable_keys)
  steps = checkpoint_lib.step_dirs(os.path.join(workdir, 'checkpoints'))
  done = max(steps, default=0)
  if done < config.num_rounds:
    raise CheckpointError(f'{reason} and its run stopped at round {done} of '
                          f'{config.num_rounds}; copy it somewhere writable to resume')
  rows = [r for r in metrics_log.read_rows(os.path.join(workdir, 'metrics.jsonl'))
          if r['round'] <= done]
  summary = os.path.join(workdir, SUMMARY_FILE)
  if os.path.exists(summary):
    with open(summary) as f:
      final = json.load(f)
    rows = [r for r in rows if r['round'] != final.get('round')] + [final]
  print(f'{workdir}: already trained {done} rounds (read-only; nothing written)')
  return rows
