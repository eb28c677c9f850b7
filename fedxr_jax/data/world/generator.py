"""The primitives world (data v2): `client_data`, beside v1's generator.

An example is a set of latent primitives (latents.py) drawn from the world
(worlds.py), the user and its group and environment (clients.py); its
labels and targets are functions of those latents, and every modality is
rendered from them by the renderers all worlds share (primitives.py,
render.py): a representation that decodes the primitives from the renders
serves every world.

Client machinery is v1's where it fits (`synthetic`): device and
environment tables, held-out contexts, SHIFT round state (sensor bursts,
availability, step budgets), task arrival, memory limits, positions.
Everything is a pure function of (world, client id, split, round), shapes
are static, and a client's data is bit-identical in a cohort of any size.
"""
import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.data import shift
from fedxr_jax.data import synthetic
from fedxr_jax.data.world import drift as drift_lib
from fedxr_jax.data.world import primitives as P
from fedxr_jax.data.world import render
from fedxr_jax.data.world import robustness
from fedxr_jax.data.world.clients import group_of
from fedxr_jax.data.world.latents import example_latents
from fedxr_jax.data.world.spec import WorldSpec


def environment_params(world, environment, spec: WorldSpec) -> dict:
  e = {k: v[environment] for k, v in world['environment'].items()}
  e['pattern_image'] = render.upsample(e['pattern'], spec.image_size)
  e['pattern_map'] = render.upsample(e['pattern'], spec.map_size)
  return e


def _voice(lat, user, voice_code, spec):
  t = P.times(spec.steps)
  return P.prosody(lat['u']['emotion'], lat['u']['intent'], voice_code, lat['load'], user,
                   lat['phase'][1], t, spec.load_effect)


def render_example(lat, user, env, spec: WorldSpec, voice_code, partner_power=None):
  """(clean inputs {modality: array}, targets {task: [D]}) of one example."""
  t = P.times(spec.steps)
  scan = P.scanpath(lat, user, t, spec.load_effect)
  kin = P.kinematics(lat, user, scan['pos'], t, spec.load_effect)
  lay = P.layout(lat, 0.1 * lat['u']['activity'][2])
  mods = set(spec.modalities)
  x = {}
  if 'vision' in mods:
    x['vision'] = render.camera(lay, kin, lat['u']['object'], env, spec.image_size,
                                spec.image_channels, spec.steps, spec.environment_scale)
  if 'depth' in mods:
    x['depth'] = render.depth_map(lay, spec.map_size)
  if 'thermal' in mods:
    x['thermal'] = render.thermal(lay, kin, env, spec.map_size, spec.steps,
                                  spec.environment_scale)
  if 'motion' in mods:
    x['motion'] = render.imu(kin, spec.steps)
  if 'hand' in mods:
    x['hand'] = render.hand_track(kin)
  if 'gaze' in mods:
    x['gaze'] = render.eye_tracker(scan, user)
  if 'audio' in mods:
    power = render.spectrum(_voice(lat, user, voice_code, spec), spec.audio_bins)
    if partner_power is not None:
      power = power + spec.partner_coupling * partner_power
    x['audio'] = render.microphone(power, env, spec.audio_bins, spec.environment_scale)
  if 'physio' in mods:
    x['physio'] = P.physiology(lat, user, t, spec.load_effect)
  joints = jnp.concatenate([kin['wrist'][-1:], kin['tips'][-1]], 0) - kin['head'][-1]
  targets = {'gaze_point': scan['pos'][-1], 'hand_pose': P.project(joints).reshape(-1),
             'body_pose': jnp.concatenate([kin['head'][-1], kin['wrist'][-1]]),
             'cognitive_load': lat['load'][None], 'object_box': lat['box']}
  return {m: x[m] for m in spec.modalities}, targets


def _labels(me, targets, spec):
  """Labels [N, T] int32 (0 where a task is not a classification)."""
  cols = []
  for name in spec.tasks:
    if name in me['labels']:
      cols.append(me['labels'][name])
    elif name == 'gaze_target':
      cell = jnp.floor(jnp.clip(targets['gaze_point'], 0.0, 0.999) * 3).astype(jnp.int32)
      cols.append(cell[:, 1] * 3 + cell[:, 0])
    elif name == 'shared_grounding':
      mine, theirs = me['attended'], me['partner']['attended']
      cols.append(jnp.where(mine == theirs, mine, P.NUM_OBJECTS))
    else:
      cols.append(jnp.zeros_like(targets['cognitive_load'][:, 0], jnp.int32))
  return jnp.stack(cols, 1).astype(jnp.int32)


