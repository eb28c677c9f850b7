"""What tracks share: how a frozen part is made from a config, and the open part.

A track is a base config (the default plus the track's overrides). Its
frozen part is every key of the resolved base config (`resolve.active`:
only the selected component's block of each registry-backed section) except
the open keys (the method's own knobs and PEFT architecture, within stated
limits) and the infrastructure keys that cannot change a number of the
run's results on a device kind. Registering a component adds a dormant
block and an open choice, never a frozen key. A code change that alters a
frozen value changes the track's frozen hash, which tests/test_tracks.py
pins for published tracks: bump the track's version then.
"""
from typing import Callable, Mapping

import ml_collections

from fedxr_jax.bench.track import OneOf
from fedxr_jax.bench.tracks import bounds
from fedxr_jax.bench.tracks import resolve

# Keys an entry may set freely: they change no result (or, chunking and
# rounds per call, only how the same math is split: bit-identical on a
# device kind, float32 rounding across layouts), and the seed the runner sets.
INFRASTRUCTURE = ('seed', 'chunk_size', 'rounds_per_call', 'checkpoint_every',
                  'max_checkpoints', 'plot', 'memory_budget_gb', 'eval.tensorboard',
                  'eval.client_table', 'eval.measure_latency', 'eval.latency_repeats')

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
  """Every key of the resolved base config but the open and infrastructure ones.

  A block used only for some selections (`resolve.conditionals`: the D2D
  radio graph) stays frozen where the entry may make that selection: it is
  the scenario's, not the method's.
  """
  flat = flatten(base().to_dict())
  dormant = resolve.dormant_keys(flat)
  for c in resolve.conditionals():
    if c.selector in open_keys:
      dormant -= {k for k in flat if k.startswith(c.block + '.')}
  return {k: v for k, v in sorted(flat.items())
          if k not in dormant and k not in open_keys and k not in INFRASTRUCTURE}


def open_sections(base: Callable, *names: str) -> dict:
  """The open part of whole sections: the selector within the registry's names,
  each component's settings within `bounds` (every registered component, so a
  new one is open at once)."""
  flat = flatten(base().to_dict())
  out = {}
  for name in names:
    section = resolve.section(name)
    out[f'{name}.{section.selector}'] = OneOf(resolve.selectable(section))
    for component in resolve.component_names(section):
      prefix = f'{name}.{component}.'
      for key in sorted(k for k in flat if k.startswith(prefix)):
        out[key] = bounds.limit(key, flat[key])
    for key in sorted(k for k in flat if k.startswith(name + '.')):
      if key not in out and key in bounds.COMPONENTS:   # e.g. the optimizers' learning rate
        out[key] = bounds.COMPONENTS[key]
  return out


def model_prefix(flat: Mapping) -> str:
  """Where the track's model settings are: `model.<name>.` (a registry-backed
  model block), or `model.` where the config has no model.name."""
  name = flat.get('model.name')
  return f'model.{name}.' if name is not None else 'model.'


def architecture(base: Callable) -> dict:
  """The PEFT architecture and tuning plan (Table 4), open within a Budget."""
  flat = flatten(base().to_dict())
  plan = {k: OneOf(bounds.PLAN_MODES) for k in sorted(flat) if k.startswith('plan.')}
  rules = resolve.literal('fedxr_jax.algorithms.lora_rules', 'RULES')
  prefix = model_prefix(flat)
  peft = {prefix + k: limit for k, limit in bounds.PEFT.items() if prefix + k in flat}
  return {**plan, 'lora.rule': OneOf(tuple(rules)), **peft, **bounds.ARCHITECTURE}


def method(base: Callable) -> dict:
  """What every v2 track opens: the algorithm, both optimizers, the PEFT architecture."""
  return {**open_sections(base, 'algorithm', 'client_optimizer', 'server_optimizer'),
          **architecture(base)}
