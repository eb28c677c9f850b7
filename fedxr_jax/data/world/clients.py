"""Clients of a primitives world: profile, user state, groups (data v2).

The profile is what never changes (device and environment, as v1 draws them
from Table 1 deployments; sensors with add-ons; tasks; size; battery and
clock; role; drift rounds). The user state is what a drift change redraws:
style (how the user expresses each code), body, voice, eyes, heart, class
priors. Co-located users (groups of `group_size` consecutive ids) share
their group's environment.
"""
import jax
import jax.numpy as jnp

from fedxr_jax.data import synthetic
from fedxr_jax.data.world import drift as drift_lib
from fedxr_jax.data.world import primitives as P
from fedxr_jax.data.world.spec import WorldSpec
from fedxr_jax.data.world.worlds import client_key
from fedxr_jax.data.world.worlds import group_key
from fedxr_jax.data.world.worlds import num_classes

PERSONAL = tuple(b for b, _ in P.BLOCKS if b not in P.CONTEXT_BLOCKS)
_PROFILE, _STYLE = 0x9F01, 0x57E1
_PHYSICAL = 14                  # normals of a user's body, voice, eyes, heart
_ndtri = jax.scipy.special.ndtri


def group_of(client_id, spec: WorldSpec):
  return jnp.asarray(client_id, jnp.int32) // spec.group_size


def partner_of(client_id, spec: WorldSpec):
  """The next member of the client's group (itself without groups)."""
  cid = jnp.asarray(client_id, jnp.int32)
  first = group_of(cid, spec) * spec.group_size
  return first + (cid - first + 1) % spec.group_size


def inverse_cdf(probs, u):
  """Index drawn from `probs` [..., K] with uniforms `u` [...] (as v1)."""
  cdf = jnp.cumsum(probs, axis=-1)
  return jnp.sum(cdf < u[..., None] * cdf[..., -1:], axis=-1)


def dirichlet(key, alpha, ks):
  """Class priors [len(ks), max(ks)] ~ Dirichlet(alpha) over each row's first k."""
  valid = jnp.arange(max(ks))[None, :] < jnp.array(ks)[:, None]
  g = jax.random.gamma(key, alpha, valid.shape) * valid
  g = jnp.where(jnp.sum(g, -1, keepdims=True) > 0, g, valid)   # tiny alpha underflow
  return g / jnp.sum(g, -1, keepdims=True)


def client_profile(world: dict, client_id, spec: WorldSpec) -> dict:
  """What does not change between splits or rounds: device, environment, tasks."""
  num_tasks, num_addons = len(spec.tasks), len(spec.sensors.addons)
  events = spec.drift_max_events if spec.drift_rate > 0 else 0
  u = jax.random.uniform(jax.random.fold_in(client_key(world, client_id), _PROFILE),
                         (6 + num_tasks + num_addons + events,), minval=1e-7,
                         maxval=1 - 1e-7)
  if spec.group_size > 1:   # co-located: the group's environment
    u_env = jax.random.uniform(jax.random.fold_in(group_key(world, group_of(
        client_id, spec)), _PROFILE), ())
  else:
    u_env = u[-1]
  probs = world['device_environment_probs']
  if spec.holdout_groups:
    held = synthetic.holdout_group(client_id, spec)
    probs = jnp.where(held >= 0, world['holdout_probs'][jnp.maximum(held, 0)], probs)
  joint = probs.reshape(len(spec.devices), len(spec.environment_names))
  # The environment first (shared by a co-located group), then the device in it.
  environment = inverse_cdf(jnp.sum(joint, 0), u_env)
  device = inverse_cdf(joint[:, environment], u[0])
  has = world['device_modalities'][device]
  if num_addons:
    worn = ((u[5 + num_tasks:5 + num_tasks + num_addons] < spec.sensors.addon_prob)
            & world['addon_fits'][:, device])
    has = has | jnp.any(worn[:, None] & world['addon_modalities'], axis=0)
  feasible = jnp.stack([
      jnp.any(has[jnp.array([spec.modalities.index(m) for m in spec.task_modalities(t)])])
      if spec.task_modalities(t) else jnp.array(False) for t in spec.tasks])
  keep = u[1:1 + num_tasks] < spec.task_keep_prob * world['task_affinity'][environment]
  mask = feasible & keep
  mask = jnp.where(jnp.any(mask), mask, feasible & (jnp.cumsum(feasible) == 1))
  num_train = spec.min_examples + jnp.floor(
      u[1 + num_tasks] * (spec.max_examples - spec.min_examples + 1)).astype(jnp.int32)
  profile = {
      'device': device.astype(jnp.int32), 'environment': environment.astype(jnp.int32),
      'has_modality': has, 'feasible_tasks': feasible, 'task_mask': mask,
      'num_train': jnp.minimum(num_train, spec.max_examples),
      'local_hour': 24.0 * u[2 + num_tasks], 'battery_phase': u[3 + num_tasks],
      'role': jnp.floor(u[4 + num_tasks] * max(spec.roles, 1)).astype(jnp.int32),
  }
  if events:
    profile['drift_rounds'] = drift_lib.event_rounds(
        u[5 + num_tasks + num_addons:5 + num_tasks + num_addons + events], spec.drift_rate)
  return profile


