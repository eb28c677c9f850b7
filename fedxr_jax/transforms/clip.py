"""Client-level L2 clipping for DP-FedAvg, and DP's uniform weights.

`clip` scales a client's whole update (all its shared trees together) to
norm <= C, so one client moves the released sum by at most C. C is fixed,
or, with `adaptive=True` (Andrew et al. 2021, "Differentially private
learning with adaptive clipping"), the server's current estimate: it lives
in the DP aggregator's state (`aggregators.dp_mean`), which the server
broadcasts with the model (`ClientInfo.aggregator`) and updates from the
noisy count of clipped clients, as TFF's adaptive clipping does.

`uniform_weights` gives every participating client weight 1 on each module
it holds: example counts would leak through DP's weighting.
`example_count_weights` (example-level DP-SGD, `privacy.dpsgd`) gives each
module it holds its example count instead, public under replace-one-example
neighbours, where per-module counts (examples with a modality, tokens routed
to an expert) would change with one example.

Stats (reported with the upload and summed over the cohort by the round):
'clip/norm' (pre-clip norm), 'clip/clipped' (1 if scaled down),
'clip/participants' (1 if the client holds any module). The sums of the
round's metrics are not private; log them only as diagnostics. The DP
aggregator counts 'clip/clipped' with noise for adaptive clipping.
"""
import jax
import jax.numpy as jnp

from fedxr_jax.core import held
from fedxr_jax.core import transforms
from fedxr_jax.errors import ConfigError


def clip_update(update: dict, clip_norm) -> tuple:
  """(update scaled to norm <= clip_norm, its norm before clipping)."""
  norm = transforms.global_norm(update)
  scale = jnp.where(norm > clip_norm, clip_norm / jnp.where(norm > 0, norm, 1.0), 1.0)
  return jax.tree.map(lambda x: x * scale.astype(x.dtype), update), norm


def clip(clip_norm: float, *, adaptive: bool = False) -> transforms.UpdateTransform:
  """Clips each update to `clip_norm`, or (adaptive) to the aggregator's 'clip_norm'."""
  if not clip_norm > 0:
    raise ConfigError(f'privacy.clip_norm must be > 0, got {clip_norm}')

  def update(update, key, weights, info):
    del key
    bound = info.aggregator['clip_norm'] if adaptive else clip_norm
    clipped, norm = clip_update(update, bound)
    here = held.holds_any(weights, 0)
    stats = {'clip/norm': jnp.where(here, norm, 0.0),
             'clip/clipped': (here & (norm > bound)).astype(jnp.float32),
             'clip/participants': here.astype(jnp.float32)}
    return clipped, weights, stats

  return transforms.stateless(update)


def uniform_weights() -> transforms.UpdateTransform:
  """Sets each module weight > 0 to 1 (0 stays 0: a module the client does not hold)."""

  def update(update, key, weights, info):
    del key, info
    return update, jax.tree.map(lambda w: (w > 0).astype(w.dtype), weights), {}

  return transforms.stateless(update)


def example_count_weights() -> transforms.UpdateTransform:
  """Sets each module weight > 0 to the client's example count (0 stays 0)."""

  def update(update, key, weights, info):
    del key
    n = info.data['num_examples']
    return update, jax.tree.map(lambda w: jnp.where(w > 0, n.astype(w.dtype), 0), weights), {}

  return transforms.stateless(update)
