"""A synthetic XR federation generated on device from keys.

Every example has a latent state: one class per task. Each modality renders
the classes of the tasks that use it (paper Table 2) as a structured signal
(image blobs, spectral bands, IMU oscillations, gaze trajectories), summed,
so several modalities reveal the same latent and fusion under missing inputs
is learnable. Clients differ by
  - device (paper Table 1): which sensors exist, and a local-step budget;
  - user style: a per-user random mix of a bank of structured deformations
    of every class signature, and a per-modality gain (personalization
    matters);
  - label skew: per-task class priors from a Dirichlet;
  - size: a number of valid examples in [min_examples, max_examples].
A client's data is a pure function of (world, client id, split): a population
of any size costs no memory, and a client's data does not depend on the cohort.
"""
import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.data import catalog

SPLITS = {'train': 1, 'test': 2}


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
  style_scale: float = 0.5
  style_bank_size: int = 8        # structured deformations a user style mixes
  noise_std: float = 1.0
  modality_dropout: float = 0.1   # per-sample probability a present sensor drops
  task_keep_prob: float = 1.0     # chance a client holds each feasible task
  area_m: float = 100.0           # users live in a square of this side
  walk_m_per_round: float = 0.0   # mobility: distance walked between rounds

  @property
  def num_classes(self) -> tuple:
    return tuple(catalog.TASKS[t].num_classes for t in self.tasks)

  def task_modalities(self, task: str) -> tuple:
    return tuple(m for m in catalog.TASKS[task].modalities if m in self.modalities)

  def model_modalities(self) -> dict:
    """{name: (shape, token_shape)} for `models.m3t.M3TModel`."""
    return {m: (catalog.MODALITIES[m].shape, catalog.MODALITIES[m].token_shape)
            for m in self.modalities}


# ---------------------------------------------------------------------------
# Class signatures: [K, *shape], zero mean and unit RMS per class.


def _normalize(x):
  axes = tuple(range(1, x.ndim))
  x = x - jnp.mean(x, axis=axes, keepdims=True)
  return x / jnp.sqrt(jnp.mean(x ** 2, axis=axes, keepdims=True) + 1e-6)


# Each renderer maps `u`, uniforms in (0, 1) of size `_needs(name, k, shape)`,
# to [K, *shape]. One uniform draw feeds them all: every threefry call costs
# XLA:CPU about half a second of compile time.
_normal = jax.scipy.special.ndtri


def _needs(name, k, shape):
  return {'vision': k * 16 * shape[-1], 'audio': 3 * k,
          'motion': 3 * k * shape[-1], 'gaze': 5 * k}[name]


def _vision(u, k, shape):
  """Smooth blobs: a random 4x4 pattern upsampled to the image size."""
  coarse = _normal(u).reshape((k, 4, 4, shape[2]))
  return jax.image.resize(coarse, (k,) + tuple(shape), 'linear')


def _audio(u, k, shape):
  """A spectral band per class, gliding over time."""
  frames, bins = shape
  center, slope, width = (u.reshape(3, k, 1, 1) * jnp.array(
      [bins, 1.0, 2.0]).reshape(3, 1, 1, 1) + jnp.array(
          [0.0, -0.5, 1.0]).reshape(3, 1, 1, 1))
  t = jnp.arange(frames)[None, :, None]
  b = jnp.arange(bins)[None, None, :]
  return jnp.exp(-0.5 * ((b - center - slope * t) / width) ** 2)


def _motion(u, k, shape):
  """An oscillation per IMU channel: class-specific frequency, phase, amplitude."""
  steps, channels = shape
  f, p, a = u.reshape(3, k, 1, channels)
  freq, phase, amp = 0.5 + 3.5 * f, 2 * jnp.pi * p, 0.3 + 0.7 * a
  t = jnp.arange(steps)[None, :, None] / steps
  return amp * jnp.sin(2 * jnp.pi * freq * t + phase)


def _gaze(u, k, shape):
  """A fixation drifting along a class-specific direction, and a pupil size."""
  steps, _ = shape
  z = _normal(u).reshape(k, 5)
  start, velocity, pupil = z[:, None, 0:2], z[:, None, 2:4], z[:, None, 4:5]
  t = jnp.arange(steps)[None, :, None] / steps
  return jnp.concatenate([start + velocity * t,
                          jnp.broadcast_to(pupil, (k, steps, 1))], axis=-1)


RENDERERS = {'vision': _vision, 'audio': _audio, 'motion': _motion, 'gaze': _gaze}


