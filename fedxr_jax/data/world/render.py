"""Sensors: one example's primitives rendered as model inputs, the same in every world.

  vision   egocentric camera [S, S, C]: the room shaded by depth, the main
           object (colour, stripes), the hand's joints as blobs at three
           moments (a motion trail), lit by the environment
  depth    depth map [m, m, 1]: ray-plane intersections with floor, ceiling,
           side walls, back wall and the object (log2 metres - 1)
  thermal  [m, m, 1]: ambient temperature, the object's heat, the warm hand
  motion   head IMU [T, 6]: linear acceleration (finite differences) plus the
           gravity tilt, and angular rate
  hand     hand tracking [T, 18]: wrist in the eye frame, fingertips from the wrist
  gaze     eye tracker [T, 3]: the gaze point through the user's calibration,
           and pupil size
  audio    log spectrogram [T, F] over 80 Hz-4 kHz (log spaced): harmonics of
           the pitch contour shaped by two formants, gated by the syllable
           envelope, over the environment's noise floor
  physio   [T, 4]: EEG alpha and theta, skin conductance, heart rate
Each render is scaled to about unit spread; NOISE sets each sensor's noise.
Small sums are unrolled (`sum_terms`) rather than dots or reductions, whose CPU
kernels depend on the batch: a client's data is then bit-identical in a
cohort of any size.
"""
import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.data.world import primitives as P

NOISE = {'vision': 0.1, 'audio': 0.1, 'motion': 0.1, 'gaze': 0.05, 'hand': 0.05,
         'depth': 0.05, 'thermal': 0.1, 'physio': 0.2}
_SKIN = np.array([1.0, 0.8, 0.7], np.float32)
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_LOW_HZ, _HIGH_HZ, _HARMONICS = 80.0, 4000.0, 10


def sum_terms(terms):
  """Sum of a sequence of arrays, left to right."""
  out = terms[0]
  for term in terms[1:]:
    out = out + term
  return out


def upsample(grid, n):
  """Bilinear upsampling of a [k, k] grid to [n, n] (pixel centres, edges clamped)."""
  k = grid.shape[0]
  c = np.clip((np.arange(n) + 0.5) * k / n - 0.5, 0.0, k - 1.0)
  lo = np.floor(c).astype(np.int32)
  hi = np.minimum(lo + 1, k - 1)
  f = jnp.asarray(c - lo, jnp.float32)
  rows = grid[lo] * (1 - f)[:, None] + grid[hi] * f[:, None]              # [n, k]
  return rows[:, lo] * (1 - f)[None, :] + rows[:, hi] * f[None, :]


def _pixels(n):
  c = (jnp.arange(n) + 0.5) / n
  return c[None, :], c[:, None]    # x [1, n], y [n, 1]


def box_mask(box, n):
  """Soft mask [n, n] of a [cx, cy, w, h] box."""
  x, y = _pixels(n)
  edge = 0.3 / n
  return (jax.nn.sigmoid((box[2] / 2 - jnp.abs(x - box[0])) / edge)
          * jax.nn.sigmoid((box[3] / 2 - jnp.abs(y - box[1])) / edge))


def room_depth(lay, n):
  """z-depth [n, n] (m) of the room and the object, seen from the eyes."""
  x, y = _pixels(n)
  dx, dy = (x - 0.5) / P.FOCAL, -(y - 0.5) / P.FOCAL
  far = 1e3
  floor = jnp.where(dy < -1e-3, lay['floor'] / jnp.maximum(-dy, 1e-3), far)
  ceiling = jnp.where(dy > 1e-3, lay['ceiling'] / jnp.maximum(dy, 1e-3), far)
  side = lay['side'] / jnp.maximum(jnp.abs(dx), 1e-3)
  room = jnp.minimum(jnp.minimum(floor, ceiling), jnp.minimum(side, lay['back']))
  m = box_mask(lay['box'], n)
  return room * (1 - m) + jnp.minimum(room, lay['obj_depth']) * m, m


def _hand_alpha(joints, n, scale=1.0, weights=P.TRAIL):
  """Coverage [n, n] of a hand seen at K moments: a palm blob at the wrist
  and a stroke from the wrist to each fingertip. joints [K, 6, 3] in the eye
  frame (wrist, then the fingertips); `weights` [K] their opacity."""
  x, y = _pixels(n)
  img = P.project(joints)                                       # [K, 6, 2]
  depth = jnp.maximum(joints[..., 2], 0.05)
  palm, tips = img[:, 0], img[:, 1:]                            # [K, 2], [K, 5, 2]
  palm_sigma = scale * P.FOCAL * 0.03 / depth[:, 0]
  d2 = (x - palm[:, 0, None, None]) ** 2 + (y - palm[:, 1, None, None]) ** 2
  cover = jnp.exp(-0.5 * d2 / palm_sigma[:, None, None] ** 2)   # [K, n, n]
  seg = tips - palm[:, None]                                    # [K, 5, 2]
  rel_x = x - palm[:, 0, None, None, None]                      # [K, 1, 1, n]
  rel_y = y - palm[:, 1, None, None, None]                      # [K, 1, n, 1]
  sx, sy = seg[..., 0, None, None], seg[..., 1, None, None]     # [K, 5, 1, 1]
  along = jnp.clip((rel_x * sx + rel_y * sy) / jnp.maximum(sx ** 2 + sy ** 2, 1e-6),
                   0.0, 1.0)
  d2 = (rel_x - along * sx) ** 2 + (rel_y - along * sy) ** 2    # [K, 5, n, n]
  finger_sigma = scale * P.FOCAL * 0.01 / depth[:, 1:]
  fingers = jnp.exp(-0.5 * d2 / finger_sigma[..., None, None] ** 2)
  cover = cover + sum_terms([fingers[:, j] for j in range(fingers.shape[1])])
  return jnp.clip(sum_terms([w * cover[k] for k, w in enumerate(weights)]), 0.0, 1.0)


