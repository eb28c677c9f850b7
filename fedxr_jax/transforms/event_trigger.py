"""Event-triggered uploads (lazily aggregated, LAG: Chen et al. 2018).

A client uploads only when the norm of its update (over the modules it
holds; plus what it did not send before, with accumulate=True) reaches
`threshold`. Otherwise it sends nothing: every module weight becomes 0 and
'upload_bits' is 0, and with accumulate=True the unsent update waits in its
per-client state for the next round. A `compressor` (topk, qsgd,
scaled_sign) compresses what is sent, and its 'upload_bits' counts it;
without one a send costs the held coordinates at their dtype. The
compressor's state changes only in rounds the client sends.
"""
from typing import Optional

import jax
import jax.numpy as jnp

from fedxr_jax.core import held
from fedxr_jax.core import transforms
from fedxr_jax.core import trees
from fedxr_jax.errors import ConfigError
from fedxr_jax.transforms import _feedback


def event_trigger(threshold: float, accumulate: bool = True,
                  compressor: Optional[transforms.UpdateTransform] = None
                  ) -> transforms.UpdateTransform:
  """Sends when ||update (+ pending)|| >= threshold. Stat 'event_trigger/sent'."""
  if threshold < 0:
    raise ConfigError(f'compression.event_threshold must be >= 0, got {threshold}')
  inner = compressor or transforms.identity()

  def init(shared):
    return {'pending': _feedback.init(shared) if accumulate else (),
            'compressor': inner.init(shared)}

  def update(update, state, key, weights, info):
    mask = _feedback.masks(weights, update)
    full = _feedback.corrected(update, state['pending'] if accumulate else None, mask)
    send = jnp.sqrt(held.sq_norm(weights, full, lead=0)) >= threshold
    candidate = _feedback.outgoing(full, update, mask)
    out, inner_state, out_weights, stats = inner.update(
        candidate, state['compressor'], key, weights, info)
    bits = stats.pop('upload_bits', None)
    if bits is None:
      bits = held.payload_bits(out_weights, update)
    new_state = {'compressor': trees.where_tree(send, inner_state, state['compressor']),
                 'pending': state['pending']}
    if accumulate:
      zeros = jax.tree.map(jnp.zeros_like, full)
      new_state['pending'] = _feedback.residual(
          full, trees.where_tree(send, full, zeros), state['pending'], mask)
    out_weights = jax.tree.map(lambda w: w * send.astype(w.dtype), out_weights)
    stats = {**stats, 'upload_bits': jnp.where(send, bits, 0.0),
             'event_trigger/sent': send.astype(jnp.float32)}
    return out, new_state, out_weights, stats

  return transforms.UpdateTransform(init, update, inner.init_server, inner.update_server)
