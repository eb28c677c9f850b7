"""Server aggregators by name (`--config.aggregator.name`), each with its own block.

  mean               the masked, example-weighted mean (streamed; the default)
  median             coordinate-wise median over each module's holders
  trimmed_mean       coordinate-wise mean after trimming beta from each side
  krum, multi_krum   the client(s) closest to their n - f - 2 neighbours
  geometric_median   smoothed Weiszfeld (RFA)
  centered_clipping  iterated clipped steps around the global model
  norm_bounding      each update scaled to norm <= max_norm, then the mean
Omniscient attacks (ALIE, IPM: `attack.model`) wrap whichever is chosen.
All of them need a central server (`topology.CENTRAL`).
"""
from typing import Optional

from fedxr_jax.aggregators import centered_clipping
from fedxr_jax.aggregators import geometric_median
from fedxr_jax.aggregators import krum
from fedxr_jax.aggregators import median
from fedxr_jax.aggregators import norm_bounding
from fedxr_jax.aggregators import trimmed_mean
from fedxr_jax.core import aggregation
from fedxr_jax.core import registry


def mean() -> aggregation.Aggregator:
  return aggregation.weighted_mean()


def multi_krum(num_byzantine: int = 1, num_selected: int = 0) -> aggregation.Aggregator:
  """num_selected = 0: n - f (Blanchard et al.'s default)."""
  return krum.multi_krum(num_byzantine, num_selected or None)


AGGREGATORS = {
    'mean': mean,
    'median': median.median,
    'trimmed_mean': trimmed_mean.trimmed_mean,
    'krum': krum.krum,
    'multi_krum': multi_krum,
    'geometric_median': geometric_median.geometric_median,
    'centered_clipping': centered_clipping.centered_clipping,
    'norm_bounding': norm_bounding.norm_bounding,
}
# Those whose output a single client's update cannot move by more than its
# clipped norm over the fixed denominator: only the DP mean keeps DP's bound.
ROBUST = tuple(n for n in AGGREGATORS if n != 'mean')


def default_config() -> dict:
  return {'name': 'mean', **{n: registry.settings(f) for n, f in AGGREGATORS.items()}}


def make(block, cohort_size: int) -> Optional[aggregation.Aggregator]:
  """The aggregator `block.name` with its own settings (None: the default mean)."""
  name = block['name']
  factory = registry.pick(AGGREGATORS, name, 'aggregator.name')
  own = block[name]
  if name in ('krum', 'multi_krum'):
    krum.check_cohort(cohort_size, own['num_byzantine'])
  return registry.make(factory, own, f'aggregator.{name}')
