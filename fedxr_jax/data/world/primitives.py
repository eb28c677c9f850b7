"""Latent primitives every world shares: kinematics, gaze, prosody, layout, physiology.

Everything here is one example's physics, a pure function of its latents:
  codes   the class-bearing code of each block (BLOCKS), expressed through
          the user's style as u = tanh((gain * z + offset) / 3) in (-1, 1)
  load    cognitive load in [0, 1]
  box     the main object's image box [cx, cy, w, h]; obj_depth (m)
  points  the scanpath's three fixation points [3, 2] (view coordinates) and
          onsets [2] in window time
  phase   uniforms [5]: gait, syllable, EEG alpha, EEG theta, skin response time
and of the user (hand size, handedness, voice pitch and tempo, resting heart
rate, ...). Worlds differ in how codes are distributed and which codes count
as which class (generator.py), never in these functions: a skeleton that
swipes renders as the same IMU, hand track and camera blobs in every world.
Time runs over a window of WINDOW_S seconds sampled at `steps` points.
"""
import jax
import jax.numpy as jnp
import numpy as np

# (block, code dims): the codes classification labels are read from.
BLOCKS = (('gesture', 5),    # swipe x, swipe y, push, grip, point
          ('activity', 3),   # cadence, intensity, posture
          ('intent', 3),     # target x, target y, urgency
          ('emotion', 2),    # valence, arousal
          ('keyword', 3),    # F1, F2, F2 glide
          ('scene', 3),      # room depth, ceiling height, room width
          ('object', 4))     # hue, aspect, texture, heat
BLOCK_DIMS = dict(BLOCKS)
# Blocks shared by co-located users (drawn per group: the scene they are in).
CONTEXT_BLOCKS = ('scene', 'object')
WINDOW_S = 2.0
SQUASH = 5.0   # codes (spread ~2.5) stay mostly in tanh's linear range
FOCAL = 0.8   # camera focal length in image widths: x_img = 0.5 + FOCAL * X / Z
SAMPLES = (0.0, 0.5, 1.0)   # window times the camera integrates (a motion trail)
TRAIL = (1 / 3, 2 / 3, 1.0)   # ... and their weights: the latest is the clearest
_FINGER_DIRS = np.array([[-0.7, 0.2, 0.7], [-0.25, 0.45, 0.85], [0.0, 0.5, 0.85],
                         [0.2, 0.45, 0.85], [0.4, 0.35, 0.8]], np.float32)
_FINGER_DIRS /= np.linalg.norm(_FINGER_DIRS, axis=1, keepdims=True)
_FINGER_LEN = np.array([0.06, 0.085, 0.09, 0.085, 0.07], np.float32)   # m
WRIST_REST = np.array([0.0, -0.08, 0.35], np.float32)   # from the eyes, m
NUM_OBJECTS = 4   # objects a co-located group can attend, around these view points:
CORNERS = np.array([[0.3, 0.3], [0.7, 0.3], [0.3, 0.7], [0.7, 0.7]], np.float32)


def times(steps: int):
  return jnp.linspace(0.0, 1.0, steps)


def expressed(z, gain, offset):
  """A code as the user expresses it, in (-1, 1)."""
  return jnp.tanh((gain * z + offset) / SQUASH)


def hesitant(t, onset, pause, width):
  """A 0 -> 1 transition at `onset` that halts halfway for `pause` (a micro-pause)."""
  return 0.5 * (jax.nn.sigmoid((t - onset) / width)
                + jax.nn.sigmoid((t - onset - pause) / width))


def effective_load(load, load_effect):
  return jnp.minimum(load * load_effect, 1.5)


# ---------------------------------------------------------------------------
# Gaze: fixations, saccades and micro-pauses.


def scanpath(lat, user, t, load_effect):
  """{'pos': [T, 2] gaze point in view coords, 'pupil': [T]}.

  Three fixations (a distractor, the main object, the target), joined by
  saccades; under load fixations last longer and each saccade halts
  halfway for a micro-pause.
  """
  lf = effective_load(lat['load'], load_effect)
  p = lat['points']
  pause = 0.02 + 0.12 * lf
  onset1 = lat['onsets'][0] + 0.08 * lf
  onset2 = onset1 + lat['onsets'][1] + 0.08 * lf
  pos = (p[0] + (p[1] - p[0]) * hesitant(t, onset1, pause, 0.012)[:, None]
         + (p[2] - p[1]) * hesitant(t, onset2, pause, 0.012)[:, None])
  arousal = lat['u']['emotion'][1]
  pupil = (user['pupil'] + 0.5 * lf + 0.3 * arousal
           + 0.05 * jnp.sin(2 * jnp.pi * (0.7 * t + lat['phase'][2])))
  return {'pos': pos, 'pupil': pupil}


# ---------------------------------------------------------------------------
# Kinematics: a head, a wrist and five fingertips.


