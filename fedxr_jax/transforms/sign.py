"""Scaled sign compression (signSGD, Bernstein et al. 2018; EF-signSGD, Karimireddy et al. 2019).

Per leaf, the client sends sign(c) times the mean magnitude of c over the
coordinates it holds, c being the update plus the error-feedback residual
(error_feedback=False: the update alone; biased). 'upload_bits' = 1 per held
coordinate + 32 per leaf with any (its scale). An exact zero is sent as 0
and counted as 1 bit (zeros are rare in a trained update).
"""
import jax
import jax.numpy as jnp

from fedxr_jax.core import transforms
from fedxr_jax.transforms import _feedback

SCALE_BITS = 32


def scaled_sign_leaf(c, mask):
  held = jnp.sum(mask)
  scale = jnp.sum(jnp.where(mask, jnp.abs(c), 0.0)) / jnp.maximum(held, 1)
  return jnp.sign(c) * scale


def scaled_sign(error_feedback: bool = True) -> transforms.UpdateTransform:
  """sign(x) * mean|x| per leaf, with the residual carried per client."""

  def init(shared):
    return _feedback.init(shared) if error_feedback else ()

  def update(update, state, key, weights, info):
    del key, info
    mask = _feedback.masks(weights, update)
    full = _feedback.corrected(update, state if error_feedback else None, mask)
    sent = jax.tree.map(scaled_sign_leaf, full, mask)
    masks = jax.tree.leaves(mask)
    upload = sum(jnp.sum(m) for m in masks) + SCALE_BITS * sum(jnp.any(m) for m in masks)
    if error_feedback:
      state = _feedback.residual(full, sent, state, mask)
    return (_feedback.outgoing(sent, update, mask), state, weights,
            {'upload_bits': jnp.asarray(upload, jnp.float32)})

  return transforms.UpdateTransform(init, update)
