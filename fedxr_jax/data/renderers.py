"""Class signatures: a structured signal per class, for each modality.

`render(name, u, k, shape)` maps uniforms `u` in (0, 1) of size
`needs(name, k, shape)` to [k, *shape], zero mean and unit RMS per class.
Callers make one uniform draw for every (task, modality) pair and slice it:
each threefry call costs XLA:CPU about half a second of compile time,
whatever its size.
"""
import jax
import jax.numpy as jnp

_normal = jax.scipy.special.ndtri


def normalize(x):
  axes = tuple(range(1, x.ndim))
  x = x - jnp.mean(x, axis=axes, keepdims=True)
  return x / jnp.sqrt(jnp.mean(x ** 2, axis=axes, keepdims=True) + 1e-6)


def _smooth_field(u, k, shape, coarse):
  """A random coarse grid upsampled to `shape` (images, tracks)."""
  grid = _normal(u).reshape((k,) + tuple(coarse))
  return jax.image.resize(grid, (k,) + tuple(shape), 'linear')


def _vision(u, k, shape):
  """Smooth blobs: a random 4x4 pattern upsampled to the image size."""
  return _smooth_field(u, k, shape, (4, 4, shape[2]))


def _audio(u, k, shape):
  """A spectral band per class, gliding over time."""
  frames, bins = shape
  center, slope, width = (u.reshape(3, k, 1, 1) * jnp.array(
      [bins, 1.0, 2.0]).reshape(3, 1, 1, 1) + jnp.array(
          [0.0, -0.5, 1.0]).reshape(3, 1, 1, 1))
  t = jnp.arange(frames)[None, :, None]
  b = jnp.arange(bins)[None, None, :]
  return jnp.exp(-0.5 * ((b - center - slope * t) / width) ** 2)


def _oscillation(u, k, shape, low, high):
  """A sine per channel: frequency in [low, high] cycles per window, phase, amplitude."""
  steps, channels = shape
  f, p, a = u.reshape(3, k, 1, channels)
  freq, phase, amp = low + (high - low) * f, 2 * jnp.pi * p, 0.3 + 0.7 * a
  t = jnp.arange(steps)[None, :, None] / steps
  return amp * jnp.sin(2 * jnp.pi * freq * t + phase)


def _motion(u, k, shape):
  """An oscillation per IMU channel: class-specific frequency, phase, amplitude."""
  return _oscillation(u, k, shape, 0.5, 4.0)


def _gaze(u, k, shape):
  """A fixation drifting along a class-specific direction, and a pupil size."""
  steps, _ = shape
  z = _normal(u).reshape(k, 5)
  start, velocity, pupil = z[:, None, 0:2], z[:, None, 2:4], z[:, None, 4:5]
  t = jnp.arange(steps)[None, :, None] / steps
  return jnp.concatenate([start + velocity * t,
                          jnp.broadcast_to(pupil, (k, steps, 1))], axis=-1)


def _depth(u, k, shape):
  """A room layout: a tilted floor plane plus one box (furniture, wall, machine)."""
  h, w, _ = shape
  tilt_x, tilt_y, cx, cy, size, height = u.reshape(6, k, 1, 1)
  y = jnp.linspace(0.0, 1.0, h)[None, :, None]
  x = jnp.linspace(0.0, 1.0, w)[None, None, :]
  half = 0.1 + 0.25 * size
  inside = (jax.nn.sigmoid((half - jnp.abs(x - 0.2 - 0.6 * cx)) / 0.05)
            * jax.nn.sigmoid((half - jnp.abs(y - 0.2 - 0.6 * cy)) / 0.05))
  depth = (2 * tilt_x - 1) * x + (2 * tilt_y - 1) * y + (0.5 + height) * inside
  return depth[..., None]


def _hand(u, k, shape):
  """Fingertip trajectories: a smooth random path per keypoint coordinate."""
  return _smooth_field(u, k, shape, (4, shape[1]))


def _thermal(u, k, shape):
  """Warm regions: a random 2x2 heat pattern upsampled to the frame."""
  return _smooth_field(u, k, shape, (2, 2, shape[2]))


def _physio(u, k, shape):
  """EEG rhythms (fast, first half of channels) and slow EDA / heart-rate trends."""
  steps, channels = shape
  fast = channels // 2
  f, p, a = u.reshape(3, k, 1, channels)
  low = jnp.where(jnp.arange(channels) < fast, 2.0, 0.1)
  high = jnp.where(jnp.arange(channels) < fast, 6.0, 0.5)
  freq, phase, amp = low + (high - low) * f, 2 * jnp.pi * p, 0.3 + 0.7 * a
  t = jnp.arange(steps)[None, :, None] / steps
  return amp * jnp.sin(2 * jnp.pi * freq * t + phase)


_RENDER = {'vision': _vision, 'audio': _audio, 'motion': _motion, 'gaze': _gaze,
           'depth': _depth, 'hand': _hand, 'thermal': _thermal, 'physio': _physio}


def needs(name: str, k: int, shape: tuple) -> int:
  """Uniforms `render` consumes for k classes of a modality of `shape`."""
  return {'vision': k * 16 * shape[-1], 'audio': 3 * k,
          'motion': 3 * k * shape[-1], 'gaze': 5 * k, 'depth': 6 * k,
          'hand': 4 * k * shape[-1], 'thermal': 4 * k * shape[-1],
          'physio': 3 * k * shape[-1]}[name]


def render(name: str, u, k: int, shape: tuple):
  """[k, *shape] normalized class signatures of modality `name`."""
  return normalize(_RENDER[name](u, k, shape))
