"""Scenario 4: emotionally resonant storytelling in XR gaming.

  fedxr-train --config=fedxr_jax/configs/scenarios/emotion_gaming.py \
      --workdir=runs/gaming

The paper: headsets read gaze, pupil dilation, facial micro-expressions
and vocal stress, and the story adapts to the player's physiological and
emotional state (immersed, overwhelmed, disengaged).

Here: consumer VR/MR headsets Table 1 deploys at home or for gaming (Quest
3, Vision Pro, Vive XR Elite, Project Moohan); 30% of players pair a
PPG/EDA band (`devices.ADDONS['physio_band']`). Tasks: emotion (pupil,
face, voice, physiology), and the game's controls - gesture, gaze target,
intent -, each game using a subset (task_keep_prob 0.75). Modalities:
gaze, vision, audio, physio, hand, motion. SHIFT: players express emotion
differently (style_scale 0.8); face and voice inputs drop out in bursts
(Markov: 15% of rounds, 4-round bursts); consoles train when idle
(availability).
"""
from fedxr_jax.configs import default


def get_config():
  config = default.get_config()
  d = config.data
  d.modalities = ('gaze', 'vision', 'audio', 'physio', 'hand', 'motion')
  d.tasks = ('emotion', 'gesture', 'gaze_target', 'intent')
  d.devices = ('meta_quest_3', 'apple_vision_pro', 'htc_vive_xr_elite',
               'samsung_project_moohan')
  d.environments = ('home',)
  d.task_keep_prob = 0.75
  d.style_scale = 0.8
  d.sensors.addons = ('physio_band',)
  d.sensors.addon_prob = 0.3
  d.sensors.markov_rate = 0.15
  d.sensors.markov_burst_rounds = 4.0
  d.hardware.availability = True
  return config
