"""On-device training time and its compute energy per adaptation event (Table 6).

Modeled, as the round's cost model does: time = FLOPs per local step x
steps / the device's sustained training FLOP/s (`Device.train_flops`), and
energy = the device's compute power x that time (data/devices.py). Events:
  local_training    the local steps of a federated round
  personalization   personal-model steps (Ditto, FedRep heads, ...)
  fine_tuning       local fine-tuning before evaluation (local_ft)
FLOPs per step come from `cost.xla_flops` of the lowered local step.
"""
from typing import Mapping, Sequence, Union

import numpy as np

from fedxr_jax.data import catalog
from fedxr_jax.errors import ConfigError
from fedxr_jax.metrics import stats as stats_lib

EVENTS = ('local_training', 'personalization', 'fine_tuning')


def event_seconds(flops_per_step: float, steps: float, device: catalog.Device,
                  scale: float = 1.0) -> float:
  """Seconds one event of `steps` steps takes on `device` (scale: model_scale)."""
  return scale * flops_per_step * steps / device.train_flops


def _steps_of(steps, device, event):
  if isinstance(steps, Mapping):
    if device.name not in steps:
      raise ConfigError(f'{event}: no step count for device {device.name!r}')
    return steps[device.name]
  return steps


def _put(out, event, names, seconds, energy):
  for d, s, e in zip(names, seconds, energy):
    out[f'train_time/{event}/{d}/seconds'] = stats_lib.scalar(s)
    out[f'train_time/{event}/{d}/energy_j'] = stats_lib.scalar(e)
  out[f'train_time/{event}/max_seconds'] = _max_defined(seconds)
  out[f'train_time/{event}/max_energy_j'] = _max_defined(energy)


def _max_defined(values):
  values = np.asarray(values, np.float64)
  values = values[~np.isnan(values)]
  return float(values.max()) if values.size else None


def _check_event(event):
  if not event or '/' in event:
    raise ConfigError(f'an adaptation event name must be one word, got {event!r}')


def training_time_metrics(events: Mapping[str, tuple],
                          devices: Sequence[catalog.Device], *,
                          scale: float = 1.0) -> dict:
  """Per event and device class: seconds and compute energy of one event.

  events: {event: (flops_per_step, steps)}; steps is one count or a
  {device name: count} map (step budgets that scale with device FLOP/s).
  """
  out = {}
  for event, (flops, steps) in events.items():
    _check_event(event)
    seconds = np.array([event_seconds(flops, _steps_of(steps, d, event), d, scale)
                        for d in devices])
    energy = seconds * np.array([d.compute_power_w for d in devices])
    _put(out, event, [d.name for d in devices], seconds, energy)
  return out


def client_event_metrics(event: str, seconds, energy_j, device_index,
                         devices: Sequence[Union[catalog.Device, str]]) -> dict:
  """The same keys from per-client times [C] the evaluation measured.

  Each device class gets the mean over its clients (device_index [C], -1
  for padded slots); classes without clients are None.
  """
  _check_event(event)
  names = [d if isinstance(d, str) else d.name for d in devices]
  sums = stats_lib.sums_by_group({'s': seconds, 'e': energy_j,
                                  'n': np.ones(np.shape(seconds))}, device_index, len(names))
  out = {}
  _put(out, event, names, stats_lib.ratio(sums['s'], sums['n']),
       stats_lib.ratio(sums['e'], sums['n']))
  return out
