"""A synthetic XR federation generated on device from keys.

Every example has a latent state: a class per task, the user's environment
and the round. Each modality renders
  - the classes of the tasks it carries (paper Table 2, plus the sensors the
    paper's scenarios add: `catalog.Task.carriers`) as structured signals
    (image blobs, spectral bands, IMU oscillations, gaze drifts, depth
    layouts, fingertip paths, heat patterns, EEG rhythms), summed, so
    several modalities reveal the same latent and fusion under missing
    inputs is learnable;
  - the user's style: a per-user mix of a bank of deformations of every
    class signature, and a per-modality gain (personalization matters);
  - the environment's background (home, office, industrial, ...), so a
    model must generalize across contexts;
  - the round's drift (lighting, noise, sensor degradation).
Clients differ by device (Table 1 sensors and hardware) and environment,
drawn jointly; label skew (Dirichlet class priors per task); size; style;
and the SHIFT knobs of `shift.py`. A client's data is a pure function of
(world, client id, split, round): a population of any size costs no memory
(10^6 clients: tests/test_synthetic.py), and a client's data does not
depend on the cohort.

Held-out contexts (config eval.holdout_environments / holdout_devices):
no client below `holdout_first_id` (the population and the unseen users)
is ever drawn in a held-out environment or on a held-out device; each
held-out group gets `holdout_clients` dedicated evaluation ids from there
on, drawn only in its held-out contexts (`holdout_ids`).
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.data import catalog
from fedxr_jax.data import environments as environments_lib
from fedxr_jax.data import mobility
from fedxr_jax.data import modalities as modalities_lib
from fedxr_jax.data import renderers
from fedxr_jax.data import shift
from fedxr_jax.data import task_kinds
from fedxr_jax.errors import ConfigError

SPLITS = {'train': 1, 'test': 2}
_TIME_STREAM = 0x71AE


@dataclasses.dataclass(frozen=True)
class XRSpec:
  """Static description of a synthetic federation (hashable, jit-static)."""
  modalities: tuple          # modality names, in modality-mask order
  tasks: tuple               # task names, in label order
  devices: tuple             # device names clients are drawn from
  device_weights: tuple      # their relative frequency
  max_examples: int = 48     # train examples per client (padded size)
  min_examples: int = 16
  test_examples: int = 32
  local_steps: int = 4       # step budget of a compute-tier-1.0 device
  dirichlet_alpha: float = 0.5
  style_scale: float = 0.5        # I: strength of the per-user style
  style_bank_size: int = 8        # structured deformations a user style mixes
  noise_std: float = 1.0
  modality_dropout: float = 0.1   # S: per-sample probability a present sensor drops
  task_keep_prob: float = 1.0     # F: chance a client holds each feasible task
  environments: tuple = ()        # deployment environments; () = all
  environment_scale: float = 0.5  # strength of the environment background
  area_m: float = 100.0           # users live in a square of this side
  walk_m_per_round: float = 0.0   # mobility: distance walked between rounds
  sensors: shift.Sensors = shift.Sensors()
  hardware: shift.HardwareKnobs = shift.HardwareKnobs()
  interactivity: shift.Interactivity = shift.Interactivity()
  functional: shift.Functional = shift.Functional()
  temporal: shift.Temporal = shift.Temporal()
  holdout_environments: tuple = ()  # never drawn below holdout_first_id
  holdout_devices: tuple = ()
  holdout_first_id: int = 0         # first id of the held-out groups' users
  holdout_clients: int = 0          # users per held-out group

  @property
  def holdout_groups(self) -> tuple:
    """Names of the held-out groups, in the order of their ids."""
    return tuple(g for g, names in (('holdout_environments', self.holdout_environments),
                                    ('holdout_devices', self.holdout_devices)) if names)

  @property
  def num_classes(self) -> tuple:
    return tuple(catalog.TASKS[t].num_classes for t in self.tasks)

  @property
  def task_defs(self) -> tuple:
    """Every v1 task is a classification (`data.task_kinds`)."""
    return tuple(task_kinds.classification(t, k) for t, k in zip(self.tasks, self.num_classes))

  @property
  def head_sizes(self) -> tuple:
    return self.num_classes

  @property
  def environment_names(self) -> tuple:
    return tuple(self.environments) or tuple(catalog.ENVIRONMENTS)

  def task_modalities(self, task: str) -> tuple:
    """The modalities of this spec that carry `task`'s label."""
    return tuple(m for m in catalog.TASKS[task].carriers if m in self.modalities)

  def model_modalities(self) -> dict:
    """{name: (shape, token_shape)} for `models.m3t.M3TModel`."""
    return {m: (catalog.MODALITIES[m].shape, catalog.MODALITIES[m].token_shape)
            for m in self.modalities}


