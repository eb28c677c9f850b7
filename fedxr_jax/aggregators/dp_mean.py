"""DP-FedAvg's aggregate (McMahan et al. 2018): a noisy sum over a fixed denominator.

Streamed: each client contributes its (already clipped, see
`transforms/clip.py`) update on the coordinates it holds, unweighted, so
with norm <= C one client moves the sum by at most C. The server adds
N(0, (noise_multiplier * C)^2) to every coordinate of the sum (one key per
leaf, split from the round's aggregation key) and divides by the expected
cohort size m, a constant: dividing by the realized count or by the
holders of a module would release them without noise. target = shared +
noisy mean, so with sgd(1.0) as server optimizer the new global model is it.

Every coordinate of the released sum gets noise, held by anyone or not:
whether some client holds a module (e.g. has a modality) is itself private.
A module few clients hold is scaled by holders / m (the price of a fixed
denominator). Roles that no client ever updates by construction (e.g. an
exact-LoRA residual the server sets) go in `keep_roles`: no noise, no change.

C is a float, or, with `adaptive` (Andrew et al. 2021), this aggregator's
state: clients clip to the norm the server broadcast (`transforms.clip`
with adaptive=True reads it), report whether they were clipped, and the
server steps from the noisy fraction b of unclipped participants
  C <- C * exp(-learning_rate * (b - target_quantile)),
  b = (sum_i (1[|u_i| <= C] - 1/2) + N(0, count_stddev^2)) / m + 1/2,
with m the expected cohort size. Centring each bit at 1/2 halves the
count's sensitivity (Andrew et al. Sec. 3); with all m clients present it is
the plain (sum_i b_i + noise) / m. Spend the count's privacy with
`privacy.accounting.update_noise_multiplier`.
"""
import math
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

from fedxr_jax.core import aggregation
from fedxr_jax.core import held
from fedxr_jax.errors import ConfigError
from fedxr_jax.core import noise


class AdaptiveClip(NamedTuple):
  target_quantile: float = 0.5
  learning_rate: float = 0.2
  count_stddev: float = 0.0

  def check(self):
    if not 0.0 <= self.target_quantile <= 1.0:
      raise ConfigError('privacy.adaptive_clip.target_quantile must be in [0, 1], '
                        f'got {self.target_quantile}')
    if not self.learning_rate > 0:
      raise ConfigError(f'privacy.adaptive_clip.learning_rate must be > 0, '
                        f'got {self.learning_rate}')
    if self.count_stddev < 0:
      raise ConfigError(f'privacy.adaptive_clip.count_stddev must be >= 0, '
                        f'got {self.count_stddev}')


def next_clip_norm(bound, clipped, participants, key, adaptive: AdaptiveClip,
                   expected_cohort_size: float):
  """One geometric step of C towards the target quantile of the update norms."""
  centred = (participants - clipped) - participants / 2
  noise = adaptive.count_stddev * jax.random.normal(key, (), jnp.float32)
  unclipped = (centred + noise) / expected_cohort_size + 0.5
  return bound * jnp.exp(-adaptive.learning_rate * (unclipped - adaptive.target_quantile))


def dp_mean(*, noise_multiplier: float, expected_cohort_size: float, clip_norm: float,
            adaptive: Optional[AdaptiveClip] = None,
            keep_roles: Sequence[str] = ()) -> aggregation.Aggregator:
  """The Gaussian-noised sum of held updates over `expected_cohort_size`.

  clip_norm: the clients' C, or with `adaptive` the initial C (then kept
  in this aggregator's state as 'clip_norm').
  """
  if noise_multiplier < 0:
    raise ConfigError(f'privacy.noise_multiplier must be >= 0, got {noise_multiplier}')
  if not expected_cohort_size > 0:
    raise ConfigError(f'dp_mean needs expected_cohort_size > 0, got {expected_cohort_size}')
  if not clip_norm > 0:
    raise ConfigError(f'privacy.clip_norm must be > 0, got {clip_norm}')
  if (noise_multiplier > 0 or adaptive is not None) and math.isinf(clip_norm):
    raise ConfigError('privacy.noise_multiplier > 0 (or adaptive clipping) needs a finite '
                      'privacy.clip_norm')
  if adaptive is not None:
    adaptive.check()
  keep = frozenset(keep_roles)
  current = lambda state: state['clip_norm'] if adaptive is not None else clip_norm

  def init(shared):
    del shared
    return {'clip_norm': jnp.asarray(clip_norm, jnp.float32)} if adaptive is not None else {}

  def contribute(client: aggregation.ClientUpdate):
    released = {r: u for r, u in client.update.items() if r not in keep}
    out = {'sum': held.map_modules(
        lambda w, x: jnp.where(held.mask(w, x), x.astype(jnp.float32), 0.0),
        client.weights, released)}
    if adaptive is not None:
      out['clipped'] = client.stats['clip/clipped']
      out['participants'] = client.stats['clip/participants']
    return out

  def aggregate(shared, state, contributions, key):
    bound = current(state)
    sums = contributions['sum']
    if noise_multiplier > 0:
      sums = noise.add_gaussian_noise(sums, noise_multiplier * jnp.asarray(bound, jnp.float32),
                                      jax.random.fold_in(key, 0))
    step = lambda old, s: (old + s / expected_cohort_size).astype(old.dtype)
    target = {r: shared[r] if r in keep else jax.tree.map(step, shared[r], sums[r])
              for r in shared}
    stddev = noise_multiplier * bound / expected_cohort_size if noise_multiplier > 0 else 0.0
    metrics = {'dp/clip_norm': jnp.asarray(bound, jnp.float32),
               'dp/noise_stddev': jnp.asarray(stddev, jnp.float32)}
    if adaptive is not None:
      state = {'clip_norm': next_clip_norm(bound, contributions['clipped'],
                                           contributions['participants'],
                                           jax.random.fold_in(key, 1), adaptive,
                                           expected_cohort_size)}
    return target, state, metrics

  return aggregation.Aggregator('dp_mean', aggregate, contribute, init)
