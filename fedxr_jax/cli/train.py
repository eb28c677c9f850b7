r"""fedxr-train: train a federated M3T foundation model on simulated XR clients.

  fedxr-train                                   # the embedded default
  fedxr-train --config=fedxr_jax/configs/default.py --workdir=runs/a \
      --config.cohort_size=64 --config.num_rounds=100
  fedxr-train --config.algorithm.name=fedadam   # a preset: prints what it expands to

Re-running with the same --workdir resumes from the last checkpoint (only
num_rounds, the eval/checkpoint cadence and the guards may change). Bad input
is one line on stderr and exit code 2; a run that diverges stops with exit
code 3, keeping its last good checkpoint.

Several processes (hosts) train one run on JAX's distributed runtime, the
client axis sharded over all their devices; process 0 writes the workdir's
files and prints, every process needs the same --workdir (a shared
filesystem: orbax writes checkpoints from each) and the same config:
  fedxr-train --coordinator_address=node0:12355 --num_processes=2 --process_id=I ...
  srun fedxr-train --distributed=auto ...          # inside a SLURM job
"""
import os
import sys

from absl import flags
from ml_collections import config_flags

from fedxr_jax.cli import common
from fedxr_jax.errors import FedXRError

_PROGRAM = 'fedxr-train'
_WORKDIR = flags.DEFINE_string(
    'workdir', os.path.join('runs', 'xr_default'),
    'Where checkpoints, metrics.jsonl and plots go; an existing one resumes.')
_PROGRESS = flags.DEFINE_bool('progress', True, 'Show a progress bar.')
_LIST_CONFIG = flags.DEFINE_bool(
    'list_config', False, 'Print every config key with its value (after --config.* '
    'overrides) and where its default is written, then exit.')
_HOST_DEVICES = flags.DEFINE_integer(
    'host_devices', 1, 'Split the CPU into this many XLA devices and shard the '
    'client axis over them (uses several cores in parallel). Results equal a '
    '1-device run up to float32 rounding; resume with the same value.')
_DISTRIBUTED = flags.DEFINE_string(
    'distributed', os.environ.get('FEDXR_DISTRIBUTED', 'off'),
    "Multi-process runs: 'off' (one process, or the --coordinator_address "
    "flags), 'auto' (JAX's cluster detection: SLURM, Open MPI, TPU), or one "
    "detection method ('slurm', 'ompi', 'mpi4py'...). Default: $FEDXR_DISTRIBUTED.")
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', '', "HOST:PORT where process 0 serves JAX's distributed "
    'runtime; with --num_processes and --process_id, the same on every process.')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None, 'Processes of a multi-process run (one per host).')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', None, 'This process: 0..num_processes-1 (0 writes the files).')
_INIT_TIMEOUT = flags.DEFINE_integer(
    'initialization_timeout', 300, 'Seconds for every process to join a '
    'multi-process run before each gives up with one line.')
_CONFIG = None


def _define_config_flag():
  # ml_collections applies the --config.KEY=VALUE overrides while defining
  # the flag, so a typo surfaces here rather than in flag parsing.
  global _CONFIG
  _CONFIG = config_flags.DEFINE_config_file(
      'config', common.DEFAULT_CONFIG, 'Run config file (ml_collections).',
      lock_config=True)


def _canonical_algorithm(config):
  """FedAdam, FedPer...: algorithm and preset names are matched without case."""
  from fedxr_jax import algorithms   # pylint: disable=import-outside-toplevel
  name = config.algorithm.name
  known = list(algorithms.registry.ALGORITHMS) + list(algorithms.PRESETS)
  lower = {k.lower(): k for k in known}
  if name not in known and name.lower() in lower:
    with config.unlocked():
      config.algorithm.name = lower[name.lower()]
  return config


_LEADER = True


def _join_run():
  """Joins a multi-process run (before JAX touches a device); only process 0 prints."""
  global _LEADER
  from fedxr_jax.core import hosts  # pylint: disable=import-outside-toplevel
  launch = hosts.Launch(_DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value,
                              _PROCESS_ID.value, _INIT_TIMEOUT.value)
  try:
    joined = hosts.initialize(
        launch, on_timeout=lambda message: common.fail_now(_PROGRAM, message))
  except FedXRError as e:
    common.fail(_PROGRAM, str(e))
  _LEADER = not joined or hosts.is_leader()
  if not _LEADER:
    # Every process computes the same rows; process 0 reports them. Errors
    # still reach stderr.
    sys.stdout = open(os.devnull, 'w')  # pylint: disable=consider-using-with


def main(argv):
  if len(argv) > 1:
    common.fail(_PROGRAM, f'unexpected arguments: {argv[1:]} (flags are --name=value)')
  if _LIST_CONFIG.value:
    common.list_config(_CONFIG.value, flags.FLAGS['config'].config_filename)
    return
  if _HOST_DEVICES.value < 1:
    common.fail(_PROGRAM, '--host_devices must be >= 1')
  if _HOST_DEVICES.value > 1:
    # Read when JAX first initializes its CPU backend, which has not happened yet.
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                               f' --xla_force_host_platform_device_count={_HOST_DEVICES.value}')
  common.quiet_logs()   # before joining: jax logs the distributed service's start
  _join_run()
  from fedxr_jax.core import compilation_cache  # after flags: keeps --help fast
  from fedxr_jax.compose import experiment
  from fedxr_jax.training import guards
  from fedxr_jax.training import loop
  compilation_cache.enable()
  try:
    config = _canonical_algorithm(_CONFIG.value)
  except Exception as e:  # pylint: disable=broad-except
    # A missing or broken config file fails when first read.
    common.fail(_PROGRAM, common.config_error(e))
  try:
    _, expansion = experiment.expand_preset(config)
    if expansion:
      print(expansion)
    loop.run(config, _WORKDIR.value, progress=_PROGRESS.value and _LEADER)
  except (guards.DivergenceError, loop.Terminated) as e:
    common.fail(_PROGRAM, str(e), code=e.exit_code)
  except FedXRError as e:
    common.fail(_PROGRAM, str(e))
  except OSError as e:   # a full disk, a file that vanished under the run
    common.fail(_PROGRAM, f'{e.filename or _WORKDIR.value}: {e.strerror or e}')
  except KeyboardInterrupt:
    print(f'\n{_PROGRAM}: interrupted; run the same command again to resume from the '
          f'last checkpoint in {_WORKDIR.value}/checkpoints', file=sys.stderr)
    sys.exit(130)


def entry():
  common.config_entry(_PROGRAM, __doc__, __name__, _define_config_flag, main)


if __name__ == '__main__':
  entry()
