"""What each device class of a run holds, costs and takes: computed once, from shapes.

  storage        every module a device class holds and runs (metrics.storage):
                 all trees (frozen, shared, personal) and the client's algorithm
                 and transform states, but only the encoders of the modalities
                 it can sense (Table 1 sensors and add-ons that fit it) and
                 the heads of the tasks those modalities carry
  latency        one example's forward (XLA FLOPs of `problem.predict`) on
                 each device (metrics.latency)
  training time  one round's local steps on each device class: its step
                 budget x the FLOPs of a local step (metrics.training_time)
  param counts   sizes of the selectable modules, for activation's
                 param_fraction (metrics.activation)
"""
from typing import NamedTuple

import jax
import numpy as np

from fedxr_jax.core import problem as problem_lib
from fedxr_jax.data import catalog
from fedxr_jax.data import shift
from fedxr_jax.data import sources
from fedxr_jax.data import synthetic
from fedxr_jax.data.real import federated
from fedxr_jax.metrics import cost
from fedxr_jax.metrics import latency
from fedxr_jax.metrics import storage
from fedxr_jax.metrics import training_time

_EXPERT_LEAVES = ('w_in', 'b_in', 'w_out', 'b_out')   # one slice per expert; gates are shared


class DeviceFacts(NamedTuple):
  devices: tuple             # catalog.Device per device index of the run
  environments: tuple        # environment name per environment index
  flops_per_example: float   # one example's forward, simulated model
  scale: float               # data.sources.model_scale
  lora_rank: int             # the model's LoRA rank (0: no LoRA trees)
  param_counts: dict         # metrics.activation's {module: parameters}
  static: dict               # metrics keys that hold for the whole run


def devices_of(spec) -> tuple:
  """catalog.Device of each of the spec's device names (a real dataset's phone too)."""
  extra = {federated.DEVICE.name: federated.DEVICE}
  return tuple(catalog.DEVICES.get(n) or extra[n] for n in spec.devices)


def _sensed(exp) -> np.ndarray:
  """[D, M] bool: the modalities each device class can feed the model."""
  world, spec = exp.world, exp.spec
  num = (len(spec.devices), len(spec.modalities))
  if not isinstance(spec, synthetic.XRSpec):
    return np.ones(num, bool)
  has = np.asarray(world['device_modalities'], bool)
  fits = np.asarray(world['addon_fits'], bool)             # [A, D]
  addon = np.asarray(world['addon_modalities'], bool)      # [A, M]
  return has | np.any(fits[:, :, None] & addon[:, None, :], axis=0)


def holdings(exp, shapes: dict) -> dict:
  """{device name: [module path, ...]} of what each device class stores."""
  spec, out = exp.spec, {}
  carriers = {t: (spec.task_modalities(t) if isinstance(spec, synthetic.XRSpec)
                  else spec.modalities) for t in spec.tasks}
  for d, sensed in zip(spec.devices, _sensed(exp)):
    mods = {m for m, s in zip(spec.modalities, sensed) if s}
    held = [r for r in shapes if r not in ('encoders', 'heads')]
    if 'encoders' in shapes:
      held += ['encoders/encoders/absent'] + [f'encoders/encoders/{m}' for m in sorted(mods)]
    if 'heads' in shapes:
      held += [f'heads/heads/{t}' for t in spec.tasks if mods & set(carriers[t])]
    out[d] = held
  return out


def param_counts(shapes: dict, spec, lora_rank: int) -> dict:
  """metrics.activation's {module: parameters}: 'rest' is always active."""
  flat = {p: int(np.prod(v.shape)) for p, v in storage.leaves(shapes).items()}
  counts = {}
  for m in spec.modalities:
    counts[f'encoder/{m}'] = storage.module_params(shapes, [f'encoders/encoders/{m}'])
  for t in spec.tasks:
    counts[f'head/{t}'] = storage.module_params(shapes, [f'heads/heads/{t}'])
  taken = sum(counts.values())
  experts = {p: v for p, v in storage.leaves(shapes.get('experts', {})).items()
             if p.split('/')[-1] in _EXPERT_LEAVES}
  if experts:   # leaves [E, ...], one per layer and kind
    slots = sum(v.shape[0] for v in experts.values()) // len(_EXPERT_LEAVES)
    total = sum(int(np.prod(v.shape)) for v in experts.values())
    counts['expert'] = total / slots
    taken += total
  lora = sum(v for p, v in flat.items() if p.startswith(('lora_a/', 'lora_b/')))
  if lora_rank and lora:
    counts['lora_rank'] = lora / lora_rank
    taken += lora
  counts['rest'] = sum(flat.values()) - taken
  return counts


def _forward_flops(exp, shapes: dict) -> float:
  """XLA FLOPs of one example's forward (the loss forward without `predict`)."""
  problem, scale = exp.problem, _scale(exp)
  if problem.predict is None:
    return exp.costs.flops_per_forward_example / scale
  data = jax.eval_shape(lambda: problem.client_data(exp.world, jax.numpy.int32(0), 'test', 0))
  one = jax.tree.map(lambda x: jax.ShapeDtypeStruct((1,) + x.shape[1:], x.dtype),
                     data['examples'])
  return cost.xla_flops(problem.predict, shapes, one, problem_lib.client_meta(data))


def _scale(exp) -> float:
  return sources.model_scale(exp.spec, exp.config)


def local_steps(exp, devices) -> dict:
  """{device name: local steps of a round} (step budgets that follow device FLOP/s)."""
  spec = exp.spec
  if not isinstance(spec, synthetic.XRSpec):
    return {d.name: exp.config.local_steps for d in devices}
  return {d.name: int(shift.step_budget(spec.local_steps, np.float32(d.train_flops),
                                        np.float32(d.compute_tier), spec.hardware))
          for d in devices}


def build(exp, precision: str) -> DeviceFacts:
  shapes = jax.eval_shape(lambda: exp.problem.init_params(jax.random.key(0)))
  devices, scale = devices_of(exp.spec), _scale(exp)
  flops = _forward_flops(exp, shapes)
  static = latency.modeled_metrics(flops, devices, precision=precision, scale=scale)
  static.update(training_time.training_time_metrics(
      {'local_training': (exp.costs.flops_per_step, local_steps(exp, devices))}, devices))
  lora_rank = exp.model.lora_rank if 'lora_a' in shapes else 0
  envs = getattr(exp.spec, 'environment_names', ())
  return DeviceFacts(devices, tuple(envs), flops, scale, lora_rank,
                     param_counts(shapes, exp.spec, lora_rank), static)


def storage_metrics(exp, client_states: dict) -> dict:
  """Footprint per device class; client_states: {name: one client's state tree}."""
  shapes = jax.eval_shape(lambda: exp.problem.init_params(jax.random.key(0)))
  held = holdings(exp, shapes)
  states = {k: v for k, v in client_states.items() if jax.tree.leaves(v)}
  for modules in held.values():
    modules += list(states)
  return storage.footprint_metrics({**shapes, **states}, held,
                                   ram_gb={d.name: d.ram_gb for d in devices_of(exp.spec)})