def with_model_costs(spec: XRSpec, flops_per_step: float, role_train_bytes=()) -> XRSpec:
  """`spec` with the model's step FLOPs and per-tree training bytes (H knobs).

  The world does not depend on them: a world made from `spec` serves both.
  """
  return dataclasses.replace(spec, hardware=dataclasses.replace(
      spec.hardware, flops_per_step=float(flops_per_step),
      role_train_bytes=tuple((r, float(b)) for r, b in role_train_bytes)))


def needs_model_costs(spec: XRSpec) -> bool:
  """Whether the spec's H knobs need `with_model_costs` before generating."""
  return spec.hardware.deadline_s > 0 or spec.hardware.memory_limits


def without_model_limits(spec: XRSpec) -> XRSpec:
  """`spec` without the H knobs that need the model's costs (to measure them)."""
  return dataclasses.replace(spec, hardware=dataclasses.replace(
      spec.hardware, deadline_s=0.0, memory_limits=False))


# ---------------------------------------------------------------------------
# The world (shared by all clients): signatures and per-device tables.


def signatures(key, spec: XRSpec) -> dict:
  """{task: {modality: [K, *shape]}} class signatures for one key."""
  pairs = [(t, m, catalog.TASKS[t].num_classes) for t in spec.tasks
           for m in spec.task_modalities(t)]
  return _render(key, pairs, {t: {} for t in spec.tasks})


def _render(key, items, out):
  """Renders (group, modality, k) items from one uniform draw into out[group][modality]."""
  sizes = [renderers.needs(m, k, catalog.MODALITIES[m].shape) for _, m, k in items]
  u = jax.random.uniform(key, (sum(sizes),), minval=1e-6, maxval=1 - 1e-6)
  offset = 0
  for (group, m, k), size in zip(items, sizes):
    out[group][m] = renderers.render(m, u[offset:offset + size], k,
                                     catalog.MODALITIES[m].shape)
    offset += size
  return out


def _device_tables(spec: XRSpec) -> dict:
  """Host-side arrays of the spec's devices, environments and add-ons."""
  devs = catalog.devices(spec.devices)
  envs = spec.environment_names
  if spec.sensors.catalog:
    has = np.array([[m in d.modalities for m in spec.modalities] for d in devs])
  else:
    has = np.ones((len(devs), len(spec.modalities)), bool)
  fit = np.array([[environments_lib.fits(d, e) for e in envs] for d in devs], np.float32)
  weights = np.asarray(spec.device_weights, np.float32)
  joint = weights[:, None] / weights.sum() * fit / fit.sum(1, keepdims=True)
  holdout = {}
  if spec.holdout_groups:
    joint, holdout['holdout_probs'] = _holdout_probs(joint, spec)
  adds = catalog.addons(spec.sensors.addons)
  from_addon = np.array([[m in modalities_lib.from_sensors(a.sensors)
                          for m in spec.modalities] for a in adds], bool).reshape(
                              len(adds), len(spec.modalities))
  addon_fits = np.array([[d.kind in a.fits for d in devs] for a in adds], bool).reshape(
      len(adds), len(devs))
  if spec.functional.environment_mix:
    affinity = np.array([[environments_lib.affinity(e, t) for t in spec.tasks]
                         for e in envs], np.float32)
  else:
    affinity = np.ones((len(envs), len(spec.tasks)), np.float32)
  return {
      'device_modalities': has,
      'device_environment_probs': joint.reshape(-1),
      'addon_modalities': from_addon,
      'addon_fits': addon_fits,
      'task_affinity': affinity,
      'device_train_flops': np.array([d.train_flops for d in devs], np.float32),
      'device_compute_tier': np.array([d.compute_tier for d in devs], np.float32),
      'device_half_rate': np.array([d.half_rate for d in devs], np.float32),
      'device_tx_power_dbm': np.array([d.tx_power_dbm for d in devs], np.float32),
      'device_compute_power_w': np.array([d.compute_power_w for d in devs], np.float32),
      'device_ram_bytes': np.array([d.ram_gb * 1e9 for d in devs], np.float32),
      'device_runtime_h': np.array([min(d.runtime_h, 1e6) for d in devs], np.float32),
      'device_mains': np.array([d.battery_wh == 0 for d in devs], bool),
      **holdout,
  }


