"""The leaderboard's columns: which metrics, their names with units, and how a
value prints in that unit (pure functions).

Each final metric key gets a label, a unit and a scale (bits print as Mbit);
a key without a line here falls back to the Table 6 registry's unit
(`fedxr_jax.metrics.registry`), then to the key itself.
"""
import re
from typing import NamedTuple, Optional, Sequence

from fedxr_jax.metrics import registry as metrics_registry


class Column(NamedTuple):
  key: str
  label: str
  unit: str
  scale: float = 1.0

  @property
  def heading(self) -> str:
    return f'{self.label} ({self.unit})' if self.unit else self.label


_KNOWN = {
    'eval/accuracy': ('accuracy', 'fraction'),
    'panel/accuracy': ('accuracy, fixed panel', 'fraction'),
    'eval_unseen/accuracy': ('unseen users', 'accuracy, fraction'),
    'total/comm/uplink_bits': ('uplink, all rounds', 'Mbit', 1e-6),
    'total/comm/downlink_bits': ('downlink, all rounds', 'Mbit', 1e-6),
    'total/cost/energy_j': ('device energy, all rounds', 'J'),
    'latency/violation_rate': ('latency-budget violations', 'fraction'),
    'privacy/epsilon': ('DP epsilon', 'at the track\'s delta'),
    'latency/p95_ms': ('p95 latency', 'ms'),
    'comm/uplink_bits': ('uplink', 'Mbit', 1e-6),
    'energy/joules': ('energy', 'J'),
}
_TASK = re.compile(r'^(?:eval|panel)/([^/]+)/accuracy$')


def column(key: str) -> Column:
  if key in _KNOWN:
    return Column(key, *_KNOWN[key])
  task = _TASK.match(key)
  if task:
    return Column(key, f'{task.group(1)}', 'accuracy, fraction')
  found = metrics_registry.lookup(key[len('total/'):] if key.startswith('total/') else key)
  return Column(key, key, found[1].unit if found else '')


def task_columns(keys: Sequence[str], group: str = 'eval') -> list:
  """Per-task accuracy columns (<group>/<task>/accuracy: the ranked metric's group,
  eval or panel), then unseen users, of the keys any entry reports."""
  tasks = sorted(k for k in set(keys) if _TASK.match(k) and k.startswith(group + '/'))
  unseen = ['eval_unseen/accuracy'] if 'eval_unseen/accuracy' in keys else []
  return [column(k) for k in tasks + unseen]


def fmt(value: Optional[float]) -> str:
  if value is None:
    return '-'
  if value == 0:
    return '0'
  if not 1e-3 <= abs(value) < 1e6:
    return f'{value:.3e}'
  if abs(value) < 1:
    return f'{value:.4f}'
  return f'{value:.4g}' if abs(value) < 1e4 else f'{value:.0f}'


def mean_std(stat: Optional[dict], scale: float = 1.0) -> str:
  if not stat or stat['mean'] is None:
    return '-'
  std = stat['std']
  return fmt(stat['mean'] * scale) + (f' ± {fmt(std * scale)}' if std is not None else '')