def _joint_frames(kin, steps):
  """Wrist and fingertips [K, 6, 3] in the eye frame at the SAMPLES times."""
  idx = np.round(np.asarray(P.SAMPLES) * (steps - 1)).astype(np.int32)
  joints = jnp.concatenate([kin['wrist'][:, None], kin['tips']], 1) - kin['head'][:, None]
  return joints[idx]


def camera(lay, kin, obj_u, env, size, channels, steps, env_scale):
  """[size, size, channels] egocentric frame."""
  depth, m = room_depth(lay, size)
  shade = (0.2 + 0.5 / (1.0 + 0.3 * depth)) * (1.0 + 0.3 * env_scale * env['pattern_image'])
  room = env['brightness'] * shade[..., None] * env['tint']
  x, _ = _pixels(size)
  hue = jnp.pi * (obj_u[0] + 1.0)
  colour = 0.5 + 0.35 * jnp.cos(hue + jnp.array([0.0, 2.094, 4.189]))
  freq = 2.0 + 2.0 * (obj_u[2] + 1.0)
  stripes = 0.75 + 0.25 * jnp.sin(2 * jnp.pi * freq * (x - lay['box'][0])
                                  / jnp.maximum(lay['box'][2], 0.05))
  obj = env['brightness'] * colour * stripes[..., None]
  img = room * (1 - m[..., None]) + obj * m[..., None]
  alpha = _hand_alpha(_joint_frames(kin, steps), size)[..., None]
  img = img * (1 - alpha) + env['brightness'] * jnp.asarray(_SKIN) * alpha
  if channels == 1:
    img = sum_terms([float(w) * img[..., i:i + 1] for i, w in enumerate(_LUMA)])
  return (img - 0.45) / 0.25


def depth_map(lay, size):
  depth, _ = room_depth(lay, size)
  return (jnp.log2(depth) - 1.0)[..., None]


def thermal(lay, kin, env, size, steps, env_scale):
  _, m = room_depth(lay, size)
  joints = _joint_frames(kin, steps)[-1:]
  hand = _hand_alpha(joints, size, 1.5, (1.0,))
  temp = (env['ambient'] + 0.3 * env_scale * env['pattern_map'] + lay['obj_heat'] * m
          + 0.8 * hand)
  return ((temp - 0.5) / 0.3)[..., None]


def imu(kin, steps):
  dt = P.WINDOW_S / (steps - 1)
  acc = jnp.gradient(jnp.gradient(kin['head'], dt, axis=0), dt, axis=0)
  yaw, pitch, roll = kin['orient'][:, 0], kin['orient'][:, 1], kin['orient'][:, 2]
  del yaw
  tilt = 9.81 * jnp.stack([jnp.sin(roll), jnp.cos(pitch) * jnp.cos(roll) - 1.0,
                           jnp.sin(pitch)], -1)
  gyro = jnp.gradient(kin['orient'], dt, axis=0)
  return jnp.concatenate([(acc + tilt) / 2.0, gyro / 0.5], -1)


def hand_track(kin):
  wrist = (kin['wrist'] - kin['head'] - jnp.asarray(P.WRIST_REST)) / 0.1
  tips = (kin['tips'] - kin['wrist'][:, None]) / 0.05
  return jnp.concatenate([wrist, tips.reshape(tips.shape[0], -1)], -1)


def eye_tracker(scan, user):
  p = (scan['pos'] - 0.5) * 4.0
  c = user['calib']
  raw = jnp.stack([p[:, 0] * c[0, 0] + p[:, 1] * c[0, 1],
                   p[:, 0] * c[1, 0] + p[:, 1] * c[1, 1]], -1) + user['calib_bias']
  return jnp.concatenate([raw, scan['pupil'][:, None]], -1)


def spectrum(voice, bins):
  """Linear power [T, bins] of one voice."""
  lo, hi = np.log2(_LOW_HZ), np.log2(_HIGH_HZ)
  width = (hi - lo) / bins
  centers = jnp.asarray(lo + (np.arange(bins) + 0.5) * width, jnp.float32)
  h = jnp.arange(1, _HARMONICS + 1, dtype=jnp.float32)
  lh = jnp.log2(voice['f0'][:, None] * h)                                # [T, H]
  formants = (jnp.exp(-0.5 * ((lh - jnp.log2(voice['f1'])[:, None]) / 0.3) ** 2)
              + 0.8 * jnp.exp(-0.5 * ((lh - jnp.log2(voice['f2'])[:, None]) / 0.3) ** 2)
              + 0.05)
  amp = formants * h ** (voice['tilt'] - 1.0)
  sigma = max(0.6 * width, 0.04)
  lines = jnp.exp(-0.5 * ((centers - lh[..., None]) / sigma) ** 2)       # [T, H, F]
  return voice['envelope'][:, None] * sum_terms([amp[:, h, None] * lines[:, h]
                                            for h in range(_HARMONICS)])


def microphone(power, env, bins, env_scale):
  lo, hi = np.log2(_LOW_HZ), np.log2(_HIGH_HZ)
  centers = jnp.asarray(lo + (np.arange(bins) + 0.5) * (hi - lo) / bins, jnp.float32)
  floor = env_scale * env['noise_level'] * 2.0 ** (env['noise_tilt'] * (centers - 9.0))
  return (jnp.log(power + floor + 0.01) + 2.5) / 1.5
