"""Per-component limits of open settings: where a component's author says what
an entry may set its settings to.

Open sections list every registered component (`resolve.py`); each setting
of a component's block is open within the limit written here, a boolean
within {False, True}, and any other setting without a line here only at its
default (an entry may choose the component, with its defaults, until its
author adds a limit). Keys are the full dotted config keys.
"""
import itertools

from fedxr_jax.bench.track import Between, OneOf
from fedxr_jax.bench.tracks import resolve

_RATE = Between(1e-5, 10.0)
_BETA = Between(0.0, 0.999)

COMPONENTS = {
    # algorithms
    'algorithm.fedprox.mu': Between(0.0, 10.0),
    'algorithm.ditto.lam': Between(0.0, 10.0),
    'algorithm.fedrep.head_steps': Between(1, 16, integer=True),
    'algorithm.local_ft.steps': Between(1, 16, integer=True),
    'algorithm.tap.margin': Between(0.0, 10.0),
    'algorithm.tap.distill_lambda': Between(0.0, 10.0),
    'algorithm.tap.finetune_steps': Between(1, 16, integer=True),
    'algorithm.tap.compare_examples': Between(0, 100_000, integer=True),
    'algorithm.ewc.lam': Between(0.0, 1000.0),
    'algorithm.ewc.rounds': OneOf(((), (10,))),
    'algorithm.mas.lam': Between(0.0, 1000.0),
    'algorithm.mas.rounds': OneOf(((), (10,))),
    'algorithm.lwf.rounds': OneOf(((), (10,))),
    'algorithm.lwf.heads': Between(0.0, 10.0),
    'algorithm.lwf.features': Between(0.0, 10.0),
    'algorithm.lwf.experts': Between(0.0, 10.0),
    'algorithm.lwf.temperature': Between(0.5, 10.0),
    'algorithm.temporal_gate.hidden': Between(1, 64, integer=True),
    # optimizers (both roles)
    **{f'{role}_optimizer.learning_rate': _RATE for role in ('client', 'server')},
    **{f'{role}_optimizer.sgd.momentum': _BETA for role in ('client', 'server')},
    **{f'{role}_optimizer.{name}.b1': _BETA for role in ('client', 'server')
       for name in ('adam', 'yogi', 'adagrad')},
    **{f'{role}_optimizer.{name}.b2': Between(0.0, 0.9999) for role in ('client', 'server')
       for name in ('adam', 'yogi')},
    **{f'{role}_optimizer.{name}.eps': Between(1e-9, 1.0) for role in ('client', 'server')
       for name in ('adam', 'yogi', 'adagrad')},
    # the client rate over the rounds (core/lr_schedule.py)
    'client_optimizer.schedule.kind': OneOf(tuple(resolve.literal('fedxr_jax.core.lr_schedule',
                                                                 'KINDS'))),
    'client_optimizer.schedule.rounds': Between(0, 100_000, integer=True),
    'client_optimizer.schedule.final_fraction': Between(0.0, 1.0),
    # aggregators
    'aggregator.trimmed_mean.beta': Between(0.0, 0.49),
    'aggregator.krum.num_byzantine': Between(0, 64, integer=True),
    'aggregator.multi_krum.num_byzantine': Between(0, 64, integer=True),
    'aggregator.multi_krum.num_selected': Between(0, 1024, integer=True),
    'aggregator.geometric_median.iterations': Between(1, 100, integer=True),
    'aggregator.geometric_median.smoothing': Between(1e-9, 1.0),
    'aggregator.centered_clipping.tau': Between(1e-6, 1e6),
    'aggregator.centered_clipping.iterations': Between(1, 100, integer=True),
    'aggregator.centered_clipping.center': OneOf(('global', 'momentum')),
    'aggregator.norm_bounding.max_norm': Between(1e-6, 1e6),
    # compression
    'compression.topk.fraction': Between(1e-4, 1.0),
    'compression.topk.scope': OneOf(('global', 'per_leaf')),
    'compression.qsgd.bits': Between(1, 16, integer=True),
    # topologies (the D2D radio graph is the scenario's: never open)
    'topology.hierarchical.num_edges': Between(1, 64, integer=True),
    'topology.hierarchical.k2': Between(1, 64, integer=True),
    'topology.semi.num_clusters': Between(1, 64, integer=True),
    'topology.semi.gamma': Between(0, 16, integer=True),
    'topology.semi.cluster_by': OneOf(('position', 'device', 'id')),
    'topology.semi.fallback': OneOf(('none', 'ring')),
    'topology.decentralized.gamma': Between(0, 16, integer=True),
}

PLAN_MODES = ('frozen', 'shared', 'personal')
_PROJECTIONS = ('query', 'key', 'value', 'out')

# The PEFT architecture (Table 4: LoRA, prompts, user prompts, adapters, MoE,
# full tuning), open within the track's Budget: these settings of the track's
# model block (`model.<name>.<setting>`, where the model has it); the
# foundation model itself (its name, size, width, depth, heads) stays frozen.
PEFT = {
    'lora_rank': Between(0, 64, integer=True),
    'lora_alpha': Between(0.0, 1024.0),
    'lora_targets': OneOf(tuple(c for n in range(1, 5)
                                for c in itertools.combinations(_PROJECTIONS, n))),
    'num_prompts': Between(0, 64, integer=True),
    'num_user_prompts': Between(0, 64, integer=True),
    'adapter_dim': Between(0, 256, integer=True),
    'num_experts': Between(0, 16, integer=True),
    'expert_top_k': Between(1, 4, integer=True),
    'moe_balance': Between(0.0, 1.0),
    # Solution 3: a library of modules each user composes, behaviour signatures
    'library_size': Between(0, 16, integer=True),
    'library_dim': Between(1, 64, integer=True),
    'library_select': Between(0, 16, integer=True),
    'signature_tokens': Between(0, 16, integer=True),
}
ARCHITECTURE = {
    'lora.hetlora_weights': OneOf((False, True)),
    # Solution 2: the inference path from the device's battery and compute state
    'resource_aware.policy': OneOf(('none', 'full', 'resource')),
    'resource_aware.low_battery': Between(0.0, 1.0),
    'resource_aware.full_battery': Between(0.0, 1.0),
    'resource_aware.latency_slack': Between(0.1, 10.0),
    # local steps of a compute-tier-1.0 device, within the Budget's compute seconds
    'local_steps': Between(1, 64, integer=True),
    # Closed-form heads before round 1 (algorithms/warm_start.py): one upload of
    # (d+1)(d+1+K) floats per task, far below a round's upload budget.
    'warm_start.heads': OneOf(('none', 'ridge')),
    'warm_start.ridge': Between(1e-6, 10.0),
    'warm_start.classifier_scale': Between(0.01, 100.0),
}


def limit(key: str, default):
  """The limit of a component's setting: written here, {False, True} for a
  boolean, else its default only."""
  if key in COMPONENTS:
    return COMPONENTS[key]
  if isinstance(default, bool):
    return OneOf((False, True))
  return OneOf((default,))
