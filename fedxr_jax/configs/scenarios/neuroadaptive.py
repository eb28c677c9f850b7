"""Scenario 2: neuroadaptive interfaces, XR with brain-computer integration.

  fedxr-train --config=fedxr_jax/configs/scenarios/neuroadaptive.py \
      --workdir=runs/neuroadaptive

The paper: wearable EEG / fNIRS make brain activity a live input; a user
thinks a command and the interface responds; a patient with motor
impairments imagines moving a limb and the model, reading neural signals,
visual context and spatial mapping, moves a virtual one.

Here: MR headsets with eye and hand tracking and depth (Varjo XR-4 - the
base of OpenBCI's Galea -, Quest Pro, Vision Pro, Project Moohan, HoloLens
2 and Magic Leap 2 for clinics), 80% of users wearing the EEG add-on
(`devices.ADDONS['eeg_headband']`), in hospitals (rehabilitation), homes
and labs. Tasks: intent (imagined commands, carried by EEG), gesture
(attempted/imagined limb movement: hands, IMU and EEG motor intent),
emotion (internal state), scene (visual context + spatial mapping).
SHIFT: neural signals are individual and drift between sessions: a strong
user style (style_scale 1.0) that rotates slowly (0.02 rad/round), with
personal user prompts to absorb it; electrode contact comes and goes
(Markov dropout: 20% of rounds, 3-round bursts).
"""
from fedxr_jax.configs import default


def get_config():
  config = default.get_config()
  d = config.data
  d.modalities = ('physio', 'gaze', 'vision', 'depth', 'hand', 'motion')
  d.tasks = ('intent', 'gesture', 'emotion', 'scene')
  d.devices = ('varjo_xr_4', 'meta_quest_pro', 'apple_vision_pro',
               'samsung_project_moohan', 'hololens_2', 'magic_leap_2')
  d.environments = ('hospital', 'home', 'office', 'classroom')
  d.sensors.addons = ('eeg_headband',)
  d.sensors.addon_prob = 0.8
  d.sensors.markov_rate = 0.2
  d.sensors.markov_burst_rounds = 3.0
  d.style_scale = 1.0
  d.interactivity.style_drift = 0.02
  config.model.m3t.num_user_prompts = 2   # plan.user_prompts = 'personal'
  return config
