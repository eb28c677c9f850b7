"""Topologies by kind (`--config.topology.kind`), each built from its own block.

A kind's factory takes keyword settings (its `config.topology.<kind>`
block; the defaults are the factory's), plus the run's facts, the
problem's geography, the channel, and (for kinds with D2D links) the
`config.topology.d2d` radio graph.
"""
import dataclasses

from fedxr_jax.core import registry
from fedxr_jax.errors import ConfigError
from fedxr_jax.topology import centralized
from fedxr_jax.topology import channel as channel_lib
from fedxr_jax.topology import decentralized
from fedxr_jax.topology import hierarchical
from fedxr_jax.topology import layout
from fedxr_jax.topology import semi
from fedxr_jax.topology import tree

TOPOLOGIES = {
    'centralized': centralized.make,
    'hierarchical': hierarchical.make,
    'semi': semi.make,
    'decentralized': decentralized.make,
    'tree': tree.make,
}
# Kinds whose clients talk over D2D links (they take the d2d block).
USES_D2D = ('semi', 'decentralized', 'tree')
# Kinds with a central server that runs the round's aggregator.
CENTRAL = ('centralized',)


def default_config() -> dict:
  """The `config.topology` block: kind, the D2D radio graph, one block per kind."""
  d2d = {f.name: f.default for f in dataclasses.fields(layout.D2D)}
  return {'kind': 'centralized', 'd2d': d2d,
          **{k: registry.settings(f) for k, f in TOPOLOGIES.items()}}


def make(block, *, facts, geography, channel: channel_lib.Channel):
  """The topology `block.kind` with its own settings from `block.<kind>`."""
  kind = block['kind']
  factory = registry.pick(TOPOLOGIES, kind, 'topology.kind')
  context = {'facts': facts, 'geography': geography, 'channel': channel}
  if kind in USES_D2D:
    d2d = dict(block['d2d'])
    unknown = sorted(set(d2d) - {f.name for f in dataclasses.fields(layout.D2D)})
    if unknown:
      raise ConfigError(f'topology.d2d has no setting(s) {unknown}')
    context['d2d'] = layout.D2D(**d2d)
  return registry.make(factory, block[kind], f'topology.{kind}', **context)
