"""Catalogs of XR modalities, devices (paper Table 1) and tasks (paper Table 2).

Sensor sets and task modalities are the paper's. `compute_tier` is a relative
on-device training throughput (1.0 = Apple M2 class) used to give each device
a local-step budget; the chip each tier rests on is named beside it.

Radio and power (used by the cost model): transmit power 23 dBm for headsets
and tethered devices (the 3GPP class-3 UE maximum; Wi-Fi 6 clients are at or
below it), 13 dBm for glasses (Bluetooth LE / low-power Wi-Fi class); compute
power while training 8 W headsets, 15 W tethered hosts, 1.5 W glasses
(sustained SoC power of each class; assumptions, refined by the simulator
issue). Training throughput = compute_tier x 3.6 TFLOP/s (Apple M2 GPU fp32
peak) x 25% utilization.
"""
import dataclasses
import difflib
from typing import Sequence

from fedxr_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Modality:
  name: str
  sensor: str          # the Table 1 sensor that produces it
  shape: tuple         # one example's input shape
  token_shape: tuple   # block cut into one token (see models.m3t.tokenize)
  description: str


# Synthetic renderings: images 16x16 gray, log-mel spectrogram 16 frames x 16
# bins, IMU 16 samples x (accel xyz, gyro xyz), gaze 16 samples x (yaw, pitch,
# pupil diameter).
MODALITIES = {m.name: m for m in (
    Modality('vision', 'Visual', (16, 16, 1), (8, 8, 1), 'egocentric camera frame'),
    Modality('audio', 'Audio', (16, 16), (4, 16), 'log-mel spectrogram'),
    Modality('motion', 'Motion', (16, 6), (4, 6), 'IMU window: accel + gyro'),
    Modality('gaze', 'Eye Tracking', (16, 3), (4, 3), 'gaze track: yaw, pitch, pupil'),
)}

# Table 1 sensors the generator cannot render yet (issue: the full simulator).
PENDING_SENSORS = ('Hand Tracking', 'Spatial Mapping', 'Depth Sensing', 'Thermal')


@dataclasses.dataclass(frozen=True)
class Device:
  name: str
  kind: str            # MR, VR / MR, AR, Smart Glasses (Table 1 "Type")
  sensors: tuple       # Table 1 "Modalities Collected"
  environments: tuple  # Table 1 "Typical Deployment Environment"
  compute_tier: float  # relative training throughput, see module docstring
  chip: str            # what the tier rests on

  @property
  def train_flops(self) -> float:
    """Sustained training FLOP/s (see module docstring)."""
    return self.compute_tier * 3.6e12 * 0.25

  @property
  def tx_power_dbm(self) -> float:
    return 13.0 if self.kind == 'Smart Glasses' else 23.0

  @property
  def compute_power_w(self) -> float:
    if self.kind == 'Smart Glasses':
      return 1.5
    return 15.0 if 'tethered' in self.chip or 'host' in self.chip else 8.0

  @property
  def modalities(self) -> tuple:
    """Modalities this device can feed the model (Head Tracking is motion)."""
    have = set(self.sensors) | ({'Motion'} if 'Head Tracking' in self.sensors else set())
    return tuple(m.name for m in MODALITIES.values() if m.sensor in have)


_FULL = ('Visual', 'Audio', 'Eye Tracking', 'Hand Tracking', 'Spatial Mapping',
         'Motion', 'Depth Sensing')
