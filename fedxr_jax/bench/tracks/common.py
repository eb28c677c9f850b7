"""What tracks share: how a frozen part is made from a config, and the open part.

A track is a base config (the default plus the track's overrides). Its
frozen part is EVERY key of that config, flattened to dotted keys, except
the open keys (the method's own knobs, within stated limits) and the
infrastructure keys that cannot change a number of the run's results on a
device kind (cadence of checkpoints and plots, seeds the runner sets). A
code change that alters any frozen value changes the track's frozen hash,
which tests/test_tracks.py pins: bump the track's version then.
"""
from typing import Callable, Mapping

import ml_collections

from fedxr_jax.bench.track import Between, OneOf

# Keys an entry may set freely: they change no result (or, chunking and
# rounds per call, only how the same math is split: bit-identical on a
# device kind, float32 rounding across layouts), and the seed the runner sets.
INFRASTRUCTURE = ('seed', 'chunk_size', 'rounds_per_call', 'checkpoint_every',
                  'max_checkpoints', 'plot', 'memory_budget_gb', 'eval.tensorboard',
                  'eval.client_table', 'eval.measure_latency', 'eval.latency_repeats')

PLAN_MODES = ('frozen', 'shared', 'personal')
ALGORITHMS = ('fedavg', 'fedprox', 'scaffold', 'ditto', 'fedrep', 'local_ft', 'tap',
              'fedavgm', 'fedadam', 'fedyogi', 'fedadagrad', 'fedper')

# The method's part: algorithm, its settings, optimizers, tuning plan, LoRA rule.
METHOD = {
    'algorithm.name': OneOf(ALGORITHMS),
    'algorithm.fedprox.mu': Between(0.0, 10.0),
    'algorithm.ditto.lam': Between(0.0, 10.0),
    'algorithm.fedrep.head_steps': Between(1, 16, integer=True),
    'algorithm.local_ft.steps': Between(1, 16, integer=True),
    'algorithm.tap.margin': Between(0.0, 10.0),
    'algorithm.tap.distill_lambda': Between(0.0, 10.0),
    'algorithm.tap.finetune_steps': Between(1, 16, integer=True),
    'client_optimizer.name': OneOf(('sgd', 'adam', 'yogi', 'adagrad')),
    'client_optimizer.learning_rate': Between(1e-5, 10.0),
    'client_optimizer.sgd.momentum': Between(0.0, 0.999),
    'server_optimizer.name': OneOf(('sgd', 'adam', 'yogi', 'adagrad')),
    'server_optimizer.learning_rate': Between(1e-5, 10.0),
    'server_optimizer.sgd.momentum': Between(0.0, 0.999),
    **{f'server_optimizer.{name}.b1': Between(0.0, 0.999) for name in ('adam', 'yogi', 'adagrad')},
    **{f'server_optimizer.{name}.b2': Between(0.0, 0.9999) for name in ('adam', 'yogi')},
    **{f'server_optimizer.{name}.eps': Between(1e-9, 1.0) for name in ('adam', 'yogi', 'adagrad')},
    **{f'plan.{role}': OneOf(PLAN_MODES) for role in (
        'encoders', 'lora', 'prompts', 'user_prompts', 'adapters', 'experts', 'heads')},
    'lora.rule': OneOf(('fedit', 'ffa', 'fedsa', 'exact', 'flora')),
    'lora.hetlora_weights': OneOf((False, True)),
}
# Server-side defenses, for tracks with attackers.
DEFENSES = {
    'aggregator.name': OneOf(('mean', 'median', 'trimmed_mean', 'krum', 'multi_krum',
                              'geometric_median', 'centered_clipping', 'norm_bounding')),
    'aggregator.trimmed_mean.beta': Between(0.0, 0.49),
    'aggregator.krum.num_byzantine': Between(0, 64, integer=True),
    'aggregator.multi_krum.num_byzantine': Between(0, 64, integer=True),
    'aggregator.multi_krum.num_selected': Between(0, 1024, integer=True),
    'aggregator.geometric_median.iterations': Between(1, 100, integer=True),
    'aggregator.centered_clipping.tau': Between(1e-6, 1e6),
    'aggregator.centered_clipping.iterations': Between(1, 100, integer=True),
    'aggregator.centered_clipping.center': OneOf(('global', 'momentum')),
    'aggregator.norm_bounding.max_norm': Between(1e-6, 1e6),
}
# The cost columns every track shows (lower is better).
COSTS = ('total/comm/uplink_bits', 'total/cost/energy_j', 'latency/violation_rate',
         'privacy/epsilon')


def flatten(config, prefix: str = '') -> dict:
  """{dotted key: value} of a (nested) config; tuples stay tuples."""
  out = {}
  items = config.items() if isinstance(config, Mapping) else config.to_dict().items()
  for key, value in items:
    if isinstance(value, (Mapping, ml_collections.ConfigDict)):
      out.update(flatten(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


def frozen_part(base: Callable, open_keys) -> dict:
  """Every key of the base config but the open and infrastructure ones."""
  return {k: v for k, v in sorted(flatten(base().to_dict()).items())
          if k not in open_keys and k not in INFRASTRUCTURE}
