"""Inference latency: measured on the host, modeled per device, against Table 2 budgets.

Measured latency is the wall time of the jitted forward on the machine that
runs the simulator (a property of that machine, not of an XR device).
Modeled latency is what the paper's devices would take: the forward's FLOPs
(XLA cost analysis) over a device's sustained FLOP/s. The sustained rate is
`Device.train_flops` (peak fp32 x the utilization its software stack
reaches, data/devices.py): inference runs the same kernels at batch 1, so
the same utilization is assumed; fp16 uses the fp16 peak at that utilization.
A (client, task) pair violates its budget when the client's latency exceeds
the task's Table 2 budget (catalog `latency_ms`).
"""
import time
from typing import Callable, Mapping, Optional, Sequence

import jax
import numpy as np

from fedxr_jax.data import catalog
from fedxr_jax.errors import ConfigError
from fedxr_jax.metrics import stats as stats_lib


# Table 2 latency class -> budget (ms), as the catalog's tasks carry them.
LATENCY_CLASSES = {t.latency_class: t.latency_ms for t in catalog.TASKS.values()}


def measure_ms(fn: Callable, *args, repeats: int = 20, warmup: int = 2) -> float:
  """Median wall time (ms) of `fn(*args)` over `repeats` calls after `warmup` calls.

  The warm-up absorbs compilation and first-call allocation; each call
  blocks until its outputs are ready, so asynchronous dispatch is timed too.
  """
  if repeats < 1 or warmup < 0:
    raise ConfigError(f'latency timing needs repeats >= 1 and warmup >= 0, got '
                      f'repeats={repeats}, warmup={warmup}')
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return float(np.median(times)) * 1e3


def measured_metrics(fn: Callable, example_args: tuple, batch_args: tuple, *,
                     repeats: int = 20, warmup: int = 2) -> dict:
  """Host latency of one example and of one batch through the jitted `fn`."""
  return {
      'latency/measured_example_ms': measure_ms(fn, *example_args, repeats=repeats,
                                                warmup=warmup),
      'latency/measured_batch_ms': measure_ms(fn, *batch_args, repeats=repeats,
                                              warmup=warmup)}


def device_flops_per_s(device: catalog.Device, precision: str = 'fp32') -> float:
  """Sustained FLOP/s of a device at `precision` ('fp32' or 'fp16')."""
  if precision not in ('fp32', 'fp16'):
    raise ConfigError(f"latency precision must be 'fp32' or 'fp16', got {precision!r}")
  if precision == 'fp32' or device.hardware is None:   # ad-hoc devices: no fp16 figure
    return device.train_flops
  h = device.hardware
  return h.peak_fp16_tflops.value * 1e12 * h.train_utilization.value


def device_latency_ms(flops_per_example: float, devices: Sequence[catalog.Device], *,
                      precision: str = 'fp32', scale: float = 1.0) -> np.ndarray:
  """Modeled forward latency of one example on each device [D] (ms).

  scale: how many times costlier the deployed model is than the simulated
  one (config data.hardware.model_scale).
  """
  return np.array([scale * flops_per_example / device_flops_per_s(d, precision) * 1e3
                   for d in devices])


def modeled_metrics(flops_per_example: float, devices: Sequence[catalog.Device], *,
                    precision: str = 'fp32', scale: float = 1.0) -> dict:
  ms = device_latency_ms(flops_per_example, devices, precision=precision, scale=scale)
  out = {'latency/flops_per_example': float(flops_per_example)}
  out.update({f'latency/modeled_ms/{d.name}': float(v) for d, v in zip(devices, ms)})
  return out


def budgets(tasks: Sequence[str], classes: Optional[Mapping[str, str]] = None):
  """(budget ms [T], latency class per task) from Table 2 via the catalog.

  classes: a latency class ('very low', 'low', 'low to moderate',
  'moderate') for tasks outside the catalog (real data sets), or to
  override a catalog task's class.
  """
  classes = dict(classes or {})
  known = LATENCY_CLASSES
  out_ms, out_class = [], []
  for t in tasks:
    if t in classes:
      c = classes[t]
      if c not in known:
        raise ConfigError(f'unknown latency class {c!r} for task {t!r}; known: '
                          f'{sorted(known)}')
    elif t in catalog.TASKS:
      c = catalog.TASKS[t].latency_class
    else:
      raise ConfigError(f'task {t!r} has no Table 2 latency budget; give it a latency '
                        f'class, one of {sorted(known)}')
    out_ms.append(known[c])
    out_class.append(c)
  return np.array(out_ms), tuple(out_class)


def violation_stats(latency_ms, task_mask, budget_ms) -> dict:
  """Mergeable counts of (client, task) pairs over budget.

  latency_ms: each client's latency [C] (or per task [C, T]); task_mask
  [C, T]: the client has the task (and, padded, is a real client);
  budget_ms [T]. Returns {'over': [T], 'pairs': [T]} (sums over clients).
  """
  mask = np.asarray(task_mask, bool)
  lat = np.asarray(latency_ms, np.float64)
  if lat.ndim == 1:
    lat = lat[:, None]
  over = (lat > np.asarray(budget_ms, np.float64)[None, :]) & mask
  return {'over': over.sum(0).astype(np.float64), 'pairs': mask.sum(0).astype(np.float64)}


def _slug(latency_class: str) -> str:
  return latency_class.replace(' ', '_')


def violation_metrics(sums: Mapping, tasks: Sequence[str], classes: Sequence[str]) -> dict:
  """Violation rate per task, per Table 2 latency class and overall."""
  over, pairs = np.asarray(sums['over']), np.asarray(sums['pairs'])
  out = {f'latency/{t}/violation_rate': stats_lib.scalar(r)
         for t, r in zip(tasks, stats_lib.ratio(over, pairs))}
  for c in dict.fromkeys(classes):
    sel = np.array([k == c for k in classes])
    out[f'latency/class/{_slug(c)}/violation_rate'] = stats_lib.scalar(
        stats_lib.ratio(over[sel].sum(), pairs[sel].sum()))
  out['latency/violation_rate'] = stats_lib.scalar(stats_lib.ratio(over.sum(), pairs.sum()))
  return out