def _sensor_noise(bank, u, dims):
  """[N, dims] N(0, 1) noise: a bank row (worlds.NOISE_ROWS), cyclically shifted,
  with a random sign, per example; u [N, 3] uniforms."""
  row = jnp.floor(u[:, 0] * bank.shape[0]).astype(jnp.int32)
  shift = jnp.floor(u[:, 1] * dims).astype(jnp.int32)
  sign = jnp.where(u[:, 2] < 0.5, -1.0, 1.0)
  pick = jax.vmap(lambda r, s: jax.lax.dynamic_slice(bank[r], (s,), (dims,)))
  return sign[:, None] * pick(row, shift)


def client_data(world: dict, client_id, split: str, spec: WorldSpec, round_idx=0) -> dict:
  """One client's examples of `split` at a round, in v1's layout plus:

  examples['targets'] {task: [N, size]} (regression, detection), examples
  ['label_mask'] [N, T]; 'role' (roles), 'group' (social), 'drift_event' and
  'drift_segment' (longitudinal).
  """
  me = example_latents(world, client_id, split, spec, round_idx)
  profile, user = me['profile'], me['user']
  size = spec.max_examples if split == 'train' else spec.test_examples
  num = profile['num_train'] if split == 'train' else jnp.int32(spec.test_examples)
  env = environment_params(world, profile['environment'], spec)
  partner_power = None
  if spec.group_size > 1 and 'audio' in spec.modalities:   # the partner's voice, as it speaks
    other = me['partner']
    partner_power = jax.vmap(lambda lat: render.spectrum(
        _voice(lat, other['user'], lat['u']['keyword'], spec), spec.audio_bins))(other['lat'])
  voice = me['lat']['u']['keyword']
  clean, targets = jax.vmap(
      lambda lat, code, pp: render_example(lat, user, env, spec, code, pp),
      in_axes=(0, 0, 0 if partner_power is not None else None))(
          me['lat'], voice, partner_power)

  targets.update({f'{b}_code': me['codes'][b] for b, _ in P.BLOCKS})   # tasks.CODE_TASKS
  state = synthetic.client_round_state(world, profile, client_id, round_idx, spec)
  example_mask = jnp.arange(size) < num
  dropped = me['draws']['dropout'] < spec.modality_dropout
  has = profile['has_modality'] & ~state['sensor_off']
  modality_mask = has[None, :] & ~dropped & example_mask[:, None]
  drift = shift.drift_progress(round_idx, spec.temporal)
  dims = [int(np.prod(spec.shape(m))) for m in spec.modalities]
  noise = _sensor_noise(world['noise_bank'], me['draws']['noise'], sum(dims))
  x, start = {}, 0
  for i, (m, dim) in enumerate(zip(spec.modalities, dims)):
    eps = (spec.noise_std * render.NOISE[m]
           * noise[:, start:start + dim].reshape((size,) + spec.shape(m)))
    value = clean[m] + synthetic.drifted_noise(m, eps, clean[m], drift,
                                               user['sensor_bias'][i], spec.temporal)
    present = modality_mask[:, i].reshape((size,) + (1,) * len(spec.shape(m)))
    x[m] = jnp.where(present, value, 0.0)
    start += dim

  task_defs = spec.task_defs
  data = {
      'examples': {
          'x': x, 'y': _labels(me, targets, spec),
          'targets': {t.name: targets[t.name].astype(jnp.float32) for t in task_defs
                      if t.kind != 'classification'},
          'modality_mask': modality_mask, 'example_mask': example_mask,
          'label_mask': jnp.broadcast_to(example_mask[:, None], (size, len(spec.tasks)))},
      'num_examples': num.astype(jnp.int32),
      'step_budget': state['step_budget'],
      'task_mask': synthetic.task_mask_at(profile, round_idx, spec),
      'device': profile['device'],
      'environment': profile['environment'],
      'device_profile': synthetic.device_profile(world, profile['device']),
  }
  data['device_profile']['train_flops'] = state['train_flops']
  arrivals = spec.functional.arrival_rounds
  if spec.hardware.may_sit_out or (arrivals and max(arrivals) > 0):
    data['available'] = state['available'] & jnp.any(data['task_mask'])
  if arrivals and max(arrivals) > 0:
    data['eventual_task_mask'] = profile['task_mask']
  if spec.hardware.memory_limits:
    data['trainable'] = synthetic.trainable(world, profile['device'], spec)
  if spec.roles:
    data['role'] = profile['role']
  if spec.group_size > 1:
    data['group'] = group_of(client_id, spec)
  if spec.drift_rate > 0:
    data['drift_event'] = drift_lib.is_event(profile['drift_rounds'], round_idx)
    data['drift_segment'] = me['segment']
  if spec.robustness.active:
    key = robustness.client_key(jax.random.wrap_key_data(world['key']), client_id)
    data = robustness.apply(data, key, spec.robustness, spec.num_classes, spec.modalities,
                            split)
  return data
