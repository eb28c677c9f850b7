r"""fedxr-sweep: one federation over a grid of hyperparameter values and seeds.

  fedxr-sweep --config=fedxr_jax/configs/test.py --workdir=runs/lr_sweep \
      --sweep=client_optimizer.learning_rate=0.01,0.03,0.1 --seeds=0,1,2
  fedxr-sweep --sweep=server_optimizer.learning_rate=0.3,1.0 \
      --sweep=client_optimizer.learning_rate=0.03,0.1 --novmap

Each --sweep is KEY=V1,V2,... (the grid is their product, times --seeds).
Learning rates, algorithm.fedprox.mu, algorithm.ditto.lam and
algorithm.ewc.lam are data of the compiled round: the federation is built
once (per seed) and compiled once, and the lanes run vmapped in one program
where it fits (--vmap insists, --novmap runs them one after another). Other
keys build and compile each value on its own, as fedxr-train would.

Each lane writes a fedxr-train workdir, WORKDIR/<key=value_..._seed=S>; the
sweep prints each lane's final metrics and writes them to WORKDIR/sweep.json.
Bad input is one line on stderr and exit code 2.
"""
import os
import sys

from absl import flags
from ml_collections import config_flags

from fedxr_jax.cli import common
from fedxr_jax.errors import FedXRError

_PROGRAM = 'fedxr-sweep'
_WORKDIR = flags.DEFINE_string('workdir', os.path.join('runs', 'sweep'),
                               'Where each lane\'s workdir and sweep.json go.')
_SWEEP = flags.DEFINE_multi_string(
    'sweep', [], 'KEY=V1,V2,...: a config key and its values; the grid is the product '
    'of every --sweep')
_SEEDS = flags.DEFINE_string('seeds', '', 'Seeds, e.g. 0,1,2 (empty: config.seed).')
_VMAP = flags.DEFINE_bool(
    'vmap', None, 'Train the lanes at once, vmapped in one compiled program (unset: where '
    'the keys allow and the memory fits; --novmap: one after another).')
_PROGRESS = flags.DEFINE_bool('progress', False, 'Show a progress bar per sequential lane.')
_CONFIG = None


def _define_config_flag():
  global _CONFIG
  _CONFIG = config_flags.DEFINE_config_file(
      'config', common.DEFAULT_CONFIG, 'Run config file (ml_collections).',
      lock_config=True)


def main(argv):
  if len(argv) > 1:
    common.fail(_PROGRAM, f'unexpected arguments: {argv[1:]} (flags are --name=value)')
  from fedxr_jax.core import compilation_cache  # after flags: keeps --help fast
  from fedxr_jax.training import guards
  from fedxr_jax.training import sweep
  compilation_cache.enable()
  common.quiet_logs()
  try:
    config = _CONFIG.value
  except Exception as e:  # pylint: disable=broad-except
    common.fail(_PROGRAM, common.config_error(e))
  try:
    if not _SWEEP.value:
      common.fail(_PROGRAM, '--sweep is missing (e.g. '
                  '--sweep=client_optimizer.learning_rate=0.01,0.1)')
    specs = [sweep.parse_spec(text, config) for text in _SWEEP.value]
    seeds = sweep.parse_seeds(_SEEDS.value) if _SEEDS.value else None
    sweep.run(config, _WORKDIR.value, specs, seeds=seeds, vmap=_VMAP.value,
              progress=_PROGRESS.value)
  except guards.DivergenceError as e:
    common.fail(_PROGRAM, str(e), code=e.exit_code)
  except FedXRError as e:
    common.fail(_PROGRAM, str(e))
  except OSError as e:
    common.fail(_PROGRAM, f'{e.filename or _WORKDIR.value}: {e.strerror or e}')
  except KeyboardInterrupt:
    print(f'\n{_PROGRAM}: interrupted', file=sys.stderr)
    sys.exit(130)


def entry():
  common.config_entry(_PROGRAM, __doc__, __name__, _define_config_flag, main)


if __name__ == '__main__':
  entry()
