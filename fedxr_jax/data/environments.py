"""Deployment environments: where each device is used and what users do there.

Table 1 lists each device's "typical deployment environment" in ~18 words;
the paper's scenarios name homes, offices, hospitals, factories, classrooms
and public spaces. They map to six environments here. An environment sets
  - which devices are found there (a device fits the environments its
    Table 1 entry names);
  - a task mix: the relative chance a user there holds each Table 2 task
    (used with `data.functional.environment_mix`), with the rationale;
  - a background in every modality (lighting and clutter in images, noise
    spectrum in audio, vibration in IMU, room layout in depth, ambient
    temperature in thermal, ...), rendered in `synthetic.make_world`.
"""
import dataclasses


@dataclasses.dataclass(frozen=True)
class Environment:
  name: str
  table1: tuple        # Table 1 deployment words mapped here
  task_mix: dict       # {task: relative chance a user here holds it, in (0, 1]}
  rationale: str


# Tasks not named in a mix get 0.5 ("sometimes").
_DEFAULT_AFFINITY = 0.5

ENVIRONMENTS = {e.name: e for e in (
    Environment('home', ('home', 'gaming', 'entertainment', 'everyday'),
                {'gesture': 1.0, 'gaze_target': 1.0, 'keyword': 1.0, 'emotion': 1.0,
                 'intent': 0.8, 'activity': 0.8},
                'gaming, media and fitness: gesture and gaze control, voice commands, '
                'emotion-aware content, workouts'),
    Environment('office', ('office', 'enterprise', 'productivity', 'lab'),
                {'keyword': 1.0, 'intent': 1.0, 'gaze_target': 1.0, 'gesture': 1.0,
                 'object': 0.8, 'anchoring': 0.8},
                'productivity: anticipatory UI, voice and gaze input, persistent '
                'virtual screens anchored to desks'),
    Environment('industrial', ('industrial', 'fieldwork', 'simulation'),
                {'object': 1.0, 'activity': 1.0, 'scene': 1.0,
                 'environment_mapping': 1.0, 'anchoring': 1.0, 'keyword': 1.0,
                 'gesture': 0.8, 'emotion': 0.2},
                'hands-free work instructions: safety alerts on objects, workplace '
                'activity monitoring, mapped and anchored overlays, voice commands'),
    Environment('hospital', ('hospital', 'healthcare'),
                {'activity': 1.0, 'emotion': 1.0, 'keyword': 1.0, 'object': 0.8,
                 'gesture': 0.8, 'anchoring': 0.8},
                'surgical guidance and rehabilitation: patient activity and mood, '
                'sterile voice/gesture control, anchored overlays'),
    Environment('classroom', ('education', 'training', 'lab'),
                {'keyword': 1.0, 'gaze_target': 1.0, 'intent': 1.0, 'gesture': 1.0,
                 'emotion': 0.8, 'object': 0.8},
                'immersive lessons and simulators: voice tutoring, attention (gaze) '
                'and engagement, manipulating virtual lab objects'),
    Environment('outdoor', ('everyday', 'mobile', 'social', 'travel', 'fieldwork'),
                {'object': 1.0, 'scene': 1.0, 'keyword': 1.0, 'activity': 1.0,
                 'environment_mapping': 0.6, 'emotion': 0.6},
                'on the move: what is that (objects, scenes), translation and voice '
                'assistants, navigation, activity tracking'),
)}


def affinity(environment: str, task: str) -> float:
  return ENVIRONMENTS[environment].task_mix.get(task, _DEFAULT_AFFINITY)


def fits(device, environment: str) -> bool:
  """Whether `device` (a devices.Device) is deployed in `environment`."""
  return bool(set(device.environments) & set(ENVIRONMENTS[environment].table1))
