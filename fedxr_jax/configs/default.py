"""The embedded default: a small multi-modal multi-task XR federation on CPU.

  fedxr-train --config=fedxr_jax/configs/default.py --workdir=runs/xr_default

About a minute on a 2-core laptop CPU: 500 users on six devices of the
paper's Table 1 (headsets with eye tracking, glasses with only camera and
microphone, ...), three Table 2 tasks, LoRA + prompts + encoders + heads
federated over a frozen transformer base.
"""
import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.num_rounds = 60
  config.population_size = 500
  config.cohort_size = 32
  config.local_steps = 8          # steps of a compute-tier-1.0 device
  config.batch_size = 16
  config.chunk_size = 0           # 0: vmap the whole cohort at once
  config.shuffle = True           # shuffle each client's examples per round

  # fedavg | fedprox (prox_mu) | scaffold; FedOpt = fedavg + a server optimizer.
  config.algorithm = ml_collections.ConfigDict(dict(name='fedavg', prox_mu=0.0))
  config.client_optimizer = ml_collections.ConfigDict(
      dict(name='sgd', learning_rate=0.1, momentum=0.0))
  config.server_optimizer = ml_collections.ConfigDict(
      dict(name='sgd', learning_rate=1.0, momentum=0.0))

  # Per parameter tree: frozen | shared | personal.
  config.plan = ml_collections.ConfigDict(dict(
      base='frozen', encoders='shared', lora='shared', prompts='shared',
      heads='shared'))

  config.model = ml_collections.ConfigDict(dict(
      width=32, depth=2, num_heads=4, mlp_width=64, num_prompts=4,
      lora_rank=4, lora_alpha=8.0, lora_targets=('query', 'value')))

  config.data = ml_collections.ConfigDict(dict(
      modalities=('vision', 'audio', 'motion', 'gaze'),
      tasks=('gesture', 'intent', 'emotion'),
      devices=('apple_vision_pro', 'meta_quest_3', 'hololens_2', 'ray_ban_meta',
               'xreal_air', 'vuzix_blade_2'),
      device_weights=(),           # empty: uniform over devices
      max_examples=48, min_examples=16, test_examples=32,
      dirichlet_alpha=0.5, style_scale=0.5, noise_std=1.0,
      modality_dropout=0.1, task_keep_prob=1.0,
      area_m=100.0, walk_m_per_round=0.0))

  # Coordination topology (centralized | hierarchical | semi | decentralized | tree).
  config.topology = ml_collections.ConfigDict(dict(
      kind='centralized', graph='geometric', gamma=2, k2=2, num_clusters=4,
      cluster_by='position', d2d_range_m=30.0, max_neighbors=8, er_prob=0.1,
      degree=4, link_failure_prob=0.0, d2d_fallback='none'))
  # Wireless channel of the cost model (DESIGN §4 defaults).
  config.channel = ml_collections.ConfigDict(dict(
      path_loss_db_at_1m=-30.0, path_loss_exponent=3.0, noise_dbm_per_hz=-174.0,
      uplink_bandwidth_hz=1e6, downlink_bandwidth_hz=10e6, d2d_bandwidth_hz=8e6,
      server_tx_power_dbm=30.0, backhaul_bps=1e9))

  config.eval_every = 10
  config.eval_unseen_clients = 64   # clients outside the population
  config.checkpoint_every = 10
  config.max_checkpoints = 3
  config.plot = True
  return config
