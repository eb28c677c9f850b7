"""Scenario 1: cognitive XR augmentation, real-time perceptual overlays.

  fedxr-train --config=fedxr_jax/configs/scenarios/cognitive_augmentation.py \
      --workdir=runs/cognitive

The paper: overlays built from visual context (scenes, handwriting), spoken
commands and the user's emotional tone; live translation, contextual object
labels, environment-aware recommendations; in industry, a technician's
headset flags abnormal vibrations, heat signatures and wear.

Here: enterprise AR headsets and assisted-reality glasses (HoloLens 2,
Magic Leap 2, RealWear Navigator 520 with its thermal camera, Vuzix Blade
2) next to office MR and everyday glasses, in industrial, office,
classroom and outdoor environments, each with its own task mix. Tasks:
object labels (overlays, safety alerts; thermal shows hot machines), scene
understanding (environment-aware recommendations), spoken commands (the
stand-in for translation input), emotional tone, and anchoring (overlays
pinned to surfaces, from depth). SHIFT: sensors drop out in bursts
(occlusion, a muted microphone); a 10 s compute deadline per round for a
model 10^4 times the simulated one, so glasses manage one or two steps and
headsets all eight; lighting and machine noise follow a day cycle (48
rounds of 30 min).
"""
from fedxr_jax.configs import default


def get_config():
  config = default.get_config()
  d = config.data
  d.modalities = ('vision', 'audio', 'depth', 'thermal', 'motion')
  d.tasks = ('object', 'scene', 'keyword', 'emotion', 'anchoring')
  d.devices = ('hololens_2', 'magic_leap_2', 'realwear_navigator_520', 'vuzix_blade_2',
               'apple_vision_pro', 'meta_quest_pro', 'ray_ban_meta', 'google_ai_glasses')
  d.device_weights = (2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0)
  d.environments = ('industrial', 'office', 'classroom', 'outdoor')
  d.functional.environment_mix = True
  d.sensors.markov_rate = 0.1
  d.sensors.markov_burst_rounds = 3.0
  d.hardware.deadline_s = 10.0
  d.hardware.model_scale = 1e4
  d.temporal.schedule = 'cyclic'
  d.temporal.period_rounds = 48
  d.temporal.lighting = 0.5
  d.temporal.audio_noise = 0.5
  return config