def _holdout_probs(joint, spec: XRSpec):
  """(training (device, environment) probs [D, E], each held-out group's [G, D * E]).

  Training never draws a held-out environment or device. The environment
  group draws held-out environments on kept devices, the device group
  held-out devices in kept environments: each isolates one shift.
  """
  env_out = np.isin(spec.environment_names, spec.holdout_environments)[None, :]
  dev_out = np.isin(spec.devices, spec.holdout_devices)[:, None]
  parts = {'training': joint * (~env_out & ~dev_out),
           'holdout_environments': joint * (env_out & ~dev_out),
           'holdout_devices': joint * (~env_out & dev_out)}
  for name, p in parts.items():
    if name in ('training',) + spec.holdout_groups and p.sum() <= 0:
      raise ConfigError(f'eval.holdout_environments={list(spec.holdout_environments)} and '
                        f'eval.holdout_devices={list(spec.holdout_devices)} leave no '
                        f'(device, environment) pair for {name.replace("_", " ")} '
                        '(data.devices x data.environments, Table 1 deployments)')
  norm = lambda p: (p / p.sum()).astype(np.float32)
  return norm(parts['training']), np.stack(
      [norm(parts[g]).reshape(-1) for g in spec.holdout_groups])


@functools.partial(jax.jit, static_argnums=1)
def make_world(key: jax.Array, spec: XRSpec) -> dict:
  """The source pytree the round reads client data from.

  Signatures, the style bank and environment backgrounds are rendered once
  here, so per-client generation is a few gathers and sums (cheap to run
  and to compile). Its size depends on the spec, never on the population.
  """
  envs = spec.environment_names
  background = _render(jax.random.fold_in(key, 3),
                       [('env', m, len(envs)) for m in spec.modalities], {'env': {}})
  return {
      'signatures': signatures(jax.random.fold_in(key, 0), spec),
      'style_bank': jax.vmap(lambda k: signatures(k, spec))(
          jax.random.split(jax.random.fold_in(key, 2), spec.style_bank_size)),
      'environment_signatures': background['env'],
      **{k: jnp.asarray(v) for k, v in _device_tables(spec).items()},
      'key': jax.random.key_data(jax.random.fold_in(key, 1)),
  }


# ---------------------------------------------------------------------------
# Per-client data.


def _inverse_cdf(probs, u):
  """Index drawn from `probs` [..., K] with uniforms `u` [...]: sum(cdf < u)."""
  cdf = jnp.cumsum(probs, axis=-1)
  return jnp.sum(cdf < u[..., None] * cdf[..., -1:], axis=-1)


def _client_key(world, client_id):
  return jax.random.fold_in(jax.random.wrap_key_data(world['key']), client_id)


def _task_mask(feasible, wanted):
  """wanted & feasible; never empty while a task is feasible (first one then)."""
  mask = feasible & wanted
  return jnp.where(jnp.any(mask), mask, feasible & (jnp.cumsum(feasible) == 1))