def signatures(key, spec: XRSpec) -> dict:
  """{task: {modality: [K, *shape]}} class signatures for one key."""
  pairs = [(task, modality) for task in spec.tasks
           for modality in spec.task_modalities(task)]
  sizes = [_needs(m, catalog.TASKS[t].num_classes, catalog.MODALITIES[m].shape)
           for t, m in pairs]
  u = jax.random.uniform(key, (sum(sizes),), minval=1e-6, maxval=1 - 1e-6)
  out = {task: {} for task in spec.tasks}
  offset = 0
  for (task, modality), size in zip(pairs, sizes):
    k = catalog.TASKS[task].num_classes
    shape = catalog.MODALITIES[modality].shape
    out[task][modality] = _normalize(
        RENDERERS[modality](u[offset:offset + size], k, shape))
    offset += size
  return out


# ---------------------------------------------------------------------------
# The world (shared by all clients) and per-client data.


@functools.partial(jax.jit, static_argnums=1)
def make_world(key: jax.Array, spec: XRSpec) -> dict:
  """The source pytree the round reads client data from.

  Signatures and the style bank are rendered once here, so per-client
  generation is a few gathers and sums (cheap to run and to compile).
  """
  devs = [catalog.DEVICES[name] for name in spec.devices]
  has = np.array([[m in d.modalities for m in spec.modalities] for d in devs])
  steps = np.array([int(np.clip(round(spec.local_steps * d.compute_tier), 1,
                                spec.local_steps)) for d in devs], np.int32)
  weights = np.asarray(spec.device_weights, np.float32)
  return {
      'signatures': signatures(jax.random.fold_in(key, 0), spec),
      'style_bank': jax.vmap(lambda k: signatures(k, spec))(
          jax.random.split(jax.random.fold_in(key, 2), spec.style_bank_size)),
      'device_modalities': jnp.asarray(has),
      'device_steps': jnp.asarray(steps),
      'device_logits': jnp.log(jnp.asarray(weights / weights.sum())),
      'device_train_flops': jnp.asarray([d.train_flops for d in devs], jnp.float32),
      'device_tx_power_dbm': jnp.asarray([d.tx_power_dbm for d in devs], jnp.float32),
      'device_compute_power_w': jnp.asarray([d.compute_power_w for d in devs],
                                            jnp.float32),
      'key': jax.random.key_data(jax.random.fold_in(key, 1)),
  }


def _inverse_cdf(probs, u):
  """Index drawn from `probs` [..., K] with uniforms `u` [...]: sum(cdf < u)."""
  cdf = jnp.cumsum(probs, axis=-1)
  return jnp.sum(cdf < u[..., None] * cdf[..., -1:], axis=-1)


def _client_key(world, client_id):
  return jax.random.fold_in(jax.random.wrap_key_data(world['key']), client_id)


# Few, large random draws per client: every threefry call costs XLA:CPU about
# half a second of compile time, whatever its size.
def client_profile(world: dict, client_id, spec: XRSpec) -> dict:
  """Everything about a client that does not change between splits."""
  num_tasks, num_mods = len(spec.tasks), len(spec.modalities)
  k_u, k_gamma, k_normal = jax.random.split(_client_key(world, client_id), 3)
  u = jax.random.uniform(k_u, (2 + num_tasks,))
  z = jax.random.normal(k_normal, (spec.style_bank_size + num_mods,))

  device = _inverse_cdf(jnp.exp(world['device_logits']), u[0])
  has = world['device_modalities'][device]
  feasible = jnp.stack([
      jnp.any(has[jnp.array([spec.modalities.index(m) for m in spec.task_modalities(t)])])
      if spec.task_modalities(t) else jnp.array(False) for t in spec.tasks])
  task_mask = feasible & (u[1:1 + num_tasks] < spec.task_keep_prob)
  # Never leave a client with no task when its device can serve one.
  task_mask = jnp.where(jnp.any(task_mask), task_mask,
                        feasible & (jnp.cumsum(feasible) == 1))
  num_train = spec.min_examples + jnp.floor(
      u[-1] * (spec.max_examples - spec.min_examples + 1)).astype(jnp.int32)

  # Per-task class priors ~ Dirichlet(alpha), all tasks in one gamma draw.
  k_max = max(spec.num_classes)
  valid = jnp.arange(k_max)[None, :] < jnp.array(spec.num_classes)[:, None]
  gammas = jax.random.gamma(k_gamma, spec.dirichlet_alpha, (num_tasks, k_max)) * valid
  # A draw can underflow to all zeros for tiny alpha: fall back to uniform.
  gammas = jnp.where(jnp.sum(gammas, -1, keepdims=True) > 0, gammas, valid)
  priors = gammas / jnp.sum(gammas, -1, keepdims=True)

  mix = z[:spec.style_bank_size] / jnp.sqrt(spec.style_bank_size)
  style = jax.tree.map(lambda bank: jnp.tensordot(mix, bank, axes=1),
                       world['style_bank'])
  return {
      'device': device.astype(jnp.int32),
      'has_modality': has,
      'task_mask': task_mask,
      'class_priors': priors,
      'style': style,
      'gain': jnp.exp(0.2 * z[spec.style_bank_size:]),
      'num_train': jnp.minimum(num_train, spec.max_examples),
      'step_budget': world['device_steps'][device],
  }


