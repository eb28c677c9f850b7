"""The plan stage: who trains in a round, and on which graph.

A `RoundPlan` is computed once per round, on the host, and shared by the
compiled round, the host-side layout statistics and evaluation, so the
cohort is sampled once. Everything in it is a pure function of (seed,
round): a resumed run sees the same plans. Plans of several rounds stack
along a leading axis for `Federation.rounds` (several rounds in one call).
"""
from typing import Callable, NamedTuple

import jax
import numpy as np

from fedxr_jax.core import rng


class RoundPlan(NamedTuple):
  cohort: jax.Array   # [C] int32: ids of this round's clients, sorted
  topo: dict          # the topology's fixed-shape arrays of this round


def cohort_sampler(seed: int, population_size: int, cohort_size: int) -> Callable:
  """round_idx -> [C] numpy cohort (jitted once)."""
  key_data = jax.device_put(rng.key_data(seed))
  fn = jax.jit(lambda k, r: rng.sample_cohort(rng.run_key(k), r, population_size,
                                              cohort_size))
  # Explicit transfers both ways: plans are made on the host, ahead of their call.
  return lambda round_idx: np.asarray(jax.device_get(fn(key_data,
                                                        jax.device_put(np.int32(round_idx)))))


def make_plan(sample_cohort: Callable, layout: Callable, round_idx: int):
  """(RoundPlan of a round, host-side graph statistics)."""
  cohort = sample_cohort(round_idx)
  topo, stats = layout(round_idx, cohort)
  return RoundPlan(cohort=cohort, topo=topo), stats


def stack(plans) -> RoundPlan:
  """Plans of consecutive rounds stacked [K, ...] (they share shapes)."""
  return jax.tree.map(lambda *xs: np.stack(xs), *plans)