# Few, large random draws per client: every threefry call costs XLA:CPU about
# half a second of compile time, whatever its size.
def client_profile(world: dict, client_id, spec: XRSpec) -> dict:
  """Everything about a client that does not change between splits or rounds."""
  num_tasks, num_mods = len(spec.tasks), len(spec.modalities)
  num_envs, num_addons = len(spec.environment_names), len(spec.sensors.addons)
  styles = 2 if spec.interactivity.style_drift > 0 else 1
  k_u, k_gamma, k_normal = jax.random.split(_client_key(world, client_id), 3)
  u = jax.random.uniform(k_u, (4 + num_tasks + num_addons,))
  z = jax.random.normal(k_normal, (styles * spec.style_bank_size + 2 * num_mods,))

  probs = world['device_environment_probs']
  if spec.holdout_groups:   # a held-out group's user: drawn in its held-out contexts
    group = holdout_group(client_id, spec)
    probs = jnp.where(group >= 0, world['holdout_probs'][jnp.maximum(group, 0)], probs)
  pair = _inverse_cdf(probs, u[0])
  device, environment = pair // num_envs, pair % num_envs
  has = world['device_modalities'][device]
  if num_addons:   # add-on wearables: each worn with addon_prob where it fits
    worn = (u[4 + num_tasks:] < spec.sensors.addon_prob) & world['addon_fits'][:, device]
    has = has | jnp.any(worn[:, None] & world['addon_modalities'], axis=0)
  feasible = jnp.stack([
      jnp.any(has[jnp.array([spec.modalities.index(m) for m in spec.task_modalities(t)])])
      if spec.task_modalities(t) else jnp.array(False) for t in spec.tasks])
  keep = u[1:1 + num_tasks] < spec.task_keep_prob * world['task_affinity'][environment]
  num_train = spec.min_examples + jnp.floor(
      u[1 + num_tasks] * (spec.max_examples - spec.min_examples + 1)).astype(jnp.int32)

  # Per-task class priors ~ Dirichlet(alpha), all tasks in one gamma draw.
  k_max = max(spec.num_classes)
  valid = jnp.arange(k_max)[None, :] < jnp.array(spec.num_classes)[:, None]
  gammas = jax.random.gamma(k_gamma, spec.dirichlet_alpha, (num_tasks, k_max)) * valid
  # A draw can underflow to all zeros for tiny alpha: fall back to uniform.
  gammas = jnp.where(jnp.sum(gammas, -1, keepdims=True) > 0, gammas, valid)
  priors = gammas / jnp.sum(gammas, -1, keepdims=True)

  s = spec.style_bank_size
  return {
      'device': device.astype(jnp.int32),
      'environment': environment.astype(jnp.int32),
      'has_modality': has,
      'feasible_tasks': feasible,
      'kept_tasks': keep,
      'task_mask': _task_mask(feasible, keep),
      'class_priors': priors,
      'style_z': z[:styles * s].reshape(styles, s),
      'gain': jnp.exp(0.2 * z[styles * s:styles * s + num_mods]),
      'sensor_bias': z[styles * s + num_mods:],
      'num_train': jnp.minimum(num_train, spec.max_examples),
      'local_hour': 24.0 * u[2 + num_tasks],
      'battery_phase': u[3 + num_tasks],
  }


def holdout_group(client_id, spec: XRSpec):
  """Index into `spec.holdout_groups` of a client's group; -1 outside them."""
  offset = jnp.asarray(client_id, jnp.int32) - spec.holdout_first_id
  group = offset // max(spec.holdout_clients, 1)
  return jnp.where((offset >= 0) & (group < len(spec.holdout_groups)), group, -1)


def holdout_ids(spec: XRSpec, group: str) -> np.ndarray:
  """The dedicated evaluation ids of a held-out group (numpy int32)."""
  first = spec.holdout_first_id + spec.holdout_groups.index(group) * spec.holdout_clients
  return np.arange(first, first + spec.holdout_clients, dtype=np.int32)


def client_style(world: dict, profile: dict, round_idx, spec: XRSpec) -> dict:
  """{task: {modality: [K, *shape]}} the user's style at a round.

  A mix of the style bank with N(0, 1/S) weights. With style drift the
  weights rotate from one draw toward an independent one, z0 cos(wr) +
  z1 sin(wr): every round's style has the same distribution, but a user's
  style at round r differs from its earlier styles, so what a model
  learned about the user goes stale and on-device adaptation pays.
  """
  z = profile['style_z']
  if spec.interactivity.style_drift > 0:
    angle = spec.interactivity.style_drift * jnp.asarray(round_idx, jnp.float32)
    mix = z[0] * jnp.cos(angle) + z[1] * jnp.sin(angle)
  else:
    mix = z[0]
  mix = mix / np.sqrt(spec.style_bank_size)

  def combine(bank):   # unrolled: bit-identical in and out of vmap
    out = mix[0] * bank[0]
    for b in range(1, spec.style_bank_size):
      out = out + mix[b] * bank[b]
    return out
  return jax.tree.map(combine, world['style_bank'])


def client_position(world: dict, client_id, round_idx, spec: XRSpec):
  """Where a user is at a round, [2] metres in [0, area_m]^2 (`mobility.walk`)."""
  return mobility.walk(_client_key(world, client_id), round_idx, spec.area_m,
                       spec.walk_m_per_round)


