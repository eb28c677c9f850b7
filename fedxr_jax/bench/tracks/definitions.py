"""The benchmark tracks: each a base config (default + overrides) and its rules.

Sizes are set for the 2-core CPU the baselines run on (a track's 2 seeds of
one entry in about two minutes); `gpu-scale` needs an accelerator.
"""
from fedxr_jax.bench.track import Between, OneOf, Track
from fedxr_jax.bench.tracks import common
from fedxr_jax.configs import default
from fedxr_jax.configs.real import hapt
from fedxr_jax.configs.scenarios import (ai_companions, cognitive_augmentation,
                                         emotion_gaming, neuroadaptive)

SEEDS = (0, 1)


def _sized(config, rounds=20, eval_every=10):
  config.num_rounds = rounds
  config.eval_every = eval_every
  config.checkpoint_every = eval_every
  config.plot = False
  return config


def xr_default():
  return _sized(default.get_config())


def scenario(module):
  return lambda: _sized(module.get_config())


def d2d():
  """Semi-decentralized, fixed radio: 4 position clusters, geometric D2D graph."""
  config = _sized(default.get_config())
  config.topology.kind = 'semi'
  config.topology.semi.fallback = 'ring'
  return config


def hetero_hardware():
  """SHIFT H on: a round deadline, 20% stragglers, availability from battery and time."""
  config = _sized(default.get_config())
  h = config.data.hardware
  h.deadline_s = 0.01
  h.straggler_prob = 0.2
  h.availability = True
  return config


def continual():
  """SHIFT I/T/F: style drift, environment drift, emotion labels arriving at round 10."""
  config = _sized(default.get_config())
  config.data.interactivity.style_drift = 0.05
  config.data.temporal.schedule = 'linear'
  config.data.temporal.period_rounds = 20
  config.data.temporal.lighting = 0.5
  config.data.temporal.audio_noise = 1.0
  config.data.functional.arrival_rounds = (0, 0, 10)
  return config


def private():
  """Client-level DP at delta 1e-5 and epsilon <= 4 (the entry picks epsilon and C)."""
  config = _sized(default.get_config())
  config.privacy.target_epsilon = 4.0
  config.privacy.delta = 1e-5
  return config


def robust():
  """20% of the population are ALIE attackers."""
  config = _sized(default.get_config())
  config.attack.fraction = 0.2
  config.attack.model = 'alie'
  return config


def hapt_30():
  return _sized(hapt.get_config(), rounds=30)


def gpu_scale():
  """>= 10^4 clients a round over a pretrained base; needs an accelerator."""
  config = _sized(default.get_config(), rounds=20)
  config.population_size = 100_000
  config.cohort_size = 10_240
  config.chunk_size = 1024
  config.eval_unseen_clients = 1024
  config.model.pretrained = 'runs/pretrained'
  return config


def _track(id_, base, description, open_=None, version=1, requires=(), primary='eval/accuracy'):
  open_ = dict(common.METHOD if open_ is None else open_)
  return Track(id=id_, version=version, description=description,
               frozen=common.frozen_part(base, open_), open=open_, seeds=SEEDS,
               primary_metric=primary, higher_is_better=True, cost_metrics=common.COSTS,
               requires=requires), base


PRIVATE_OPEN = {**common.METHOD,
                'privacy.target_epsilon': Between(0.01, 4.0),
                'privacy.clip_norm': Between(1e-4, 100.0),
                'privacy.adaptive_clip.enabled': OneOf((False, True)),
                'privacy.adaptive_clip.target_quantile': Between(0.0, 1.0),
                'privacy.adaptive_clip.learning_rate': Between(1e-4, 10.0),
                'privacy.adaptive_clip.count_stddev': Between(0.0, 1000.0)}
CONTINUAL_OPEN = {**common.METHOD, 'algorithm.name': OneOf(common.ALGORITHMS + ('ewc',)),
                  'algorithm.ewc.lam': Between(0.0, 1000.0),
                  'algorithm.ewc.rounds': OneOf(((), (10,)))}

_TRACKS = [
    _track('xr-default', xr_default, 'The embedded default XR federation: 500 users on six '
           'Table 1 devices, 32 a round, gesture/intent/emotion from camera, microphone, '
           'IMU and eye tracker, LoRA + prompts over a frozen base; 20 rounds.'),
    _track('cognitive-augmentation', scenario(cognitive_augmentation),
           'Scenario 1 preset (configs/scenarios/cognitive_augmentation.py); 20 rounds.'),
    _track('neuroadaptive', scenario(neuroadaptive),
           'Scenario 2 preset (configs/scenarios/neuroadaptive.py); 20 rounds.'),
    _track('ai-companions', scenario(ai_companions),
           'Scenario 3 preset (configs/scenarios/ai_companions.py); 20 rounds.'),
    _track('emotion-gaming', scenario(emotion_gaming),
           'Scenario 4 preset (configs/scenarios/emotion_gaming.py); 20 rounds.'),
    _track('d2d', d2d, 'Semi-decentralized: 4 position clusters with gamma = 2 D2D '
           'consensus steps and one uplink each, the default radio; 20 rounds.'),
    _track('hetero-hardware', hetero_hardware, 'SHIFT H: a 10 ms compute deadline, 20% '
           'stragglers (4x slower), availability from battery and time of day.'),
    _track('continual', continual, 'SHIFT I/T/F: user-style drift, linear environment '
           'drift, emotion labels arriving at round 10.', open_=CONTINUAL_OPEN),
    _track('private', private, 'Client-level DP-FedAvg at delta = 1e-5, epsilon <= 4 '
           '(dp-accounting RDP, fixed cohorts).', open_=PRIVATE_OPEN),
    _track('robust', robust, '20% of the population send ALIE updates (Baruch et al. '
           '2019); the entry picks the server aggregator.',
           open_={**common.METHOD, **common.DEFENSES}),
    _track('hapt-30', hapt_30, 'UCI HAPT smartphone IMU: 25 real users train, 5 unseen; '
           '12 activities; 30 rounds.'),
    _track('gpu-scale', gpu_scale, '10,240 clients a round of 100,000 over a pretrained '
           'base (fedxr-pretrain into runs/pretrained); accelerators only.',
           requires=('gpu', 'tpu')),
]
TRACKS = tuple(t for t, _ in _TRACKS)
BASES = {t.id: base for t, base in _TRACKS}