def kinematics(lat, user, gaze_pos, t, load_effect):
  """{'head', 'wrist': [T, 3], 'tips': [T, 5, 3] (m, room frame at the rest eye
  point: x right, y up, z ahead), 'orient': [T, 3] yaw, pitch, roll (rad)}."""
  g, a, i = lat['u']['gesture'], lat['u']['activity'], lat['u']['intent']
  lf = effective_load(lat['load'], load_effect)
  cadence = 1.0 + 0.75 * (a[0] + 1.0)          # gait cycles per window
  amp = 0.01 + 0.02 * (a[1] + 1.0)             # bounce (m)
  posture = 0.1 * a[2]
  w = 2 * jnp.pi * (cadence * t + lat['phase'][0])
  bounce = amp * jnp.sin(w)
  head = jnp.stack([0.3 * amp * jnp.sin(w / 2), bounce + posture,
                    jnp.full_like(t, 0.05 * a[2])], -1)

  progress = hesitant(t, 0.3, 0.1 * lf, 0.08)
  swipe = jnp.stack([0.12 * g[0], 0.10 * g[1], 0.08 * g[2]])
  reach = 0.1 * (0.5 + 0.25 * (i[2] + 1.0)) * jnp.stack([i[0], -i[1], 0.0])
  rest = jnp.asarray(WRIST_REST) + jnp.stack([0.04 * user['handedness'], 0.5 * posture,
                                              0.0])
  swing = 0.03 * (a[1] + 1.0) * jnp.cos(w)
  wrist = (rest + jnp.stack([jnp.zeros_like(t), bounce, swing], -1)
           + swipe * (progress[:, None] - 0.5) + reach * progress[:, None])

  curl = jnp.clip(0.45 - 0.35 * g[3] + 0.7 * g[3] * progress, 0.0, 1.0)      # [T]
  point = 0.5 * (g[4] + 1.0)
  curls = jnp.stack([curl, curl * (1 - 0.9 * point), curl, curl, curl], -1)  # [T, 5]
  dirs = jnp.asarray(_FINGER_DIRS) * jnp.array([user['handedness'], 1.0, 1.0])
  curled = jnp.stack([0.5 * dirs[:, 0], jnp.full((5,), -0.4), jnp.full((5,), 0.3)], -1)
  c = curls[..., None]
  tips = wrist[:, None, :] + (jnp.asarray(_FINGER_LEN)[:, None] * user['hand_size']
                              * ((1 - c) * dirs + c * curled))

  gaze = gaze_pos - 0.5
  yaw = 0.35 * gaze[:, 0] + 0.8 * (wrist[:, 0] - rest[0])
  pitch = (-0.3 * gaze[:, 1] + 0.8 * (wrist[:, 1] - rest[1] - bounce)
           + 2.0 * amp * jnp.cos(w) + 0.1 * a[2])
  roll = 3.0 * 0.3 * amp * jnp.sin(w / 2)
  return {'head': head, 'wrist': wrist, 'tips': tips,
          'orient': jnp.stack([yaw, pitch, roll], -1)}


def project(points):
  """Image coordinates [..., 2] of points [..., 3] in the eye frame."""
  z = jnp.maximum(points[..., 2], 0.05)
  return jnp.stack([0.5 + FOCAL * points[..., 0] / z, 0.5 - FOCAL * points[..., 1] / z], -1)


# ---------------------------------------------------------------------------
# Prosody: pitch contour, cadence, formants.


def prosody(u_emotion, u_intent, voice_code, load, user, phase, t, load_effect):
  """{'f0', 'envelope', 'f1', 'f2': [T], 'tilt': ()} of one utterance (Hz)."""
  valence, arousal = u_emotion[0], u_emotion[1]
  lf = effective_load(load, load_effect)
  slope = 0.35 * u_intent[2] + 0.2 * valence
  f0 = user['f0'] * jnp.exp(0.35 * arousal + 0.1 * valence + slope * (t - 0.5))
  syllables = user['tempo'] * (3.0 + 1.5 * arousal) * (1.0 - 0.2 * lf)
  envelope = (jnp.exp(0.6 * arousal)
              * (0.5 + 0.5 * jnp.cos(2 * jnp.pi * (syllables * t + phase))) ** 2)
  f1 = 300.0 * 3.0 ** (0.5 * (voice_code[0] + 1.0))
  f2 = 900.0 * 2.5 ** (0.5 * (voice_code[1] + 1.0)) * 2.0 ** (0.8 * voice_code[2] * (t - 0.5))
  return {'f0': f0, 'envelope': envelope, 'f1': jnp.broadcast_to(f1, t.shape), 'f2': f2,
          'tilt': 0.8 * valence}


# ---------------------------------------------------------------------------
# Scene layout and physiology.


def layout(lat, posture):
  """Room planes (m from the eyes) and the main object."""
  s = lat['u']['scene']
  return {'back': 2.5 * 2.0 ** (1.2 * s[0]), 'ceiling': 1.0 * 2.0 ** (0.8 * s[1]),
          'floor': 1.6 + posture, 'side': 1.5 * 2.0 ** s[2],
          'box': lat['box'], 'obj_depth': lat['obj_depth'],
          'obj_heat': 0.5 * (lat['u']['object'][3] + 1.0)}


def physiology(lat, user, t, load_effect):
  """[T, 4]: EEG alpha, EEG theta, skin conductance, heart rate (normalized)."""
  lf = effective_load(lat['load'], load_effect)
  arousal = 0.5 * (lat['u']['emotion'][1] + 1.0)
  effort = 0.5 * (lat['u']['activity'][1] + 1.0)
  ph = lat['phase']
  alpha = (1.0 - 0.6 * jnp.minimum(lf, 1.0)) * jnp.sin(2 * jnp.pi * (5.0 * t + ph[2]))
  theta = (0.3 + 0.6 * lf) * jnp.sin(2 * jnp.pi * (2.5 * t + ph[3]))
  eda = user['eda'] + 0.6 * arousal + 0.5 * arousal * jax.nn.sigmoid((t - ph[4]) / 0.05)
  bpm = user['hr_rest'] + 20.0 * arousal + 30.0 * effort + 10.0 * lf
  hr = (bpm - 90.0) / 15.0 + 0.1 * jnp.sin(2 * jnp.pi * bpm / 60.0 * WINDOW_S * t)
  return jnp.stack([alpha, theta, eda, hr], -1)
