"""The client learning rate over the rounds: a round trains at base rate x factor(round).

  constant  1 (the default: the round is built without a schedule)
  cosine    final + (1 - final) (1 + cos(pi t)) / 2
  linear    final + (1 - final) (1 - t)

with t = min(r / rounds, 1), r the 0-based index of the round being trained
(`server.round`; under asynchrony the server step) and `final` the fraction
of the base rate left at the horizon. The base rate stays data of the
compiled round (`server.hyperparams`: a sweep's lanes each scale their own),
and only local training reads the scaled one: an evaluation's on-device
adaptation (local fine-tuning, TAP's stage 2) keeps the base rate.

Why: a constant rate leaves the federated iterate moving round to round (on
the world tracks a 3-seed mean moved by 2-7% between evaluations 10 rounds
apart); a decayed one ends steady (xr-default's fixed panel: within 0.005
over the last four evaluations of each seed; BUILD_NOTES, issue 21).
"""
from typing import NamedTuple

import jax.numpy as jnp

from fedxr_jax.core import local
from fedxr_jax.errors import ConfigError

KINDS = ('constant', 'cosine', 'linear')


class Schedule(NamedTuple):
  kind: str = 'constant'
  rounds: int = 0                 # the horizon (rounds of decay; in a config 0: num_rounds)
  final_fraction: float = 0.0     # of the base rate, from the horizon on

  @property
  def active(self) -> bool:
    return self.kind != 'constant'


def make(kind: str, rounds: int, final_fraction: float, where: str = 'schedule') -> Schedule:
  """A checked Schedule; ConfigError in one line."""
  if kind not in KINDS:
    raise ConfigError(f'{where}.kind must be one of {KINDS}, got {kind!r}')
  if kind != 'constant' and int(rounds) < 1:
    raise ConfigError(f'{where}.rounds must be >= 1 with a {kind} schedule, got {rounds}')
  if not 0.0 <= float(final_fraction) <= 1.0:
    raise ConfigError(f'{where}.final_fraction must be in [0, 1], got {final_fraction}')
  return Schedule(kind, int(rounds), float(final_fraction))


def rate_holder(schedule: Schedule, client_optimizer) -> dict:
  """The client optimizer's injected hyperparameters (`local.hyperparams_of`); a
  schedule on one that keeps no rate in its state would do nothing: ConfigError."""
  hyperparams = local.hyperparams_of(client_optimizer)
  if schedule.active and 'learning_rate' not in hyperparams:
    raise ConfigError(f'a {schedule.kind} learning-rate schedule needs a client optimizer '
                      'that keeps its rate in its state (optax.inject_hyperparams)')
  return hyperparams


def factor(schedule: Schedule, round_idx):
  """The rate's factor at a 0-based round index (float32; traceable)."""
  if not schedule.active:
    return jnp.float32(1.0)
  t = jnp.minimum(jnp.asarray(round_idx, jnp.float32) / schedule.rounds, 1.0)
  shape = (0.5 * (1.0 + jnp.cos(jnp.pi * t)) if schedule.kind == 'cosine' else 1.0 - t)
  return jnp.float32(schedule.final_fraction) + (1.0 - schedule.final_fraction) * shape


def scaled(hyperparams: dict, schedule: Schedule, round_idx) -> dict:
  """`hyperparams` (an inject_hyperparams dict, `rate_holder`'s) with its learning rate
  at the round."""
  rate = jnp.asarray(hyperparams['learning_rate'], jnp.float32)
  return {**hyperparams, 'learning_rate': rate * factor(schedule, round_idx)}
