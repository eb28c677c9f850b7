"""Krum and multi-Krum (Blanchard et al. 2017).

Scores are computed over the whole update of a client: the concatenation
of all its shared trees, with the coordinates it does not hold (weight 0)
counted as a zero update: a module a client does not send changes nothing,
and this keeps the distance a true Euclidean one on fixed shapes. Only
clients that hold some module are candidates (n of them this round).

score_i = sum of the squared distances from i to its n - f - 2 nearest
other candidates; the m best scores are selected (Krum: m = 1; multi-Krum:
m = n - f unless given, scores computed once as in the paper) and each
module is the weighted mean of the selected clients that hold it (per slice
for [C, E] weights); a module none of them holds keeps its value.

Krum needs n > 2f + 2; the factory cannot know the cohort, so
`check_cohort` checks it (the aggregator also checks the stacked cohort
size when traced). If availability leaves fewer candidates in a round, the
neighbour count is clipped to [1, n - 1] rather than failing.
"""
from typing import Optional

import jax
import jax.numpy as jnp

from fedxr_jax.core import aggregation
from fedxr_jax.core import held
from fedxr_jax.core import trees
from fedxr_jax.errors import ConfigError


def check_cohort(cohort_size: int, num_byzantine: int):
  if cohort_size <= 2 * num_byzantine + 2:
    raise ConfigError(
        f'krum needs more than 2f + 2 = {2 * num_byzantine + 2} clients a round '
        f'(f = num_byzantine = {num_byzantine}), got a cohort of {cohort_size}')


def sq_distances(stacked: aggregation.ClientUpdate) -> jax.Array:
  """[C, C] squared distances of the zero-filled updates, via their Gram matrix."""
  filled = held.map_modules(
      lambda w, u: jnp.where(held.mask(w, u), u.astype(jnp.float32), 0.0),
      stacked.weights, stacked.update)
  flat = [x.reshape(x.shape[0], -1) for x in jax.tree.leaves(filled)]
  gram = sum(jnp.matmul(x, x.T, precision=jax.lax.Precision.HIGHEST) for x in flat)
  sq = jnp.diagonal(gram)
  return jnp.maximum(sq[:, None] + sq[None, :] - 2 * gram, 0.0)


def select(dist, candidate, num_byzantine: int, num_selected: Optional[int]):
  """Bool [C]: the candidates with the m best Krum scores (ties: lower index)."""
  size = dist.shape[0]
  n = jnp.sum(candidate, dtype=jnp.int32)
  pair = candidate[:, None] & candidate[None, :] & ~jnp.eye(size, dtype=bool)
  nearest = jnp.sort(jnp.where(pair, dist, jnp.inf), axis=1)
  neighbours = jnp.clip(n - num_byzantine - 2, 1, n - 1)
  close = jnp.arange(size)[None, :] < neighbours
  score = jnp.where(candidate, jnp.sum(jnp.where(close, nearest, 0.0), axis=1), jnp.inf)
  m = n - num_byzantine if num_selected is None else jnp.minimum(num_selected, n)
  rank = jnp.argsort(jnp.argsort(score, stable=True), stable=True)
  return candidate & (rank < jnp.maximum(m, 1))


def multi_krum(num_byzantine: int = 1, num_selected: Optional[int] = None,
               name: str = 'multi_krum') -> aggregation.Aggregator:
  """Averages the m clients with the best Krum scores (m = n - f by default)."""
  if num_byzantine < 0:
    raise ConfigError(f'aggregator.{name}.num_byzantine must be >= 0, got {num_byzantine}')
  if num_selected is not None and num_selected < 1:
    raise ConfigError(f'aggregator.{name}.num_selected must be >= 1, got {num_selected}')

  def aggregate(shared, state, stacked, key):
    del key
    check_cohort(stacked.client_id.shape[0], num_byzantine)
    chosen = select(sq_distances(stacked), held.holds_any(stacked.weights, 1),
                    num_byzantine, num_selected)

    def mean(w, sub, old):
      keep = chosen.reshape(chosen.shape + (1,) * (w.ndim - 1)).astype(w.dtype)
      return trees.masked_weighted_mean(sub, w * keep, old)

    target = {r: jax.tree.map(mean, stacked.weights[r], stacked.model[r], shared[r])
              for r in shared}
    return target, state, {}

  return aggregation.Aggregator(name, aggregate, robust=True)


def krum(num_byzantine: int = 1) -> aggregation.Aggregator:
  """The single client with the best Krum score."""
  return multi_krum(num_byzantine, num_selected=1, name='krum')
