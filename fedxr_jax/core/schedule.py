"""Budget-aware scheduling of the vectorized local stage.

A vmapped chunk of clients runs local steps until its largest step budget
(`core.local`: a while_loop masks the finished clients), so a chunk that
mixes a 1-step glasses client with an 8-step headset pays 8 steps for both.
Ordering the cohort by budget before chunking puts similar budgets in one
chunk (`vectorize.map_clients(order=...)`); the per-client outputs go back
to cohort order.

The order is a pure function of the round's data (a stable argsort of the
budgets), and every client computes exactly what it computed unsorted.
What adds over clients may round differently: the streamed sums (the
aggregator's, transform stats) take the clients in another order, and a
cohort mean of per-client stats may compile to another summation order
(1 ulp seen with all budgets equal). Budgets that cannot differ between
clients (a constant) skip the sort: the same program, bit for bit.

With a client mesh each chunk is split over the devices and its loop runs
to the chunk's largest budget on every device, so every device does the
same number of steps: sorting cannot leave the slow clients on one device.
"""
from typing import Optional

import jax
import jax.numpy as jnp
from jax.extend import core as jax_core

from fedxr_jax.core import client as client_lib


def cohort_order(stage, source, cohort, round_idx, *, chunk_size: int,
                 enabled: bool = True) -> Optional[jax.Array]:
  """The order the chunks take the cohort in (`vectorize.map_clients`), or None.

  None (cohort order) when it cannot pay: one chunk runs to its largest
  budget anyway, and budgets that cannot differ between clients (a
  constant, e.g. data.hardware.compute_budgets=False) sort to no change.
  """
  if not (enabled and 0 < chunk_size < cohort.shape[0]):
    return None
  if not budgets_vary(stage, source, round_idx):
    return None
  return budget_order(cohort_budgets(stage, source, cohort, round_idx))


def budget_order(budgets) -> jax.Array:
  """[C] cohort positions by ascending budget; ties keep cohort order."""
  return jnp.argsort(budgets, stable=True)


def _budget(stage, source, client_id, round_idx):
  return client_lib.round_data(stage, source, client_id, round_idx)[0]['step_budget']


def cohort_budgets(stage, source, cohort, round_idx) -> jax.Array:
  """[C] step budgets of the cohort this round (0 where unavailable).

  A vmapped `client.round_data` of which only the budget is used: XLA drops
  the unused example rendering, so this pass costs the budget's math only.
  """
  return jax.vmap(lambda c: _budget(stage, source, c, round_idx))(cohort)


def budgets_vary(stage, source, round_idx) -> bool:
  """Whether a client's budget depends on the client or the data (static).

  Traced, not run: False when the budget is a function of the round and
  constants only.
  """
  spec = lambda x: jax.ShapeDtypeStruct(
      jnp.shape(x), x.dtype if hasattr(x, 'dtype') else jnp.result_type(x))
  closed = jax.make_jaxpr(lambda src, c, r: _budget(stage, src, c, r))(
      jax.tree.map(spec, source), jax.ShapeDtypeStruct((), jnp.int32), spec(round_idx))
  jaxpr = closed.jaxpr
  depends = set(jaxpr.invars[:-1])   # the source's leaves and the client id
  for eqn in jaxpr.eqns:
    if any(isinstance(v, jax_core.Var) and v in depends for v in eqn.invars):
      depends.update(eqn.outvars)
  return any(isinstance(v, jax_core.Var) and v in depends for v in jaxpr.outvars)
