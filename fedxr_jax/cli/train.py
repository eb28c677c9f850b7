r"""fedxr-train: train a federated M3T foundation model on simulated XR clients.

  fedxr-train                                   # the embedded default
  fedxr-train --config=fedxr_jax/configs/default.py --workdir=runs/a \
      --config.cohort_size=64 --config.num_rounds=100

Re-running with the same --workdir resumes from the last checkpoint.
"""
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from fedxr_jax.cli import common
from fedxr_jax.errors import FedXRError

_WORKDIR = flags.DEFINE_string(
    'workdir', os.path.join('runs', 'xr_default'),
    'Where checkpoints, metrics.jsonl and plots go; an existing one resumes.')
_PROGRESS = flags.DEFINE_bool('progress', True, 'Show a progress bar.')
_HOST_DEVICES = flags.DEFINE_integer(
    'host_devices', 1, 'Split the CPU into this many XLA devices and shard the '
    'client axis over them (uses several cores in parallel). Results equal a '
    '1-device run up to float32 rounding; resume with the same value.')
_CONFIG = None


def _define_config_flag():
  # ml_collections applies the --config.KEY=VALUE overrides while defining
  # the flag, so a typo surfaces here rather than in flag parsing.
  global _CONFIG
  _CONFIG = config_flags.DEFINE_config_file(
      'config', common.DEFAULT_CONFIG, 'Run config file (ml_collections).',
      lock_config=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if _HOST_DEVICES.value < 1:
    print('fedxr-train: error: --host_devices must be >= 1', file=sys.stderr)
    sys.exit(2)
  if _HOST_DEVICES.value > 1:
    # Read when JAX first initializes its CPU backend, which has not happened yet.
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                               f' --xla_force_host_platform_device_count={_HOST_DEVICES.value}')
  from fedxr_jax.core import compilation_cache  # after flags: keeps --help fast
  from fedxr_jax.training import loop
  compilation_cache.enable()
  if not any(a.startswith(('--verbosity', '-v')) for a in sys.argv[1:]):
    # Orbax logs every save (INFO) and its own view of a damaged file (ERROR)
    # through absl; our errors are one line on stderr. --verbosity=0 shows them.
    logging.set_verbosity(logging.FATAL)
  try:
    config = _CONFIG.value
  except Exception as e:  # pylint: disable=broad-except
    # A missing or broken config file fails when first read.
    print(f'fedxr-train: error: {common.config_error(e)}', file=sys.stderr)
    sys.exit(2)
  try:
    loop.run(config, _WORKDIR.value, progress=_PROGRESS.value)
  except FedXRError as e:
    print(f'fedxr-train: error: {e}', file=sys.stderr)
    sys.exit(2)
  except KeyboardInterrupt:
    print(f'\nfedxr-train: interrupted; run the same command again to resume from the '
          f'last checkpoint in {_WORKDIR.value}/checkpoints', file=sys.stderr)
    sys.exit(130)


def entry():
  try:
    common.check_config_file(sys.argv[1:])
    _define_config_flag()
    # Parse here, not in app.run, so flag and config errors become one line.
    app.define_help_flags()
    remaining = flags.FLAGS(sys.argv)
  except flags.Error as e:
    print(f'fedxr-train: error: {e}', file=sys.stderr)
    sys.exit(2)
  except FedXRError as e:
    print(f'fedxr-train: error: {e}', file=sys.stderr)
    sys.exit(2)
  except Exception as e:  # pylint: disable=broad-except
    print(f'fedxr-train: error: {common.config_error(e)}', file=sys.stderr)
    sys.exit(2)
  app.run(main, flags_parser=lambda _: remaining)


if __name__ == '__main__':
  entry()