def client_round_state(world: dict, profile: dict, client_id, round_idx,
                       spec: XRSpec) -> dict:
  """What changes with the round: sensors off (Markov), availability, budget."""
  num_mods = len(spec.modalities)
  hw, sensors = spec.hardware, spec.sensors
  device = profile['device']
  state = {'sensor_off': jnp.zeros((num_mods,), bool), 'slowdown': jnp.float32(1.0),
           'available': jnp.array(True)}
  markov = sensors.markov_rate > 0
  if markov or hw.per_round:
    # One draw: a row per round of the Markov window; the last row's two
    # extra columns are this round's availability and straggler uniforms.
    u = shift.time_uniforms(jax.random.fold_in(_client_key(world, client_id), _TIME_STREAM),
                            round_idx, sensors.window, num_mods + 2)
    if markov:
      state['sensor_off'] = shift.markov_off(u[:, :num_mods], sensors)
    if hw.straggler_prob > 0:
      state['slowdown'] = jnp.where(u[-1, num_mods + 1] < hw.straggler_prob,
                                    jnp.float32(hw.straggler_slowdown), 1.0)
    if hw.availability:
      state['available_prob'] = availability_prob(world, profile, round_idx, spec)
      state['available'] = u[-1, num_mods] < state['available_prob']
  train_flops = world['device_train_flops'][device] / state['slowdown']
  state['train_flops'] = train_flops
  state['step_budget'] = shift.step_budget(
      spec.local_steps, train_flops, world['device_compute_tier'][device] / state['slowdown'],
      hw)
  if hw.deadline_s > 0:   # a device that cannot finish one step in time sits out
    state['available'] = state['available'] & (state['step_budget'] >= 1)
  return state


def availability_prob(world: dict, profile: dict, round_idx, spec: XRSpec):
  """The chance a client takes part in a round (`shift.availability_prob`)."""
  device = profile['device']
  hour = jnp.mod(profile['local_hour'] + round_idx * spec.hardware.round_hours, 24.0)
  level, charging = shift.battery(profile['battery_phase'], round_idx,
                                  world['device_runtime_h'][device], spec.hardware)
  return shift.availability_prob(hour, level, charging, world['device_mains'][device],
                                 spec.hardware)


def task_mask_at(profile: dict, round_idx, spec: XRSpec):
  """The client's tasks at a round: tasks that have arrived (F knob)."""
  arrivals = spec.functional.arrival_rounds
  if not arrivals or max(arrivals) == 0:
    return profile['task_mask']
  arrived = jnp.asarray(round_idx, jnp.int32) >= jnp.asarray(arrivals, jnp.int32)
  # The client's own tasks as they arrive (a client none of whose tasks has
  # arrived sits out: `available`), so a task set only ever grows.
  return profile['task_mask'] & arrived


def trainable(world: dict, device, spec: XRSpec) -> dict:
  """{role: whether the device's memory can hold that tree's training}."""
  hw = spec.hardware
  if not hw.role_train_bytes:
    raise ConfigError('data.hardware.memory_limits needs the model\'s tree sizes; '
                      'build the run with compose.experiment.build')
  budget = world['device_ram_bytes'][device] * hw.memory_fraction
  return {role: jnp.asarray(need * hw.model_scale, jnp.float32) <= budget
          for role, need in hw.role_train_bytes}


