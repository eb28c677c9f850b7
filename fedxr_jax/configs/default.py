"""The embedded default: a small multi-modal multi-task XR federation on CPU.

  fedxr-train --config=fedxr_jax/configs/default.py --workdir=runs/xr_default

500 users on six devices of the paper's Table 1 (headsets with eye
tracking, glasses with only camera and microphone, ...), three Table 2
tasks, LoRA + prompts + encoders + heads federated over a frozen
transformer base.

Only this run's own choices are written here. Every component's block is
read from the component itself (`configs.blocks`: a dataclass's fields or a
factory's keyword defaults), so each default is written once, beside the
code that uses it; `fedxr-train --list_config` prints every key with its
default and where it comes from. Loading this file imports no jax.
"""
import ml_collections

from fedxr_jax.configs import blocks

Config = ml_collections.ConfigDict


def _with_name(name: str, registry: str, table: str) -> dict:
  return {'name': name, **blocks.registry_block(registry, table)}


def get_config():
  config = Config()
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

  # name: fedavg | fedprox | scaffold | ditto | fedrep | local_ft | tap | ewc |
  # crossmodal_distill | offload | task_isolation | dynamic_task_modules |
  # temporal_gate | lwf | mas,
  # or a preset (fedavgm | fedadam | fedyogi | fedadagrad | fedper); each
  # algorithm's settings are its factory's (fedxr_jax/algorithms/<name>.py).
  config.algorithm = Config(_with_name('fedavg', 'fedxr_jax.algorithms.registry',
                                       'ALGORITHMS'))
  # Optimizers by (role, name): sgd | adam | yogi | adagrad, each its own block
  # (compose/optimizers.py; the server's adagrad is FedAdagrad).
  config.client_optimizer = Config(blocks.optimizer_block('client', 'sgd', 0.1))
  config.server_optimizer = Config(blocks.optimizer_block('server', 'sgd', 1.0))

  # Per parameter tree: frozen | shared | personal. A tree the model does not
  # have (user_prompts, adapters, experts, library, selection, signature by
  # default) is left out of the run's plan.
  config.plan = Config(dict(
      base='frozen', encoders='shared', lora='shared', prompts='shared',
      user_prompts='personal', adapters='shared', experts='shared',
      heads='shared', library='shared', selection='personal', signature='shared'))
  # Server aggregator: mean | median | trimmed_mean | krum | multi_krum |
  # geometric_median | centered_clipping | norm_bounding (fedxr_jax/aggregators/).
  config.aggregator = Config(_with_name('mean', 'fedxr_jax.aggregators.registry',
                                        'AGGREGATORS'))
  # Features, each from its own block (their docs: the dataclass named).
  config.privacy = Config(blocks.dataclass_block('fedxr_jax.privacy.feature', 'Settings'))
  config.attack = Config({
      **blocks.dataclass_block('fedxr_jax.attacks.feature', 'Settings'),
      **blocks.registry_block('fedxr_jax.transforms.registry', 'ATTACKS'),
      **blocks.registry_block('fedxr_jax.attacks.feature', 'OMNISCIENT'),
      'backdoor': blocks.dataclass_block('fedxr_jax.attacks.feature', 'Backdoor')})
  config.compression = Config({
      **blocks.dataclass_block('fedxr_jax.transforms.registry', 'Compression'),
      **blocks.registry_block('fedxr_jax.transforms.registry', 'COMPRESSORS')})
  config.lora = Config(blocks.dataclass_block('fedxr_jax.algorithms.lora_feature', 'Settings'))
  # Each example's inference path (early exit) from its device's battery and compute.
  config.resource_aware = Config(
      blocks.dataclass_block('fedxr_jax.algorithms.resource_aware', 'Settings'))
  # Closed-form task heads from the first cohort's features before round 1 (Fed3R).
  config.warm_start = Config(blocks.dataclass_block('fedxr_jax.algorithms.warm_start',
                                                    'Settings'))

  # The model (models/registry.py): its name, dtype, a pretrained directory, and
  # each model's settings block (model.m3t.size = tiny | small | base, ...).
  config.model = Config({
      **blocks.dataclass_block('fedxr_jax.compose.experiment', 'ModelSettings'),
      **blocks.registry_block('fedxr_jax.models.registry', 'MODELS')})

  # The data: its source (data/sources.py) and the synthetic generator's
  # settings (data/synthetic.py XRSpec, SHIFT blocks in data/shift.py), with
  # this run's modalities, tasks and devices.
  config.data = Config({
      **blocks.dataclass_block('fedxr_jax.data.sources', 'Source'),
      'modalities': ('vision', 'audio', 'motion', 'gaze'),
      'tasks': ('gesture', 'intent', 'emotion'),
      'devices': ('apple_vision_pro', 'meta_quest_3', 'hololens_2', 'ray_ban_meta',
                  'xreal_air', 'vuzix_blade_2'),
      'device_weights': (),           # empty: uniform over devices
      **blocks.dataclass_block('fedxr_jax.data.synthetic', 'XRSpec', exclude=(
          'local_steps', 'style_bank_size', 'holdout_environments', 'holdout_devices',
          'holdout_first_id', 'holdout_clients', 'hardware.flops_per_step',
          'hardware.role_train_bytes')),
      # FedMultimodal's robustness protocol on a v1 or recorded source (the world's
      # own: data.world.robustness): missing modalities and labels, label noise.
      'robustness': blocks.dataclass_block('fedxr_jax.data.world.robustness', 'Robustness'),
      # data.source=world: the primitives world (v2) and its own settings.
      'world': {**blocks.dataclass_block('fedxr_jax.data.sources', 'World'),
                **blocks.dataclass_block('fedxr_jax.data.world.spec', 'WorldSpec', exclude=(
                    'local_steps', 'holdout_environments', 'holdout_devices',
                    'holdout_first_id', 'holdout_clients', 'hardware.flops_per_step',
                    'hardware.role_train_bytes'))}})

  # Coordination topology: kind centralized | hierarchical | semi | decentralized
  # | tree, each kind's block (fedxr_jax/topology/<kind>.py), and the D2D radio
  # graph of the kinds with D2D links (topology/layout.py D2D).
  config.topology = Config({
      'kind': 'centralized', 'd2d': blocks.dataclass_block('fedxr_jax.topology.layout', 'D2D'),
      **blocks.registry_block('fedxr_jax.topology.registry', 'TOPOLOGIES')})
  config.channel = Config(blocks.dataclass_block('fedxr_jax.topology.channel', 'Channel'))
  # Server steps on a virtual clock instead of rounds: kind none | fedbuff | fedasync
  # (compose/asynchrony.py Settings; core/asynchronous.py).
  config.asynchrony = Config(blocks.dataclass_block('fedxr_jax.compose.asynchrony', 'Settings'))

  # Failing safely (training/guards.py, training/checks.py): a round whose loss
  # or parameters are not finite, or whose loss exceeds divergence_factor x the
  # first one (0: no limit), diverged: stop | skip_round. memory_budget_gb: what
  # a run may plan to use (0: the free memory).
  config.on_divergence = 'stop'
  config.divergence_factor = 100.0
  config.memory_budget_gb = 0.0

  config.eval_every = 10
  config.eval_unseen_clients = 64   # clients outside the population
  # The evaluation protocol (evaluation/protocol.py; every metric: docs/metrics.md).
  config.eval = Config({
      **blocks.dataclass_block('fedxr_jax.evaluation.protocol', 'Protocol',
                               exclude=('user', 'behaviour')),
      'qoe': {**blocks.dataclass_block('fedxr_jax.metrics.qoe', 'UserModel'),
              **blocks.dataclass_block('fedxr_jax.metrics.qoe', 'BehaviourModel')}})
  config.checkpoint_every = 10
  config.max_checkpoints = 3
  config.plot = True
  return config
