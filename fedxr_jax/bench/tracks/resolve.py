"""The resolved config: only the blocks a run uses, read from the registries.

A registry-backed section holds a selector (`aggregator.name`) and one block
per registered component (`aggregator.krum`, `aggregator.median`, ...); a
run uses only the selected one. `active(flat)` drops the others (dormant
blocks), so a frozen hash over it changes when the chosen component's
settings change and never when a component is registered. Sections and
their registries:

  model              name    models/registry.py MODELS
  algorithm          name    algorithms/registry.py ALGORITHMS (+ PRESETS: FedAvg's block)
  aggregator         name    aggregators/registry.py AGGREGATORS
  topology           kind    topology/registry.py TOPOLOGIES
  compression        name    transforms/registry.py COMPRESSORS
  attack             model   transforms/registry.py ATTACKS, attacks/feature.py OMNISCIENT
  client_optimizer   name    compose/optimizers.py OPTIMIZERS[('client', name)]
  server_optimizer   name    compose/optimizers.py OPTIMIZERS[('server', name)]

and blocks used only for some selections: `topology.d2d` (the kinds in
topology/registry.py USES_D2D), `attack.backdoor` (attack.data =
'backdoor') and `warm_start` (warm_start.heads other than 'none'). Names are read from the registry modules' source (the way
configs/blocks.py reads defaults), so nothing here imports jax.
"""
import ast
import dataclasses
import functools
import os
from typing import Mapping, Optional

from fedxr_jax.configs import blocks


@dataclasses.dataclass(frozen=True)
class Section:
  name: str                  # the config block, e.g. 'aggregator'
  selector: str              # its key naming the component, e.g. 'name'
  tables: tuple              # ((module, dict literal, role or None), ...)
  aliases: tuple = ()        # (module, dict literal): names that use `alias_block`
  alias_block: str = ''
  nothing: tuple = ()        # selector values that choose no component ('none')


@dataclasses.dataclass(frozen=True)
class Conditional:
  """A block used only when `selector` (a dotted key) is one of `values`."""
  block: str
  selector: str
  values: tuple


_OPT = 'fedxr_jax.compose.optimizers'
SECTIONS = (
    Section('model', 'name', (('fedxr_jax.models.registry', 'MODELS', None),)),
    Section('algorithm', 'name', (('fedxr_jax.algorithms.registry', 'ALGORITHMS', None),),
            aliases=(('fedxr_jax.algorithms.registry', 'PRESETS'),), alias_block='fedavg'),
    Section('aggregator', 'name', (('fedxr_jax.aggregators.registry', 'AGGREGATORS', None),)),
    Section('topology', 'kind', (('fedxr_jax.topology.registry', 'TOPOLOGIES', None),)),
    Section('compression', 'name', (('fedxr_jax.transforms.registry', 'COMPRESSORS', None),),
            nothing=('none',)),
    Section('attack', 'model', (('fedxr_jax.transforms.registry', 'ATTACKS', None),
                                ('fedxr_jax.attacks.feature', 'OMNISCIENT', None)),
            nothing=('none',)),
    Section('client_optimizer', 'name', ((_OPT, 'OPTIMIZERS', 'client'),)),
    Section('server_optimizer', 'name', ((_OPT, 'OPTIMIZERS', 'server'),)),
)


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(blocks.__file__)))   # .../fedxr_jax


def literal(module: str, name: str):
  """A module-level literal assignment's value, read from the source (no import)."""
  path = os.path.join(_ROOT, *module.split('.')[1:]) + '.py'
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  for node in tree.body:
    if isinstance(node, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == name for t in node.targets):
      return ast.literal_eval(node.value)
  raise ValueError(f'{module} has no literal {name}')


@functools.lru_cache(maxsize=None)
def _conditionals() -> tuple:
  return (Conditional('topology.d2d', 'topology.kind',
                      tuple(literal('fedxr_jax.topology.registry', 'USES_D2D'))),
          Conditional('attack.backdoor', 'attack.data', ('backdoor',)),
          # A feature block whose selector is inside it: off, the whole block is dormant
          # (so adding the feature changed no track's frozen part).
          Conditional('warm_start', 'warm_start.heads', tuple(
              m for m in literal('fedxr_jax.algorithms.warm_start', 'MODES') if m != 'none')),
          Conditional('client_optimizer.schedule', 'client_optimizer.schedule.kind', tuple(
              k for k in literal('fedxr_jax.core.lr_schedule', 'KINDS') if k != 'constant')))


def conditionals() -> tuple:
  return _conditionals()


def component_names(section: Section) -> tuple:
  """The registered components of a section, in registry order (read each call:
  a registered component appears at once)."""
  out = []
  for module, table, role in section.tables:
    for key in blocks.registry_names(module, table):
      if role is None:
        out.append(key)
      elif key[0] == role:
        out.append(key[1])
  return tuple(dict.fromkeys(out))


def alias_names(section: Section) -> tuple:
  return tuple(n for module, table in section.aliases
               for n in blocks.registry_names(module, table))


def selectable(section: Section) -> tuple:
  """What the selector may name: nothing, the components and their aliases (presets)."""
  return section.nothing + component_names(section) + alias_names(section)


def section(name: str) -> Optional[Section]:
  return next((s for s in SECTIONS if s.name == name), None)


def _block_of(key: str, section_name: str, names: tuple) -> Optional[str]:
  """The component whose block holds `key` ('aggregator.krum.f' -> 'krum'), or None."""
  rest = key[len(section_name) + 1:]
  head = rest.split('.', 1)[0]
  return head if '.' in rest and head in names else None


def dormant_keys(flat: Mapping) -> set:
  """The keys of `flat` (a flattened config) in blocks its selections leave unused."""
  out = set()
  for s in SECTIONS:
    chosen = flat.get(f'{s.name}.{s.selector}')
    if chosen is None:
      continue
    names = component_names(s)
    if chosen in alias_names(s):
      chosen = s.alias_block
    for key in flat:
      if key.startswith(s.name + '.'):
        owner = _block_of(key, s.name, names)
        if owner is not None and owner != chosen:
          out.add(key)
  for c in conditionals():
    if c.selector in flat and flat[c.selector] not in c.values:
      out.update(k for k in flat if k.startswith(c.block + '.'))
  return out


def active(flat: Mapping) -> dict:
  """`flat` without its dormant keys."""
  dormant = dormant_keys(flat)
  return {k: v for k, v in flat.items() if k not in dormant}
