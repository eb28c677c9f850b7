"""A primitives world (data v2): v1's device tables plus the world's own definitions.

A world is its class definitions (a prototype code per class of every block:
which hand motion counts as which gesture), its population's mean style, its
environments' look and sound (brightness, tint, wall pattern, noise floor,
ambient temperature) and, for the presets, its roles and the objects' spoken
names. Its physics is everyone's (primitives.py, render.py). Devices,
environments, add-ons and held-out contexts are v1's tables (`synthetic`).
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.data import environments as environments_lib
from fedxr_jax.data import synthetic
from fedxr_jax.data.world import primitives as P
from fedxr_jax.data.world import tasks as tasks_lib
from fedxr_jax.data.world.spec import WorldSpec

_WORLD, _GROUP, _NOISE_BANK = 0x2, 0x6E0, 0x4015
# Sensor noise comes from a bank of this many i.i.d. N(0, 1) rows per world:
# an example takes a row, a cyclic shift and a sign (generator.py). Shifted
# copies of an i.i.d. sequence are uncorrelated, so examples' noises are
# pairwise uncorrelated, at the cost of a gather instead of a threefry stream
# per pixel (which dominates generation at 64 px and above).
NOISE_ROWS = 16


def num_classes(block: str) -> int:
  return tasks_lib.TASKS[block].size


def v1_view(spec: WorldSpec) -> synthetic.XRSpec:
  """The XRSpec whose world tables v2 reuses (devices, environments, add-ons)."""
  return synthetic.XRSpec(
      modalities=spec.modalities, tasks=(), devices=spec.devices,
      device_weights=spec.weights, environments=spec.environments,
      sensors=spec.sensors, hardware=spec.hardware,
      holdout_environments=spec.holdout_environments, holdout_devices=spec.holdout_devices,
      holdout_first_id=spec.holdout_first_id, holdout_clients=spec.holdout_clients)


def _world_sizes(spec: WorldSpec) -> dict:
  e = len(spec.environment_names)
  k_int, d_int = num_classes('intent'), P.BLOCK_DIMS['intent']
  return {'prototypes': sum(num_classes(b) * d for b, d in P.BLOCKS),
          'style_mean': sum(d for _, d in P.BLOCKS),
          'roles': spec.roles * k_int * d_int,
          'names': P.NUM_OBJECTS * P.BLOCK_DIMS['keyword'] if spec.group_size > 1 else 0,
          'environment': e * 24}


@functools.partial(jax.jit, static_argnums=1)
def make_world(key: jax.Array, spec: WorldSpec) -> dict:
  """The source pytree: v1's device tables plus this world's definitions."""
  v1 = synthetic.make_world(key, v1_view(spec))
  world = {k: v for k, v in v1.items()
           if k not in ('signatures', 'style_bank', 'environment_signatures',
                        'task_affinity')}
  envs = spec.environment_names
  if spec.functional.environment_mix:
    affinity = np.array([[environments_lib.affinity(e, t) for t in spec.tasks]
                         for e in envs], np.float32)
  else:
    affinity = np.ones((len(envs), len(spec.tasks)), np.float32)
  world['task_affinity'] = jnp.asarray(affinity)

  sizes = _world_sizes(spec)
  z = jax.random.normal(jax.random.fold_in(key, _WORLD), (sum(sizes.values()),))
  parts, start = {}, 0
  for name, size in sizes.items():
    parts[name] = z[start:start + size]
    start += size
  protos, style, start, s_start = {}, {}, 0, 0
  for b, d in P.BLOCKS:
    k = num_classes(b)
    protos[b] = spec.class_spread * parts['prototypes'][start:start + k * d].reshape(k, d)
    style[b] = 0.3 * parts['style_mean'][s_start:s_start + d]
    start, s_start = start + k * d, s_start + d
  world['prototypes'], world['style_mean'] = protos, style
  if spec.roles:
    world['role_prototypes'] = spec.class_spread * parts['roles'].reshape(
        spec.roles, num_classes('intent'), P.BLOCK_DIMS['intent'])
    g = jax.random.gamma(jax.random.fold_in(key, _WORLD + 1), 0.5,
                         (spec.roles, num_classes('intent'))) + 1e-6
    world['role_priors'] = g / jnp.sum(g, -1, keepdims=True)
  if spec.group_size > 1:   # each object's spoken name, a keyword code
    world['object_names'] = spec.class_spread * parts['names'].reshape(P.NUM_OBJECTS, -1)
  dims = sum(int(np.prod(spec.shape(m))) for m in spec.modalities)
  bank = jax.random.normal(jax.random.fold_in(key, _NOISE_BANK), (NOISE_ROWS, dims))
  world['noise_bank'] = jnp.concatenate([bank, bank], 1)   # doubled: shifts are slices
  e = parts['environment'].reshape(len(envs), 24)
  world['environment'] = {
      'brightness': 0.85 * jnp.exp(0.15 * e[:, 0]), 'tint': 1.0 + 0.1 * e[:, 1:4],
      'pattern': e[:, 4:20].reshape(-1, 4, 4), 'noise_level': 0.3 * jnp.exp(0.3 * e[:, 20]),
      'noise_tilt': -0.5 + 0.3 * e[:, 21], 'ambient': 0.3 + 0.1 * e[:, 22]}
  return world


def client_key(world, client_id):
  """As v1: fold_in(world key, client id)."""
  return jax.random.fold_in(jax.random.wrap_key_data(world['key']), client_id)




def group_key(world, group):
  """A co-located group's key (any member recomputes it)."""
  return jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(world['key']),
                                               _GROUP), group)


def with_holdouts(spec: WorldSpec, eval_config, first_id: int) -> WorldSpec:
  """`spec` with the held-out contexts of an `eval` block (`synthetic.with_holdouts`)."""
  view = synthetic.with_holdouts(v1_view(spec), eval_config, first_id)
  return dataclasses.replace(
      spec, holdout_environments=view.holdout_environments,
      holdout_devices=view.holdout_devices, holdout_first_id=view.holdout_first_id,
      holdout_clients=view.holdout_clients)


def check_spec(spec: WorldSpec) -> WorldSpec:
  """spec.check() plus v1's: every device is deployed in an allowed environment."""
  synthetic.check_spec(spec.check())
  return spec