def client_position(world: dict, client_id, round_idx, spec: XRSpec):
  """Where a user is at a round, [2] meters in [0, area_m]^2.

  Each user walks a circle of its own around a home point at
  `walk_m_per_round` per round: mobility as a pure function of (client,
  round), with no state to carry or checkpoint.
  """
  key = jax.random.fold_in(_client_key(world, client_id), 0x9051)
  u = jax.random.uniform(key, (4,))
  home = u[:2] * spec.area_m
  radius = 0.05 * spec.area_m * (0.5 + u[2])
  angle = 2 * jnp.pi * u[3] + round_idx * spec.walk_m_per_round / radius
  pos = home + radius * jnp.stack([jnp.cos(angle), jnp.sin(angle)])
  return jnp.clip(pos, 0.0, spec.area_m)


def client_data(world: dict, client_id, split: str, spec: XRSpec) -> dict:
  """One client's examples of `split` ('train' or 'test'), fixed shapes."""
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

  labels = _inverse_cdf(profile['class_priors'], u[:, :num_tasks])
  example_mask = jnp.arange(size) < num
  dropped = u[:, num_tasks:] < spec.modality_dropout
  modality_mask = profile['has_modality'][None, :] & ~dropped & example_mask[:, None]

  x = {}
  offsets = np.cumsum([0] + dims)
  for mi, (modality, shape) in enumerate(zip(spec.modalities, shapes)):
    signal = jnp.zeros((size,) + shape)
    for ti, task in enumerate(spec.tasks):
      if modality in spec.task_modalities(task):
        sig = (world['signatures'][task][modality]
               + spec.style_scale * profile['style'][task][modality])
        signal = signal + sig[labels[:, ti]]
    value = (profile['gain'][mi] * signal
             + noise[:, offsets[mi]:offsets[mi + 1]].reshape((size,) + shape))
    present = modality_mask[:, mi].reshape((size,) + (1,) * len(shape))
    x[modality] = jnp.where(present, value, 0.0)

  return {
      'examples': {'x': x, 'y': labels.astype(jnp.int32),
                   'modality_mask': modality_mask, 'example_mask': example_mask},
      'num_examples': num.astype(jnp.int32),
      'step_budget': profile['step_budget'],
      'task_mask': profile['task_mask'],
      'device': profile['device'],
      'device_profile': device_profile(world, profile['device']),
  }


def device_profile(world: dict, device) -> dict:
  """Radio and compute of a device index, for the cost model."""
  return {'train_flops': world['device_train_flops'][device],
          'tx_power_dbm': world['device_tx_power_dbm'][device],
          'compute_power_w': world['device_compute_power_w'][device]}


def spec_from_config(data_config, local_steps: int) -> XRSpec:
  """An XRSpec from the `data` block of a run config (names validated)."""
  catalog.modalities(data_config.modalities)
  catalog.tasks(data_config.tasks)
  catalog.devices(data_config.devices)
  weights = tuple(data_config.device_weights) or (1.0,) * len(data_config.devices)
  return XRSpec(
      modalities=tuple(data_config.modalities), tasks=tuple(data_config.tasks),
      devices=tuple(data_config.devices), device_weights=tuple(map(float, weights)),
      max_examples=data_config.max_examples, min_examples=data_config.min_examples,
      test_examples=data_config.test_examples, local_steps=local_steps,
      dirichlet_alpha=data_config.dirichlet_alpha,
      style_scale=data_config.style_scale, noise_std=data_config.noise_std,
      modality_dropout=data_config.modality_dropout,
      task_keep_prob=data_config.task_keep_prob,
      area_m=data_config.get('area_m', 100.0),
      walk_m_per_round=data_config.get('walk_m_per_round', 0.0))
