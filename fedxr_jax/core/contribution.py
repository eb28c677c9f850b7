"""What a feature adds to a run, from its own config block.

Privacy, attacks, compression and LoRA rules are features: each turns its
config block into one `Contribution` (`contribute(block, run)` in its own
package), and the composition root assembles them (`compose.pipeline`):
transforms are chained in their declared `ORDER`, at most one feature takes
the place of the server's aggregator, wrappers apply in feature order, and
each feature checks the run's capabilities (`Capabilities`) itself: a
topology's `has_server`, an aggregator's `robust` and `dp_safe`, never a
component's name.
"""
from typing import Any, Callable, NamedTuple, Optional

from fedxr_jax.core import aggregation
from fedxr_jax.core import transforms as transforms_lib

# Where a feature's update transforms sit in a client's chain (transform i
# of the chain gets fold_in(key, i): the order is part of a run's numbers).
ORDER = {
    'attack': 10,        # a model-poisoning attacker changes what it trained
    'reweight': 20,      # HetLoRA's weights
    'compression': 30,   # what is sent
    'privacy': 40,       # last change: what is released is bounded by C, whatever came before
    'report': 90,        # reads, changes nothing (who is malicious, for omniscient attacks)
}


class Contribution(NamedTuple):
  """One feature's part of a run (every field optional)."""
  feature: str
  transforms: tuple = ()      # ((ORDER key, UpdateTransform), ...)
  # Takes the place of the configured aggregator (the DP mean, exact LoRA).
  aggregator: Optional[aggregation.Aggregator] = None
  # aggregator -> aggregator, after the choice (omniscient attacks).
  wrap_aggregator: Optional[Callable] = None
  # FederatedProblem -> FederatedProblem (data poisoning, marking attackers).
  wrap_problem: Optional[Callable] = None
  # seed -> {name: array}: data of the run's source, never constants of the
  # compiled round (the malicious set), so two seeds are one program.
  source_arrays: Optional[Callable] = None
  # What needs a server that sees every upload, for the refusal ('' : nothing).
  needs_server: str = ''
  # What weighs clients by their updates, for DP's refusal ('' : nothing).
  update_weights: str = ''
  # (Capabilities) -> None, raising ConfigError in one line.
  check: Optional[Callable] = None
  # The example-level DP hook of local training (`core.local`).
  private_grads: Optional[Callable] = None
  # rounds done -> {metric: value} known on the host (the accountant's epsilon).
  host_metrics: Optional[Callable] = None
  # (problem, params {role: tree}, source, seed key) -> params: round 0's trees from
  # the clients' data (closed-form heads, `algorithms.warm_start`).
  warm_start: Optional[Callable] = None
  info: Any = None            # the feature's own facts (DP: its `Privacy`)


class Capabilities(NamedTuple):
  """What a feature's check may read about the rest of the run."""
  topology: Any               # core.topology.Topology (has_server, own_models)
  aggregator: aggregation.Aggregator   # the configured one (robust, dp_safe)
  aggregator_name: str
  algorithm: Any              # core.algorithm.Algorithm
  others: tuple               # the other features' Contributions


def chain(contributions) -> transforms_lib.UpdateTransform:
  """Every contribution's transforms, in their declared order (stable within one)."""
  ordered = sorted(((ORDER[order], i, j), t) for i, c in enumerate(contributions)
                   for j, (order, t) in enumerate(c.transforms))
  return transforms_lib.chain(*[t for _, t in sorted(ordered, key=lambda x: x[0])])
