"""Between local training and the server: what the run's features contribute.

Each feature turns its own config block into a `Contribution`
(`core.contribution`): privacy (`privacy.feature`), attacks
(`attacks.feature`), compression (`transforms.registry.contribute`) and the
LoRA rules (`algorithms.lora_feature`). Here they are assembled:
  transforms   chained in their declared order (attack, HetLoRA weights,
               compression, DP last, reports);
  aggregator   the configured one (`aggregator.name`), or the one a feature
               puts in its place (the DP mean, exact LoRA), then wrapped
               (omniscient attacks);
  problem      wrapped by the features in turn (attackers marked, data
               poisoned);
  source       the features' arrays of the seed (the malicious set).
What a feature needs is checked against capabilities (`Capabilities`):
a server that sees every upload first, then each feature's own check.
"""
from typing import NamedTuple

import jax

from fedxr_jax.aggregators import registry as aggregator_registry
from fedxr_jax.algorithms import lora_feature
from fedxr_jax.algorithms import resource_aware
from fedxr_jax.algorithms import warm_start
from fedxr_jax.attacks import feature as attack_feature
from fedxr_jax.core import contribution as contribution_lib
from fedxr_jax.core.contribution import Capabilities
from fedxr_jax.data.world import robustness
from fedxr_jax.errors import ConfigError
from fedxr_jax.privacy import feature as privacy_feature
from fedxr_jax.transforms import registry as transform_registry

# (config block, contribute): the order wrappers and checks run in (the data's own
# corruptions first, then who attacks with it).
FEATURES = (('data.robustness', robustness.contribute),
            ('privacy', privacy_feature.contribute), ('attack', attack_feature.contribute),
            ('compression', transform_registry.contribute), ('lora', lora_feature.contribute),
            # Each example's inference path from its device's state (issue 23, S2).
            ('resource_aware', resource_aware.contribute),
            # Closed-form heads from the first cohort's features, before round 1.
            ('warm_start', warm_start.contribute))


class RunContext(NamedTuple):
  """What a feature may know of the run besides its own block."""
  facts: object        # core.algorithm.RunFacts: sizes, plan, tasks
  num_rounds: int
  spec: object         # the data's spec: modalities, tasks, num_classes, devices
  model: object        # the ModelDef (its LoRA rank and scale)
  problem: object      # the FederatedProblem (example counts for DP-SGD)
  source: object       # the run's data


def contributions(config, run: RunContext) -> tuple:
  """Every feature's contribution from its block (in `FEATURES` order)."""
  def block(dotted):
    value = config
    for part in dotted.split('.'):
      value = value[part]
    return value
  return tuple(contribute(block(name), run) for name, contribute in FEATURES)


def wrap_problem(problem, contributed):
  for c in contributed:
    if c.wrap_problem is not None:
      problem = c.wrap_problem(problem)
  return problem


def source(world: dict, contributed, seed: int) -> dict:
  """The run's source: the data, and the features' arrays of this seed."""
  extra = {}
  for c in contributed:
    if c.source_arrays is not None:
      extra.update(c.source_arrays(seed))
  return {**world, **jax.device_put(extra)} if extra else world


def assemble(config, contributed, topology, algorithm):
  """(transform chain, server aggregator) after every check (one ConfigError line)."""
  name = config.aggregator.name
  configured = aggregator_registry.make(config.aggregator, config.cohort_size)
  if not topology.has_server:
    needs = ([f'aggregator.name={name}'] if name != 'mean' else []) + [
        c.needs_server for c in contributed if c.needs_server]
    if needs:
      raise ConfigError(f'not supported yet: {needs[0]} with topology.kind={topology.kind} '
                        '(it needs a central server that sees every upload)')
  for i, c in enumerate(contributed):
    if c.check is not None:
      c.check(Capabilities(topology, configured, name, algorithm,
                           contributed[:i] + contributed[i + 1:]))
  replacing = [c.aggregator for c in contributed if c.aggregator is not None]
  aggregator = replacing[0] if replacing else configured
  for c in contributed:
    if c.wrap_aggregator is not None:
      aggregator = c.wrap_aggregator(aggregator)
  return contribution_lib.chain(contributed), aggregator


def feature_info(contributed, feature: str):
  return next(c.info for c in contributed if c.feature == feature)


def private_grads(contributed):
  return next((c.private_grads for c in contributed if c.private_grads is not None), None)


def warm_start_fn(contributed):
  return next((c.warm_start for c in contributed if c.warm_start is not None), None)


def host_metrics(contributed, rounds_done: int) -> dict:
  out = {}
  for c in contributed:
    if c.host_metrics is not None:
      out.update(c.host_metrics(rounds_done))
  return out
