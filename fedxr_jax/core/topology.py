"""The interface of a coordination topology (implementations: `fedxr_jax.topology`).

A topology says how the cohort's models become the next global model and
what that costs on the air. It is one object per kind:

  layout(round_idx, cohort) -> (topo, graph_stats)      host, numpy
      this round's fixed-shape arrays (positions, clusters, a padded D2D
      edge list, tree parents...): a pure function of (seed, round)
  init(shared, weight_template) -> state
  client_start(shared, state, topo) -> start models [C, ...] or None
      (None: every client starts from the global `shared`)
  aggregate(shared, state, uploads, topo, round_idx, aggregator, aggregator_state,
            key) -> Aggregated
      `uploads` holds the cohort's uploads: `sums` when the round streamed
      them (`streams(aggregator)`), else `stacked` [C, ...]; a topology with
      a central server runs `aggregator` there
  after_server(new_shared, state, sync) -> state
  costs(devices, link_bits, topo, key, sync) -> {metric: scalar}
      devices: per-client [C] arrays compute_s, compute_power_w,
      tx_power_dbm; link_bits: what `aggregate` said moved
  own_models(state, client_ids) -> stacked models, or None (the global one)

`uses_server_optimizer`: whether the server optimizer steps on the target
(decentralized: there is no server). `has_server`: a server sees every
client's upload (what robust aggregators, client-level DP and omniscient
attacks need; hierarchical clouds see edge aggregates only). `streams(aggregator)`: whether this
topology consumes streamed sums from that aggregator.
"""
from typing import Any, Callable, NamedTuple, Optional


class Uploads(NamedTuple):
  sums: Any = None           # the aggregator's streamed sums, summed over the cohort
  stacked: Any = None        # `aggregation.ClientUpdate` stacked [C, ...]
  upload_bits: Any = None    # [C] bits each client sends (its held modules)
  download_bits: Any = None  # [C] bits each client receives to train


class Aggregated(NamedTuple):
  target: dict          # {role: tree} the model the server steps towards
  state: Any            # the topology's new state
  sync: Any             # bool scalar: does the server step (and fold) this round
  link_bits: dict       # {link: bits array} what moved, for `costs`
  metrics: dict         # extra metrics (consensus distance, ...)
  aggregator_state: Any  # the aggregator's new state (passed through without a server)


class Topology(NamedTuple):
  kind: str
  layout: Callable
  init: Callable
  client_start: Callable
  aggregate: Callable
  after_server: Callable
  costs: Callable
  uses_server_optimizer: bool = True
  has_server: bool = False
  streams: Callable = lambda aggregator: False
  own_models: Optional[Callable] = None
