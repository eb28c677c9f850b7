"""Scenario 3: embodied AI companions, adaptive agents that evolve with the user.

  fedxr-train --config=fedxr_jax/configs/scenarios/ai_companions.py \
      --workdir=runs/companions

The paper: always-present agents (avatars or in the background) giving
reminders, co-navigation and nudges from continuous embodied streams -
speech prosody, ocular patterns, posture -; tasks: emotional state, fine
intent, longitudinal behavior, context-aware recommendations; e.g. noticing
a gradual decline in mood.

Here: mostly everyday smart glasses (Ray-Ban Meta, Google and Apple
glasses, XREAL Air) plus home MR headsets, at home, in offices and
outdoors. Tasks: emotion (prosody, gaze, posture), intent (gaze, IMU,
speech), activity (longitudinal behavior; a skill the companion learns
later: its labels arrive at round 20) and spoken commands. Modalities:
audio, gaze, motion, vision. SHIFT: devices train only when free - idle at
night, charged or plugged in (availability with 1 h rounds) -; users
change slowly (style drift 0.03 rad/round).
"""
from fedxr_jax.configs import default


def get_config():
  config = default.get_config()
  d = config.data
  d.modalities = ('audio', 'gaze', 'motion', 'vision')
  d.tasks = ('emotion', 'intent', 'activity', 'keyword')
  d.devices = ('ray_ban_meta', 'google_ai_glasses', 'apple_smart_glasses', 'xreal_air',
               'apple_vision_pro', 'meta_quest_3', 'samsung_project_moohan')
  d.device_weights = (2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0)
  d.environments = ('home', 'office', 'outdoor')
  d.hardware.availability = True
  d.hardware.round_hours = 1.0
  d.interactivity.style_drift = 0.03
  d.functional.arrival_rounds = (0, 0, 20, 0)
  return config