def client_data(world: dict, client_id, split: str, spec: XRSpec, round_idx=0) -> dict:
  """One client's examples of `split` ('train' or 'test') at a round, fixed shapes.

  The examples (labels, noise, per-sample dropout) are the client's fixed
  local dataset; the round changes how they render (drift, style drift),
  which sensors are on (Markov dropout), the tasks that exist (arrival),
  and the client's availability and step budget. Keys 'available' and
  'trainable' are present only when a knob can make them False.
  """
  profile = client_profile(world, client_id, spec)
  num_tasks, num_mods = len(spec.tasks), len(spec.modalities)
  size = spec.max_examples if split == 'train' else spec.test_examples
  num = profile['num_train'] if split == 'train' else jnp.int32(spec.test_examples)
  key = jax.random.fold_in(_client_key(world, client_id), SPLITS[split])
  k_u, k_noise = jax.random.split(key)
  u = jax.random.uniform(k_u, (size, num_tasks + num_mods))
  shapes = [catalog.MODALITIES[m].shape for m in spec.modalities]
  dims = [int(np.prod(shape)) for shape in shapes]
  noise = spec.noise_std * jax.random.normal(k_noise, (size, sum(dims)))
  state = client_round_state(world, profile, client_id, round_idx, spec)

  labels = _inverse_cdf(profile['class_priors'], u[:, :num_tasks])
  example_mask = jnp.arange(size) < num
  dropped = u[:, num_tasks:] < spec.modality_dropout
  has = profile['has_modality'] & ~state['sensor_off']
  modality_mask = has[None, :] & ~dropped & example_mask[:, None]

  style = client_style(world, profile, round_idx, spec)
  env = profile['environment']
  drift = shift.drift_progress(round_idx, spec.temporal)
  x = {}
  offsets = np.cumsum([0] + dims)
  for mi, (modality, shape) in enumerate(zip(spec.modalities, shapes)):
    signal = jnp.broadcast_to(
        spec.environment_scale * world['environment_signatures'][modality][env],
        (size,) + shape)
    for ti, task in enumerate(spec.tasks):
      if modality in spec.task_modalities(task):
        sig = (world['signatures'][task][modality]
               + spec.style_scale * style[task][modality])
        signal = signal + sig[labels[:, ti]]
    value = profile['gain'][mi] * signal
    eps = noise[:, offsets[mi]:offsets[mi + 1]].reshape((size,) + shape)
    value = value + drifted_noise(modality, eps, value, drift, profile['sensor_bias'][mi],
                                   spec.temporal)
    present = modality_mask[:, mi].reshape((size,) + (1,) * len(shape))
    x[modality] = jnp.where(present, value, 0.0)

  data = {
      'examples': {'x': x, 'y': labels.astype(jnp.int32),
                   'modality_mask': modality_mask, 'example_mask': example_mask},
      'num_examples': num.astype(jnp.int32),
      'step_budget': state['step_budget'],
      'task_mask': task_mask_at(profile, round_idx, spec),
      'device': profile['device'],
      'environment': profile['environment'],   # metadata: evaluation groups by it
      'device_profile': {
          'train_flops': state['train_flops'],
          'half_rate': world['device_half_rate'][profile['device']],
          'tx_power_dbm': world['device_tx_power_dbm'][profile['device']],
          'compute_power_w': world['device_compute_power_w'][profile['device']]},
  }
  arrivals = spec.functional.arrival_rounds
  if spec.hardware.may_sit_out or (arrivals and max(arrivals) > 0):
    # A client with no task yet has nothing to learn: it sits the round out.
    data['available'] = state['available'] & jnp.any(data['task_mask'])
  if arrivals and max(arrivals) > 0:   # its tasks once all have arrived (evaluation)
    data['eventual_task_mask'] = profile['task_mask']
  if spec.hardware.memory_limits:
    data['trainable'] = trainable(world, profile['device'], spec)
  return data


def drifted_noise(modality, eps, value, drift, bias, temporal: shift.Temporal):
  """The noise term of a modality at drift progress `drift` (T knob; the primitives world's
  renders take it too).

  Returns what to add to `value` (the clean signal): the sensor noise,
  scaled and offset by the drift, plus the lighting change of vision
  (lower contrast and a darker offset, expressed relative to `value`).
  """
  if not temporal.active:
    return eps
  if modality == 'vision' and temporal.lighting > 0:
    dim = temporal.lighting * drift
    return eps - 0.75 * dim * value - dim
  if modality == 'audio' and temporal.audio_noise > 0:
    return eps * (1.0 + temporal.audio_noise * drift)
  if modality in _TRACKING and temporal.sensor_degradation > 0:
    wear = temporal.sensor_degradation * drift
    return eps * (1.0 + wear) + wear * bias
  return eps


_TRACKING = ('motion', 'gaze', 'hand', 'physio')


def device_profile(world: dict, device) -> dict:
  """Radio and compute of a device index, for the cost model."""
  return {'train_flops': world['device_train_flops'][device],
          'half_rate': world['device_half_rate'][device],
          'tx_power_dbm': world['device_tx_power_dbm'][device],
          'compute_power_w': world['device_compute_power_w'][device]}


# ---------------------------------------------------------------------------
# From a config.


