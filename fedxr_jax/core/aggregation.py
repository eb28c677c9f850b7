"""Aggregators: how the clients' sent models become a target per module.

Two paths, chosen by the aggregator:
  streamed  each client's `contribute(client)` is summed over the cohort
            inside the chunk loop (no C copies of a model are ever stacked);
            `aggregate(shared, state, sums, key)` turns the sums into the
            target. The example-weighted mean is this.
  stacked   `contribute` is None: the round stacks every client's
            `ClientUpdate` [C, ...] and `aggregate(shared, state, stacked,
            key)` sees them all (coordinate-wise median, Krum, ...).
Either way a module (a weight leaf of the weight prefix tree) is combined
only over clients with positive weight, and keeps its value when none holds
it. `after_server(shared, state, sums)` may change the new global trees
after the server step, where the round syncs (exact LoRA folds its residual
there); `sums` are the streamed sums (None on the stacked path).

Aggregators run where a central server combines clients (topology kinds
that say so); their `key` is the round's aggregation key (DP noise).
"""
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from fedxr_jax.core import trees


class ClientUpdate(NamedTuple):
  """One client's upload (stacked [C, ...] on the stacked path)."""
  model: dict      # {role: tree} the shared trees it sends (start + update)
  update: dict     # {role: tree} the update (after transforms)
  weights: dict    # {role: prefix tree of weights}: its module weights
  client_id: Any   # int32 scalar
  # What its update transforms report with it ({name: scalar}, e.g. whether
  # DP clipping scaled it: adaptive clipping counts those on the server).
  stats: dict = {}


def _no_state(shared):
  del shared
  return {}


class Aggregator(NamedTuple):
  name: str
  # (shared, state, sums | stacked ClientUpdate, key) -> (target, state, metrics)
  aggregate: Callable
  # Optional ClientUpdate -> tree summed over clients (None: stacked path).
  contribute: Optional[Callable] = None
  # shared -> aggregator state on the server ({} when stateless).
  init: Callable = _no_state
  # Optional (new shared, state, sums) -> shared, where the round syncs.
  after_server: Optional[Callable] = None
  # Capabilities the compatibility checks read (never a name):
  # robust   breakdown point 1/2: withstands any minority of malicious clients;
  # dp_safe  a linear, example-weighted mean: client-level DP's mean (its
  #          output moves by at most C / m per client) may take its place.
  robust: bool = False
  dp_safe: bool = False

  @property
  def stacked(self) -> bool:
    return self.contribute is None


def scale_modules(weights: dict, tree: dict) -> dict:
  """w * x per module (weights: a prefix tree of `tree`)."""
  return jax.tree.map(
      lambda w, sub: jax.tree.map(lambda x: trees.expand_weight(w, x) * x, sub), weights, tree)


def ratio_modules(num: dict, den: dict, fallback: dict) -> dict:
  """num / den per module, `fallback` where den = 0."""
  def divide(d, n, f):
    d = trees.expand_weight(d, n)
    return jnp.where(d > 0, n / jnp.where(d > 0, d, 1.0), f)
  return jax.tree.map(
      lambda d, n_sub, f_sub: jax.tree.map(lambda n, f: divide(d, n, f), n_sub, f_sub),
      den, num, fallback)


def weighted_terms(models: dict, weights: dict) -> dict:
  """{role: (w x, w)} of one client: summed over clients they give the mean."""
  return {r: (scale_modules(weights[r], models[r]), weights[r]) for r in models}


def weighted_mean() -> Aggregator:
  """The masked, example-weighted mean sum_i w_i x_i / sum_i w_i, streamed."""

  def contribute(client: ClientUpdate):
    return weighted_terms(client.model, client.weights)

  def aggregate(shared, state, sums, key):
    del key
    return {r: ratio_modules(sums[r][0], sums[r][1], shared[r]) for r in shared}, state, {}

  return Aggregator('mean', aggregate, contribute, dp_safe=True)


def stacked_weighted_mean() -> Aggregator:
  """The same mean on the stacked path (a reference for stacked aggregators)."""

  def aggregate(shared, state, stacked: ClientUpdate, key):
    del key
    return {r: trees.aggregate_modules(stacked.model[r], stacked.weights[r], shared[r])
            for r in shared}, state, {}

  return Aggregator('stacked_mean', aggregate)


def per_module(fn: Callable, stacked: ClientUpdate, shared: dict, *, use: str = 'model'):
  """Applies fn(x [C, ...], w [C, ...], old) -> new to every module.

  `x` is every leaf under a weight leaf, stacked over clients (the sent
  model, or with use='update' the update); `w` is the module's weight
  leaf. A stacked aggregator that combines module by module is this
  plus its own fn; fn must keep `old` where no client has w > 0.
  """
  values = stacked.model if use == 'model' else stacked.update
  return {r: jax.tree.map(lambda w, sub, old: jax.tree.map(lambda x, o: fn(x, w, o), sub, old),
                          stacked.weights[r], values[r], shared[r])
          for r in shared}
