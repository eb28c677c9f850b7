"""Top-k sparsification with error feedback (Stich et al. 2018; Lin et al. 2018, DGC).

Keeps the k largest-magnitude coordinates of the error-corrected update,
among those the client holds. scope='global': k = ceil(fraction * D) over
the concatenation of all shared trees (D coordinates; a client holding less
than k sends all it holds); scope='per_leaf': k = ceil(fraction * size) in
every leaf. 'upload_bits' = kept values x (32 + ceil(log2(D))) bits, an
index addressing the concatenated (or, per leaf, the leaf's) coordinates.
"""
import math

import jax
import jax.numpy as jnp

from fedxr_jax.core import transforms
from fedxr_jax.errors import ConfigError
from fedxr_jax.transforms import _feedback

SCOPES = ('global', 'per_leaf')
VALUE_BITS = 32


def index_bits(size: int) -> int:
  """ceil(log2(size)): bits of an index into `size` coordinates."""
  return (size - 1).bit_length()


def _keep(scores, fraction):
  """Bool like `scores` (1-D, held coordinates >= 0, others -1): the top k held ones."""
  k = min(scores.size, max(1, math.ceil(fraction * scores.size)))
  _, idx = jax.lax.top_k(scores, k)
  return jnp.zeros(scores.shape, bool).at[idx].set(True) & (scores >= 0)


def keep_mask(full: dict, mask: dict, fraction: float, scope: str) -> dict:
  scores = jax.tree.map(lambda c, m: jnp.where(m, jnp.abs(c), -1.0), full, mask)
  if scope == 'per_leaf':
    return jax.tree.map(lambda s: _keep(s.reshape(-1), fraction).reshape(s.shape), scores)
  leaves, treedef = jax.tree.flatten(scores)
  flat = _keep(jnp.concatenate([s.reshape(-1) for s in leaves]), fraction)
  cuts = [0]
  for s in leaves:
    cuts.append(cuts[-1] + s.size)
  return jax.tree.unflatten(treedef, [flat[a:b].reshape(s.shape)
                                      for a, b, s in zip(cuts, cuts[1:], leaves)])


def topk(fraction: float = 0.01, scope: str = 'global',
         error_feedback: bool = True) -> transforms.UpdateTransform:
  """Sends the top `fraction` of coordinates; the rest waits in the residual."""
  if not 0.0 < fraction <= 1.0:
    raise ConfigError(f'compression.topk.fraction must be in (0, 1], got {fraction}')
  if scope not in SCOPES:
    raise ConfigError(f'compression.topk.scope must be one of {SCOPES}, got {scope!r}')

  def init(shared):
    return _feedback.init(shared) if error_feedback else ()

  def update(update, state, key, weights, info):
    del key, info
    mask = _feedback.masks(weights, update)
    full = _feedback.corrected(update, state if error_feedback else None, mask)
    keep = keep_mask(full, mask, fraction, scope)
    sent = jax.tree.map(lambda c, k: jnp.where(k, c, 0.0), full, keep)
    kept = jax.tree.leaves(keep)
    if scope == 'per_leaf':
      bits = sum(jnp.sum(k) * (VALUE_BITS + index_bits(k.size)) for k in kept)
    else:
      total = sum(k.size for k in kept)
      bits = sum(jnp.sum(k) for k in kept) * (VALUE_BITS + index_bits(total))
    if error_feedback:
      state = _feedback.residual(full, sent, state, mask)
    return (_feedback.outgoing(sent, update, mask), state, weights,
            {'upload_bits': jnp.asarray(bits, jnp.float32)})

  return transforms.UpdateTransform(init, update)