DEVICES = {d.name: d for d in (
    Device('apple_vision_pro', 'MR', _FULL, ('home', 'office'), 1.0, 'Apple M2'),
    Device('htc_vive_xr_elite', 'VR / MR',
           ('Visual', 'Audio', 'Motion', 'Hand Tracking', 'Depth Sensing', 'Spatial Mapping'),
           ('home', 'lab', 'enterprise'), 0.5, 'Snapdragon XR2 Gen 1'),
    Device('magic_leap_2', 'AR', _FULL, ('industrial', 'healthcare', 'enterprise'),
           0.5, 'AMD Zen 2 + RDNA 2 custom SoC'),
    Device('meta_quest_3', 'VR / MR',
           ('Visual', 'Audio', 'Motion', 'Hand Tracking', 'Depth Sensing', 'Spatial Mapping'),
           ('home', 'gaming', 'office'), 0.75, 'Snapdragon XR2 Gen 2'),
    Device('meta_quest_pro', 'MR', _FULL, ('office', 'enterprise'), 0.5,
           'Snapdragon XR2+ Gen 1'),
    Device('hololens_2', 'AR', _FULL, ('hospital', 'industrial', 'education'), 0.25,
           'Snapdragon 850'),
    Device('ray_ban_meta', 'Smart Glasses', ('Visual', 'Audio'),
           ('everyday', 'mobile', 'social'), 0.125, 'Snapdragon AR1 Gen 1'),
    Device('realwear_navigator_520', 'AR', ('Visual', 'Audio', 'Motion', 'Thermal'),
           ('industrial', 'fieldwork'), 0.25, 'Snapdragon 662'),
    Device('varjo_xr_4', 'VR / MR', _FULL, ('enterprise', 'simulation', 'training'),
           1.0, 'tethered workstation GPU'),
    Device('vuzix_blade_2', 'AR', ('Visual', 'Audio', 'Motion'),
           ('industrial', 'fieldwork'), 0.125, 'quad-core ARM A53 class'),
    Device('xreal_air', 'AR', ('Visual', 'Motion', 'Head Tracking'),
           ('home', 'travel', 'entertainment'), 0.25, 'host phone (tethered)'),
    Device('samsung_project_moohan', 'MR', _FULL, ('home', 'enterprise', 'productivity'),
           0.75, 'Snapdragon XR2+ Gen 2'),
    Device('google_ai_glasses', 'Smart Glasses', ('Visual', 'Audio'),
           ('everyday', 'travel', 'social'), 0.125, 'glasses-class SoC (assumed)'),
    Device('apple_smart_glasses', 'Smart Glasses', ('Visual', 'Audio'),
           ('everyday', 'productivity'), 0.125, 'glasses-class SoC (assumed)'),
)}


@dataclasses.dataclass(frozen=True)
class Task:
  name: str
  modalities: tuple    # Table 2 "Primary Modalities Used", as model modalities
  sensors: tuple       # Table 2 modalities as written
  num_classes: int
  latency_class: str   # Table 2 "Real-Time Constraints"
  latency_budget_ms: float
  use_cases: str


# Latency budgets per Table 2 class: very low = one 90 Hz frame (11 ms), low =
# interactive (50 ms), moderate = buffered (200 ms).
_BUDGET_MS = {'very low': 11.0, 'low': 50.0, 'low to moderate': 100.0, 'moderate': 200.0}


def _task(name, sensors, num_classes, latency_class, use_cases):
  by_sensor = {m.sensor: m.name for m in MODALITIES.values()}
  mods = tuple(by_sensor[s] for s in sensors if s in by_sensor)
  return Task(name, mods, tuple(sensors), num_classes, latency_class,
              _BUDGET_MS[latency_class], use_cases)


TASKS = {t.name: t for t in (
    _task('gesture', ('Visual', 'Motion'), 6, 'low',
          'interaction control, virtual object manipulation'),
    _task('gaze_target', ('Eye Tracking',), 9, 'very low',
          'adaptive rendering, user experience optimization'),
    _task('scene', ('Visual', 'Spatial Mapping'), 5, 'moderate',
          'semantic relabeling of 3D space, navigation'),
    _task('keyword', ('Audio',), 8, 'low', 'voice commands, accessibility'),
    _task('activity', ('Motion', 'Visual'), 5, 'low to moderate',
          'fitness apps, workplace monitoring'),
    _task('object', ('Visual',), 8, 'low', 'AR overlays, safety alerts'),
    _task('intent', ('Eye Tracking', 'Motion', 'Audio'), 4, 'very low',
          'anticipatory UI, task adaptation'),
    _task('environment_mapping', ('Visual', 'Spatial Mapping'), 4, 'moderate',
          '3D reconstruction, virtual overlays'),
    _task('emotion', ('Audio', 'Visual'), 4, 'moderate',
          'mental health monitoring, immersive storytelling'),
    _task('anchoring', ('Visual', 'Spatial Mapping'), 4, 'low',
          'persistent AR experiences, spatial memory'),
)}


def _lookup(kind: str, names: Sequence[str], catalog: dict) -> list:
  out = []
  for name in names:
    if name not in catalog:
      close = difflib.get_close_matches(name, catalog, n=1)
      hint = f' (did you mean {close[0]!r}?)' if close else ''
      raise ConfigError(f'unknown {kind} {name!r}{hint}; known: {sorted(catalog)}')
    out.append(catalog[name])
  return out


def modalities(names: Sequence[str]) -> list:
  return _lookup('modality', names, MODALITIES)


def devices(names: Sequence[str]) -> list:
  return _lookup('device', names, DEVICES)


def tasks(names: Sequence[str]) -> list:
  found = _lookup('task', names, TASKS)
  for t in found:
    pending = [s for s in t.sensors if s in PENDING_SENSORS]
    if pending:
      raise ConfigError(f'not supported yet: task {t.name!r} needs {pending}, '
                        'which the generator cannot render yet')
  return found
