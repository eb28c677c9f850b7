"""The embedded default: a small multi-modal multi-task XR federation on CPU.

  fedxr-train --config=fedxr_jax/configs/default.py --workdir=runs/xr_default

About a minute on a 2-core laptop CPU: 500 users on six devices of the
paper's Table 1 (headsets with eye tracking, glasses with only camera and
microphone, ...), three Table 2 tasks, LoRA + prompts + encoders + heads
federated over a frozen transformer base.
"""
import ml_collections

from fedxr_jax import algorithms
from fedxr_jax import topology
import dataclasses

from fedxr_jax.aggregators import registry as aggregator_registry
from fedxr_jax.attacks import feature as attack_feature
from fedxr_jax.privacy import feature as privacy_feature
from fedxr_jax.transforms import registry as transform_registry


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.num_rounds = 60
  config.population_size = 500
  config.cohort_size = 32
  config.local_steps = 8          # steps of a compute-tier-1.0 device
  config.batch_size = 16
  # Clients per vmapped chunk: 0 (the whole cohort at once), N, or 'auto'
  # (the platform's preferred chunk that fits memory_budget_gb; core/chunking.py:
  # 8 on CPU, the whole cohort on an accelerator).
  config.chunk_size = ml_collections.FieldReference('auto', field_type=object)
  # Chunks take the cohort in step-budget order, each running to its own
  # largest budget (core/schedule.py): the same numbers up to float rounding.
  config.schedule_by_budget = True
  config.rounds_per_call = 1      # rounds run in one compiled call (lax.scan)
  config.shuffle = True           # shuffle each client's examples per round

  # name: fedavg | fedprox | scaffold | ditto | fedrep | local_ft | tap | ewc,
  # or a preset (fedavgm | fedadam | fedyogi | fedadagrad | fedper: FedAvg
  # with a server optimizer or personal heads). Each algorithm's settings are
  # its own block, algorithm.<name>.<key> (fedprox.mu, ditto.lam,
  # fedrep.head_steps, local_ft.steps, tap.margin / distill_lambda /
  # finetune_steps, ewc.lam / rounds), defaults from its factory in
  # fedxr_jax/algorithms/<name>.py.
  config.algorithm = ml_collections.ConfigDict(algorithms.default_config())
  config.client_optimizer = ml_collections.ConfigDict(
      dict(name='sgd', learning_rate=0.1, momentum=0.0))
  # Server optimizer on the pseudo-gradient: sgd | adam | yogi | adagrad
  # (FedOpt; b1, b2, eps = tau for the adaptive ones; compose/optimizers.py).
  config.server_optimizer = ml_collections.ConfigDict(
      dict(name='sgd', learning_rate=1.0, momentum=0.0, b1=0.9, b2=0.99, eps=1e-3))

  # Per parameter tree: frozen | shared | personal. A tree the model does not
  # have (user_prompts, adapters, experts by default) needs no entry.
  # Prompt tuning: prompts shared (global) or personal; shared+personal:
  # model.num_user_prompts > 0 and user_prompts='personal'. Full tuning:
  # base='shared'.
  config.plan = ml_collections.ConfigDict(dict(
      base='frozen', encoders='shared', lora='shared', prompts='shared',
      user_prompts='personal', adapters='shared', experts='shared',
      heads='shared'))
  # Server aggregator: mean (masked, example-weighted, streamed) | median |
  # trimmed_mean | krum | multi_krum | geometric_median | centered_clipping |
  # norm_bounding; settings per name (aggregator.trimmed_mean.beta, ...),
  # defaults from fedxr_jax/aggregators/. They need a central server.
  config.aggregator = ml_collections.ConfigDict(aggregator_registry.default_config())
  # Client-level DP-FedAvg (McMahan et al. 2018): each update clipped to
  # clip_norm over all its shared trees, Gaussian noise noise_multiplier *
  # clip_norm on the sum, a fixed denominator (the cohort size). Give
  # target_epsilon (+ delta) to calibrate the noise for num_rounds, or
  # noise_multiplier; mode auto turns DP on when either is set. Accounting:
  # dp-accounting (rdp | pld), fixed-size cohorts (replace-one neighbours);
  # privacy/epsilon in every row. adaptive_clip: Andrew et al. 2021.
  # mode=example: DP-SGD in local training instead (privacy/dpsgd.py): each
  # example's gradient clipped to example_clip, noise noise_multiplier *
  # example_clip on the batch sum; the worst client's epsilon, no
  # amplification (shuffled batches), every round in its cohort.
  config.privacy = ml_collections.ConfigDict(dataclasses.asdict(privacy_feature.Settings()))
  # Poisoning: a fixed fraction of the population is malicious (drawn from the
  # seed). model: none | sign_flip | gaussian | scaled_replacement | alie | ipm;
  # data: none | label_flip | backdoor (a trigger patch on the vision input,
  # relabelled to target; attack/success_rate on triggered test data).
  config.attack = ml_collections.ConfigDict(attack_feature.default_config())
  # Uplink compression: name none | topk | qsgd | sign (error feedback kept
  # per client); event_threshold > 0: a client uploads only when its update's
  # norm reaches it. comm/uplink_bits counts what is sent.
  config.compression = ml_collections.ConfigDict(transform_registry.compression_config())

  # LoRA aggregation: fedit | ffa | fedsa | exact | flora (algorithms/lora_rules.py);
  # device_ranks: a rank per data.devices entry (heterogeneous, zero-padded).
  config.lora = ml_collections.ConfigDict(dict(
      rule='fedit', device_ranks=(), hetlora_weights=False))

  config.model = ml_collections.ConfigDict(dict(
      width=32, depth=2, num_heads=4, mlp_width=64, num_prompts=4,
      lora_rank=4, lora_alpha=8.0, lora_targets=('query', 'value'),
      num_user_prompts=0, adapter_dim=0, num_experts=0, expert_top_k=2,
      moe_balance=0.01,
      # A fedxr-pretrain output dir ('' = random init) and the trees taken
      # from it; the others (LoRA, prompts, heads) start fresh for PEFT.
      pretrained='', pretrained_roles=('base', 'encoders')))

  # source: synthetic | hapt | digits | basic_motions | pickup_gesture |
  # japanese_vowels | tfds:<name> (data/sources.py; presets in configs/real/).
  # Real data: population_size + eval_unseen_clients clients, partition
  # auto | natural (users) | dirichlet (dirichlet_alpha), each client testing
  # on holdout_fraction of its examples; archive: a local copy of the pinned
  # archive ('' = $FEDXR_DATA_DIR cache, fetched with pip when missing).
  config.data = ml_collections.ConfigDict(dict(
      source='synthetic', partition='auto', holdout_fraction=0.2, archive='',
      modalities=('vision', 'audio', 'motion', 'gaze'),
      tasks=('gesture', 'intent', 'emotion'),
      devices=('apple_vision_pro', 'meta_quest_3', 'hololens_2', 'ray_ban_meta',
               'xreal_air', 'vuzix_blade_2'),
      device_weights=(),           # empty: uniform over devices
      max_examples=48, min_examples=16, test_examples=32,
      dirichlet_alpha=0.5, style_scale=0.5, noise_std=1.0,
      modality_dropout=0.1, task_keep_prob=1.0,
      # Deployment environments users are drawn from (empty: all of home,
      # office, industrial, hospital, classroom, outdoor; data/environments.py)
      # and the strength of each environment's background in every modality.
      environments=(), environment_scale=0.5,
      area_m=100.0, walk_m_per_round=0.0))
  # SHIFT knobs (data/shift.py), one block each; all off by default.
  # S: devices' Table 1 sensors (catalog=False: all), sensors off in bursts
  # over rounds (Markov: stationary rate, mean burst), add-on wearables
  # (eeg_headband, physio_band); per-sample dropout is data.modality_dropout.
  config.data.sensors = ml_collections.ConfigDict(dict(
      catalog=True, markov_rate=0.0, markov_burst_rounds=4.0, addons=(),
      addon_prob=1.0))
  # H: step budgets from device FLOP/s; a round deadline (s) for local
  # compute; stragglers; availability from battery and local time; trees a
  # device can train in memory_fraction of its RAM. Deadlines and memory
  # treat the simulated model as one model_scale times costlier (FLOPs per
  # step, parameters, activations): it stands for a real foundation model.
  config.data.hardware = ml_collections.ConfigDict(dict(
      compute_budgets=True, deadline_s=0.0, straggler_prob=0.0,
      straggler_slowdown=4.0, availability=False, round_hours=0.5,
      day_availability=0.2, min_battery=0.2, recharge_h=2.0,
      memory_limits=False, memory_fraction=0.5, model_scale=1.0))
  # I: per-user style strength is data.style_scale; style_drift (radians
  # per round) makes each user's style change slowly over time.
  config.data.interactivity = ml_collections.ConfigDict(dict(style_drift=0.0))
  # F: per-client task subsets are data.task_keep_prob (x the environment's
  # task mix with environment_mix); arrival_rounds: per task, the first
  # round its labels exist (empty: all from round 0).
  config.data.functional = ml_collections.ConfigDict(dict(
      arrival_rounds=(), environment_mix=False))
  # T: environment drift over rounds (none | linear | cyclic | step over
  # period_rounds): vision lighting, audio noise, tracking-sensor degradation.
  config.data.temporal = ml_collections.ConfigDict(dict(
      schedule='none', period_rounds=50, lighting=0.0, audio_noise=0.0,
      sensor_degradation=0.0))

  # Coordination topology: kind = centralized | hierarchical | semi |
  # decentralized | tree, each kind's settings in its own block
  # (hierarchical.num_edges / k2, semi.gamma / num_clusters / cluster_by /
  # fallback, decentralized.gamma), and the D2D radio graph of the kinds
  # with D2D links in topology.d2d (graph = geometric | ring | torus |
  # erdos_renyi | k_regular | complete, range_m, max_neighbors, er_prob,
  # degree, link_failure_prob); defaults from fedxr_jax/topology/<kind>.py.
  config.topology = ml_collections.ConfigDict(topology.default_config())
  # Wireless channel of the cost model (DESIGN §4 defaults).
  config.channel = ml_collections.ConfigDict(dict(
      path_loss_db_at_1m=-30.0, path_loss_exponent=3.0, noise_dbm_per_hz=-174.0,
      uplink_bandwidth_hz=1e6, downlink_bandwidth_hz=10e6, d2d_bandwidth_hz=8e6,
      server_tx_power_dbm=30.0, backhaul_bps=1e9))

  # Failing safely (training/guards.py, training/checks.py). A round whose
  # training loss or new parameters are not finite, or whose loss exceeds
  # divergence_factor x the run's first loss (0: no such limit), diverged:
  # on_divergence = stop (the run ends, keeping its last good checkpoint) |
  # skip_round (that round's aggregate is discarded and logged).
  # memory_budget_gb: the memory a run may plan to use; a run whose
  # estimated peak exceeds it is refused before it runs (0: the free memory).
  config.on_divergence = 'stop'
  config.divergence_factor = 100.0
  config.memory_budget_gb = 0.0

  config.eval_every = 10
  config.eval_unseen_clients = 64   # clients outside the population
  # Evaluation protocol (evaluation/protocol.py; every metric: docs/metrics.md),
  # at every evaluation (the cadence is eval_every): a fixed panel of
  # panel_size population users (at most the population; 0: none);
  # holdout_environments / holdout_devices: never drawn for training, each
  # held-out group tested on holdout_clients dedicated users;
  # necessity_threshold / _relative: the accuracy bars of personalization
  # necessity; expert_threshold: an active expert's token share;
  # latency_precision: fp32 | fp16; latency_classes: 'task:class' for tasks
  # outside Table 2; measure_latency: time the forward on this host (wall
  # time, the one non-deterministic key family); qoe: the user and behaviour
  # models (metrics/qoe.py); client_table: eval_clients.jsonl; tensorboard:
  # event files in WORKDIR/tensorboard.
  config.eval = ml_collections.ConfigDict(dict(
      panel_size=32, holdout_environments=(), holdout_devices=(), holdout_clients=32,
      necessity_threshold=0.9, necessity_relative=0.9, expert_threshold=0.05,
      latency_precision='fp32', latency_classes=(), measure_latency=True,
      latency_repeats=20,
      qoe=dict(tau=1.0, bias_std=0.3, noise_std=0.5, retry_prob=0.5, abort_max=0.5,
               abort_tau=1.0, hesitation_weight=0.2),
      client_table=True, tensorboard=True))
  config.checkpoint_every = 10
  config.max_checkpoints = 3
  config.plot = True
  return config
