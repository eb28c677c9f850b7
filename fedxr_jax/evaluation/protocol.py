"""The evaluation protocol of a run: the `config.eval` block, checked, and who it evaluates.

Every `eval_every` rounds (the loop's cadence) the evaluation covers
  the cohort        the round's participants (eval/*, as before)
  unseen users      `eval_unseen_clients` ids past the population (eval_unseen/*)
  the panel         `panel_size` population clients (at most the population)
                    drawn once from the seed:
                    the same users at every evaluation (panel/*, continuity,
                    personalization, latency, QoE, membership inference)
  held-out groups   `holdout_clients` dedicated users per held-out context
                    (eval.holdout_environments / holdout_devices, which
                    training never draws: data/synthetic.py)
"""
import dataclasses

import jax
import numpy as np

from fedxr_jax.core import rng
from fedxr_jax.errors import ConfigError
from fedxr_jax.metrics import latency
from fedxr_jax.metrics import qoe

PANEL_STREAM = 0x9A4E   # the panel's own key: never a cohort's
PRECISIONS = ('fp32', 'fp16')


@dataclasses.dataclass(frozen=True)
class Protocol:
  """The `eval` block (its `qoe` block: the user's and behaviour model's fields)."""
  panel_size: int = 32
  holdout_environments: tuple = ()   # never drawn for training (data/synthetic.py)
  holdout_devices: tuple = ()
  holdout_clients: int = 32
  necessity_threshold: float = 0.9
  necessity_relative: float = 0.9
  expert_threshold: float = 0.05
  latency_precision: str = 'fp32'
  latency_classes: tuple = ()      # ((task, Table 2 class), ...) for tasks outside Table 2
  measure_latency: bool = True     # host wall time: the one non-deterministic key family
  latency_repeats: int = 20
  user: qoe.UserModel = qoe.UserModel()
  behaviour: qoe.BehaviourModel = qoe.BehaviourModel()
  client_table: bool = True        # eval_clients.jsonl
  tensorboard: bool = True         # WORKDIR/tensorboard event files


def _classes(entries) -> tuple:
  """('task:class', ...) -> ((task, class), ...), each class a Table 2 one."""
  out = []
  for entry in entries:
    task, sep, cls = str(entry).partition(':')
    if not sep or cls not in latency.LATENCY_CLASSES:
      raise ConfigError(f"eval.latency_classes entry {entry!r} must be 'task:class' with a "
                        f'class in {sorted(latency.LATENCY_CLASSES)}')
    out.append((task, cls))
  return tuple(out)


def from_config(config, mesh=None) -> Protocol:
  """The run's Protocol (defaults where the config has no eval block); ConfigError."""
  e = config.eval
  q = e.qoe.to_dict() if hasattr(e.qoe, 'to_dict') else dict(e.qoe)
  user_keys = [f.name for f in dataclasses.fields(qoe.UserModel)]
  known = user_keys + [f.name for f in dataclasses.fields(qoe.BehaviourModel)]
  if set(q) - set(known):
    raise ConfigError(f'eval.qoe: unknown keys {sorted(set(q) - set(known))}; known: {known}')
  p = Protocol(
      panel_size=int(e.panel_size), holdout_environments=tuple(e.holdout_environments),
      holdout_devices=tuple(e.holdout_devices), holdout_clients=int(e.holdout_clients),
      necessity_threshold=float(e.necessity_threshold),
      necessity_relative=float(e.necessity_relative),
      expert_threshold=float(e.expert_threshold),
      latency_precision=str(e.latency_precision),
      latency_classes=_classes(e.latency_classes),
      measure_latency=bool(e.measure_latency), latency_repeats=int(e.latency_repeats),
      user=qoe.UserModel(**{k: v for k, v in q.items() if k in user_keys}),
      behaviour=qoe.BehaviourModel(**{k: v for k, v in q.items() if k not in user_keys}),
      client_table=bool(e.client_table), tensorboard=bool(e.tensorboard))
  # A panel as large as asked, or the whole population if that is smaller.
  p = dataclasses.replace(p, panel_size=min(p.panel_size, config.population_size))
  check(p, mesh)
  return p


def check(p: Protocol, mesh=None) -> None:
  if p.panel_size < 0:
    raise ConfigError(f'eval.panel_size must be >= 0, got {p.panel_size}')
  if not 0.0 <= p.necessity_threshold <= 1.0:
    raise ConfigError(f'eval.necessity_threshold must be in [0, 1], got '
                      f'{p.necessity_threshold}')
  if not 0.0 < p.necessity_relative <= 1.0:
    raise ConfigError(f'eval.necessity_relative must be in (0, 1], got '
                      f'{p.necessity_relative}')
  if not 0.0 < p.expert_threshold <= 1.0:
    raise ConfigError(f'eval.expert_threshold must be in (0, 1], got {p.expert_threshold}')
  if p.latency_precision not in PRECISIONS:
    raise ConfigError(f'eval.latency_precision must be one of {PRECISIONS}, got '
                      f'{p.latency_precision!r}')
  if p.latency_repeats < 1:
    raise ConfigError(f'eval.latency_repeats must be >= 1, got {p.latency_repeats}')
  if mesh is not None:
    for key in ('panel_size', 'holdout_clients'):
      if getattr(p, key) % mesh.size:
        raise ConfigError(f'eval.{key}={getattr(p, key)} does not split evenly over '
                          f'{mesh.size} devices')


def panel_ids(seed: int, population_size: int, panel_size: int) -> np.ndarray:
  """The fixed panel: distinct population ids, sorted, a pure function of the seed."""
  key = jax.random.fold_in(jax.random.key(seed), PANEL_STREAM)
  return np.asarray(rng.sample_cohort(key, 0, population_size, panel_size))
