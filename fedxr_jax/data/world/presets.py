"""Table 8's needed datasets as world presets: WorldSpec factories.

  role_specific   "Federated Role-Specific Benchmarks": users have roles that
                  change which intents are common and what an intent looks
                  like (role-conditioned intent prediction); the role is
                  user metadata (`data['role']`).
  longitudinal    "Longitudinal XR Interaction Logs": behaviour changes about
                  every 1 / drift_rate rounds (new style, new class priors),
                  with the change rounds as ground truth (`drift_event`).
  social          "Social and Collaborative XR Benchmarks": co-located pairs
                  share a scene and a focus; `shared_grounding` depends on
                  what both attend, and each hears the other name its object.
  cognitive_load  "Cognitive Load-Aware Datasets": load shows in fixation
                  length, gaze micro-pauses, pupil, EEG theta/alpha and heart
                  rate; `cognitive_load` is the level to estimate.
Each returns a checked WorldSpec; keyword overrides replace any field.
Cards: datasets/world_<name>.md.
"""
import dataclasses

from fedxr_jax.data import shift
from fedxr_jax.data.world.spec import WorldSpec
from fedxr_jax.errors import ConfigError

# Table 1 devices with eye tracking (gaze is the core of three presets).
EYE_TRACKING = ('apple_vision_pro', 'magic_leap_2', 'meta_quest_pro', 'hololens_2',
                'varjo_xr_4', 'samsung_project_moohan')
ROLE_NAMES = ('clinician', 'technician', 'student', 'designer')


def _make(fields: dict, overrides: dict) -> WorldSpec:
  return dataclasses.replace(WorldSpec(), **{**fields, **overrides}).check()


def primitives(**overrides) -> WorldSpec:
  """The default v2 world (the generator's card: datasets/world_primitives.md)."""
  return _make({}, overrides)


def role_specific(**overrides) -> WorldSpec:
  return _make(dict(roles=len(ROLE_NAMES), role_strength=0.8,
                    modalities=('gaze', 'motion', 'audio', 'vision'),
                    tasks=('intent', 'gesture', 'gaze_point')), overrides)


def longitudinal(**overrides) -> WorldSpec:
  return _make(dict(drift_rate=0.01, drift_max_events=8,
                    modalities=('vision', 'gaze', 'audio', 'physio'),
                    tasks=('gesture', 'intent', 'emotion', 'cognitive_load'),
                    devices=EYE_TRACKING, sensors=shift.Sensors(addons=('physio_band',))),
               overrides)


def social(**overrides) -> WorldSpec:
  return _make(dict(group_size=2, partner_coupling=0.5, shared_focus=0.6,
                    modalities=('gaze', 'audio', 'vision', 'motion'),
                    tasks=('shared_grounding', 'gaze_point', 'emotion'),
                    devices=EYE_TRACKING), overrides)


def cognitive_load(**overrides) -> WorldSpec:
  return _make(dict(load_effect=1.0, modalities=('gaze', 'physio', 'motion', 'audio'),
                    tasks=('cognitive_load', 'intent', 'gaze_point'), devices=EYE_TRACKING,
                    sensors=shift.Sensors(addons=('eeg_headband', 'physio_band'))),
               overrides)


PRESETS = {f.__name__: f for f in (primitives, role_specific, longitudinal, social,
                                   cognitive_load)}


def preset(name: str, **overrides) -> WorldSpec:
  if name not in PRESETS:
    raise ConfigError(f'data.world.preset={name!r} is not one of {sorted(PRESETS)}')
  return PRESETS[name](**overrides)
