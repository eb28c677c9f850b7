"""The divergence guard on the host: the round's `Guard`, and the line that stops a run.

The compiled round flags a diverged round in its metrics
('guard/diverged', `core.round_metrics`); the loop reads the flag from the
metrics it fetches once per call. on_divergence='stop' ends the run there
(the last checkpoint is the last good state: a checkpoint is saved only
after its rows were checked); 'skip_round' discards the round's aggregate
inside the round and logs it.
"""
import math

import numpy as np

from fedxr_jax.core import round_metrics
from fedxr_jax.errors import ConfigError
from fedxr_jax.errors import FedXRError

MODES = ('stop', 'skip_round')
DIVERGED = round_metrics.DIVERGED


class DivergenceError(FedXRError):
  """Training diverged (on_divergence='stop'): the run ends, non-zero."""
  exit_code = 3


def validate(config) -> None:
  if config.on_divergence not in MODES:
    raise ConfigError(f'on_divergence={config.on_divergence!r} is not one of {MODES}')
  if not config.divergence_factor >= 0:
    raise ConfigError(f'divergence_factor must be >= 0 (0: no loss limit), got '
                      f'{config.divergence_factor}')


def reference(rows) -> float:
  """The run's first finite training loss (-inf while there is none).

  -inf, not NaN: the loop puts it on every process's devices, and jax checks that the
  processes pass equal values (NaN is never equal). The round reads either as unknown
  (not finite, not > 0)."""
  for row in rows:
    loss = row.get('train/loss')
    if loss is not None and math.isfinite(loss):
      return float(loss)
  return -math.inf


def make(config, rows) -> round_metrics.Guard:
  """The guard of the next call, given the rows so far."""
  # Host values: the loop puts them on the device with the call's other inputs.
  return round_metrics.Guard(factor=np.float32(config.divergence_factor),
                             reference=np.float32(reference(rows)),
                             skip=config.on_divergence == 'skip_round')


def what(config, row, rows) -> str:
  """What diverged in a flagged row."""
  loss, first = row.get('train/loss'), reference(rows)
  if loss is None or not math.isfinite(loss):   # null in a written row
    return 'its training loss is not finite'
  if config.divergence_factor and first > 0 and loss > config.divergence_factor * first:
    return (f'its training loss {loss:.4g} exceeds divergence_factor='
            f'{config.divergence_factor:g} x the first loss {first:.4g}')
  return 'its new parameters are not finite'


def likely_cause(config) -> str:
  """The settings most likely to blame, from the config alone."""
  causes = []
  for name in ('client_optimizer', 'server_optimizer'):
    lr = float(config[name].learning_rate)
    if not math.isfinite(lr):
      causes.append(f'{name}.learning_rate={lr} is not finite')
    elif lr > (1.0 if name == 'client_optimizer' else 10.0):
      causes.append(f'{name}.learning_rate={lr:g} is large')
  privacy = config.privacy
  if privacy.noise_multiplier > 0:
    causes.append(f'DP noise (privacy.noise_multiplier={privacy.noise_multiplier:g})')
  attack = config.attack
  kinds = [f'attack.{k}={attack[k]}' for k in ('model', 'data') if attack[k] != 'none']
  if kinds:
    causes.append(f"an attack ({', '.join(kinds)})")
  if not causes:
    causes.append(f'the learning rates (client_optimizer.learning_rate='
                  f'{config.client_optimizer.learning_rate:g}, server_optimizer.'
                  f'learning_rate={config.server_optimizer.learning_rate:g})')
  return '; '.join(causes)


def stop_message(config, row, rows, last_good: int, checkpoints: str) -> str:
  kept = (f'the last good checkpoint is round {last_good} in {checkpoints}' if last_good
          else 'no checkpoint was saved')
  return (f"training diverged at round {row['round']}: {what(config, row, rows)}; "
          f'likely cause: {likely_cause(config)}. Stopped; {kept} (or set '
          '--config.on_divergence=skip_round to discard such rounds)')


def skip_message(config, row, rows) -> str:
  return (f"round {row['round']} diverged ({what(config, row, rows)}); its aggregate "
          'was discarded (on_divergence=skip_round)')