def drift_segment(profile, round_idx, spec: WorldSpec):
  if spec.drift_rate <= 0:
    return jnp.int32(0)
  return drift_lib.segment(profile['drift_rounds'], round_idx)


def user_state(world: dict, client_id, profile: dict, round_idx, spec: WorldSpec):
  """(user, priors): the user's style and body at a round, and class priors.

  Redrawn at each drift change (longitudinal); with interactivity.style_drift
  the style rotates between two draws, as v1's.
  """
  segment = drift_segment(profile, round_idx, spec)
  key = jax.random.fold_in(jax.random.fold_in(client_key(world, client_id), _STYLE),
                           segment)
  k_u, k_g = jax.random.split(key)
  num_codes = sum(d for _, d in P.BLOCKS)
  n = len(P.BLOCKS) + num_codes + _PHYSICAL + len(spec.modalities)
  styles = 2 if spec.interactivity.style_drift > 0 else 1
  u = jax.random.uniform(k_u, (styles * n + 1,), minval=1e-7, maxval=1 - 1e-7)
  z = _ndtri(u[:styles * n]).reshape(styles, n)
  if styles == 2:
    angle = spec.interactivity.style_drift * jnp.asarray(round_idx, jnp.float32)
    z = z[0] * jnp.cos(angle) + z[1] * jnp.sin(angle)
  else:
    z = z[0]
  s = spec.style_scale
  gain, offset, start = {}, {}, len(P.BLOCKS)
  for i, (b, d) in enumerate(P.BLOCKS):
    gain[b] = jnp.exp(0.3 * s * z[i])
    offset[b] = world['style_mean'][b] + s * z[start:start + d]
    start += d
  y = z[start:start + _PHYSICAL]
  user = {
      'gain': gain, 'offset': offset,
      'hand_size': jnp.exp(0.1 * y[0]), 'handedness': jnp.where(u[-1] < 0.1, -1.0, 1.0),
      'f0': 150.0 * jnp.exp(0.35 * y[1]), 'tempo': jnp.exp(0.15 * y[2]),
      'calib': jnp.eye(2) + 0.3 * s * y[3:7].reshape(2, 2), 'calib_bias': 0.3 * s * y[7:9],
      'pupil': 0.2 * y[9], 'hr_rest': 70.0 + 8.0 * y[10], 'eda': 0.3 * y[11],
      'load_mean': y[12], 'sensor_bias': z[start + _PHYSICAL:],
  }
  # Without groups the scene is the user's own: its priors come from this draw.
  blocks = PERSONAL if spec.group_size > 1 else tuple(b for b, _ in P.BLOCKS)
  priors = dirichlet(k_g, spec.dirichlet_alpha, [num_classes(b) for b in blocks])
  if spec.roles:
    i = PERSONAL.index('intent')
    k = num_classes('intent')
    mixed = 0.5 * priors[i, :k] + 0.5 * world['role_priors'][profile['role']]
    priors = priors.at[i, :k].set(mixed)
  return user, priors


def client_device(world, client_id, spec: WorldSpec):
  """The device index of a client (for xr_problem's client_device_fn)."""
  return client_profile(world, client_id, spec)['device']


def client_position(world, client_id, round_idx, spec: WorldSpec):
  """As v1 (`mobility.walk` from the client's key)."""
  return synthetic.client_position(world, client_id, round_idx, spec)
