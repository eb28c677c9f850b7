"""Catalogs of XR modalities, devices (paper Table 1), tasks (Table 2), environments.

Devices and their hardware figures live in `devices.py` (each figure with a
source), modalities in `modalities.py`, deployment environments in
`environments.py`; this module adds the Table 2 tasks and name lookups that
fail with a clear `ConfigError`.

Every task is a classification in the simulator. Where Table 2's output is
richer (a gaze point, boxes, a 3D map, an anchor pose) the label is a
discrete stand-in, and `output` says so. The three tasks that need spatial
mapping read the depth modality (a depth map of the surroundings); their
labels are classes of the scene's layout (room type, layout class, anchor
surface) that shape the depth map, not a reconstructed map.
"""
import dataclasses
import difflib
from typing import Sequence

from fedxr_jax.data import devices as devices_lib
from fedxr_jax.data import environments as environments_lib
from fedxr_jax.data import modalities as modalities_lib
from fedxr_jax.errors import ConfigError

# Re-exported: the catalog is the one place to look names up.
Fact = devices_lib.Fact
Hardware = devices_lib.Hardware
Device = devices_lib.Device
Addon = devices_lib.Addon
Modality = modalities_lib.Modality
Environment = environments_lib.Environment
MODALITIES = modalities_lib.MODALITIES
DEVICES = devices_lib.DEVICES
ADDONS = devices_lib.ADDONS
ENVIRONMENTS = environments_lib.ENVIRONMENTS
REFERENCE_TRAIN_FLOPS = devices_lib.REFERENCE_TRAIN_FLOPS


@dataclasses.dataclass(frozen=True)
class Task:
  name: str
  modalities: tuple        # Table 2 "Primary Modalities Used", as model modalities
  sensors: tuple           # Table 2 modalities as written
  extra_modalities: tuple  # other modalities that carry the label (see `extra_why`)
  extra_why: str
  num_classes: int
  output: str              # what the label is (and what it stands in for)
  latency_class: str       # Table 2 "Real-Time Constraints"
  latency_ms: float        # the budget of that class, see _LATENCY
  use_cases: str

  @property
  def latency_budget_ms(self) -> float:
    return self.latency_ms

  @property
  def carriers(self) -> tuple:
    """Every modality the task's label renders into."""
    return self.modalities + tuple(m for m in self.extra_modalities
                                   if m not in self.modalities)


# Table 2 latency classes as end-to-end budgets: very low = one frame at
# 90 Hz (11 ms, the display rate of current headsets); low = 50 ms (the
# paper's "sub-50ms response for gesture-based interaction", Dimension 2);
# low to moderate = 100 ms; moderate = 200 ms (buffered analysis: a few
# frames of audio/video context).
_LATENCY = {'very low': 11.0, 'low': 50.0, 'low to moderate': 100.0, 'moderate': 200.0}


def _task(name, sensors, num_classes, output, latency_class, use_cases,
          extra=(), extra_why=''):
  return Task(name, modalities_lib.from_sensors(sensors), tuple(sensors), tuple(extra),
              extra_why, num_classes, output, latency_class, _LATENCY[latency_class],
              use_cases)


TASKS = {t.name: t for t in (
    _task('gesture', ('Visual', 'Motion'), 6, 'class: 6 hand gestures', 'low',
          'interaction control, virtual object manipulation',
          ('hand', 'physio'), 'hand tracking observes the gesture; EEG carries the '
          'motor intent (imagined limb movement, Scenario 2)'),
    _task('gaze_target', ('Eye Tracking',), 9,
          'class: 9 gaze targets (3x3 view grid), standing in for a gaze point',
          'very low', 'adaptive rendering, user experience optimization'),
    _task('scene', ('Visual', 'Spatial Mapping'), 5,
          'class: 5 scene types (room/space categories)', 'moderate',
          'semantic relabeling of 3D space, navigation',
          ('thermal',), 'heat sources differ between spaces (Scenario 1 heat signatures)'),
    _task('keyword', ('Audio',), 8,
          'class: 8 spoken commands, standing in for speech recognition', 'low',
          'voice commands, accessibility'),
    _task('activity', ('Motion', 'Visual'), 5, 'class: 5 activities', 'low to moderate',
          'fitness apps, workplace monitoring',
          ('hand', 'physio'), 'hands and heart rate follow the activity'),
    _task('object', ('Visual',), 8,
          'class: 8 object categories, standing in for detection boxes', 'low',
          'AR overlays, safety alerts',
          ('thermal',), 'hot or abnormal machines show in thermal (Scenario 1)'),
    _task('intent', ('Eye Tracking', 'Motion', 'Audio'), 4, 'class: 4 UI intents',
          'very low', 'anticipatory UI, task adaptation',
          ('physio', 'hand'), 'EEG carries imagined commands (Scenario 2); hands '
          'move toward the target'),
    _task('environment_mapping', ('Visual', 'Spatial Mapping'), 4,
          'class: 4 room-layout classes shaping the depth map, standing in for a 3D map',
          'moderate', '3D reconstruction, virtual overlays'),
    _task('emotion', ('Audio', 'Visual'), 4,
          'class: 4 emotions (valence x arousal quadrants)', 'moderate',
          'mental health monitoring, immersive storytelling',
          ('gaze', 'physio'), 'pupil dilation and physiological arousal '
          '(Scenarios 3 and 4)'),
    _task('anchoring', ('Visual', 'Spatial Mapping'), 4,
          'class: 4 anchor surfaces (floor, wall, table, ceiling), standing in for a '
          '6-DoF anchor pose', 'low', 'persistent AR experiences, spatial memory'),
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
  return _lookup('task', names, TASKS)


def addons(names: Sequence[str]) -> list:
  return _lookup('add-on', names, ADDONS)


def environments(names: Sequence[str]) -> list:
  return _lookup('environment', names, ENVIRONMENTS)