def knobs_from_config(data_config) -> dict:
  """The SHIFT blocks of a `data` config as spec fields (checked; ConfigError)."""
  blocks = {'sensors': shift.Sensors, 'hardware': shift.HardwareKnobs,
            'interactivity': shift.Interactivity, 'functional': shift.Functional,
            'temporal': shift.Temporal}
  knobs = {name: shift.from_block(cls, data_config[name], f'data.{name}')
           for name, cls in blocks.items()}
  knobs['sensors'].check()
  knobs['hardware'].check()
  knobs['interactivity'].check()
  knobs['functional'].check(len(data_config.tasks))
  knobs['temporal'].check()
  catalog.addons(knobs['sensors'].addons)
  return knobs


def check_data_config(data_config) -> None:
  """Checks the environments and SHIFT blocks of a `data` config (ConfigError)."""
  catalog.environments(data_config.environments)
  if data_config.environment_scale < 0:
    raise ConfigError('data.environment_scale must be >= 0, got '
                      f'{data_config.environment_scale}')
  knobs_from_config(data_config)


def check_spec(spec: XRSpec) -> None:
  """Checks what needs the catalogs: every device is deployed somewhere allowed."""
  envs = catalog.environments(spec.environment_names)
  for d in catalog.devices(spec.devices):
    if not any(environments_lib.fits(d, e.name) for e in envs):
      raise ConfigError(f'device {d.name!r} is deployed in none of data.environments='
                        f'{list(spec.environment_names)} (Table 1: {list(d.environments)})')


def with_holdouts(spec: XRSpec, eval_config, first_id: int) -> XRSpec:
  """`spec` with the held-out contexts of an `eval` config block (none: `spec` itself).

  first_id: the first id past the population and its unseen users.
  """
  envs, devs, clients = _holdout_settings(eval_config)
  if not envs and not devs:
    return spec
  for kind, names, known in (('environment', envs, spec.environment_names),
                             ('device', devs, spec.devices)):
    unknown = [n for n in names if n not in known]
    if unknown:
      raise ConfigError(f'eval.holdout_{kind}s: {unknown} not in this run\'s '
                        f'{kind}s {list(known)} (data.{kind}s)')
  if clients < 1:
    raise ConfigError(f'eval.holdout_clients must be >= 1 with held-out contexts, got '
                      f'{clients}')
  spec = dataclasses.replace(spec, holdout_environments=envs, holdout_devices=devs,
                             holdout_first_id=int(first_id), holdout_clients=int(clients))
  _device_tables(spec)   # raises if a group (or training) has no context left
  return spec


def _holdout_settings(eval_config) -> tuple:
  return (tuple(eval_config.holdout_environments), tuple(eval_config.holdout_devices),
          int(eval_config.holdout_clients))


def refuse_holdouts(eval_config, source: str) -> None:
  """Held-out contexts exist only in the synthetic generator (ConfigError)."""
  envs, devs, _ = _holdout_settings(eval_config)
  if envs or devs:
    raise ConfigError(f'not supported yet: eval.holdout_environments / holdout_devices '
                      f'with data.source={source!r} (a recorded dataset has one device '
                      'and no environments to hold out)')


def spec_from_config(data_config, local_steps: int) -> XRSpec:
  """An XRSpec from the `data` block of a run config (names validated)."""
  catalog.modalities(data_config.modalities)
  catalog.tasks(data_config.tasks)
  catalog.devices(data_config.devices)
  weights = tuple(data_config.device_weights) or (1.0,) * len(data_config.devices)
  spec = XRSpec(
      modalities=tuple(data_config.modalities), tasks=tuple(data_config.tasks),
      devices=tuple(data_config.devices), device_weights=tuple(map(float, weights)),
      max_examples=data_config.max_examples, min_examples=data_config.min_examples,
      test_examples=data_config.test_examples, local_steps=local_steps,
      dirichlet_alpha=data_config.dirichlet_alpha,
      style_scale=data_config.style_scale, noise_std=data_config.noise_std,
      modality_dropout=data_config.modality_dropout,
      task_keep_prob=data_config.task_keep_prob,
      environments=tuple(data_config.environments),
      environment_scale=data_config.environment_scale,
      area_m=data_config.area_m, walk_m_per_round=data_config.walk_m_per_round,
      **knobs_from_config(data_config))
  check_spec(spec)
  return spec
