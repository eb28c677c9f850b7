"""Differential privacy as a feature of a run: `contribute(config.privacy, run)`.

Client level (DP-FedAvg, McMahan et al. 2018): every update is clipped to
`clip_norm` over all its shared trees after every other change (the
'privacy' place of the chain: uniform weights, then the clip), and the
server's aggregator becomes the DP mean (noise on the sum, a fixed
denominator; `aggregators.dp_mean`). Example level (`mode=example`,
DP-SGD in local training, `privacy.dpsgd`): each upload is private itself,
so whatever the server or a neighbour does with it is post-processing;
example-count weights, nothing on the update. Accounting with
dp-accounting (`privacy.accounting`); every row gets `privacy/epsilon`.

Settings that would weaken the guarantee are refused in one line before
anything compiles: a negative or non-finite target epsilon or noise
multiplier is not "no DP".
"""
import dataclasses
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.aggregators import dp_mean as dp_mean_lib
from fedxr_jax.core.contribution import Contribution
from fedxr_jax.errors import ConfigError
from fedxr_jax.privacy import accounting
from fedxr_jax.privacy import dpsgd
from fedxr_jax.transforms import clip as clip_lib

MODES = ('auto', 'none', 'client', 'example')


@dataclasses.dataclass(frozen=True)
class AdaptiveClip:
  """Adaptive clipping (Andrew et al. 2021; `aggregators.dp_mean`)."""
  enabled: bool = False
  target_quantile: float = 0.5
  learning_rate: float = 0.2
  count_stddev: float = 0.0


@dataclasses.dataclass(frozen=True)
class Settings:
  """The `privacy` block. Client level: each update clipped to clip_norm over
  all its shared trees, Gaussian noise noise_multiplier * clip_norm on the
  sum, a fixed denominator (the cohort size). target_epsilon (+ delta)
  calibrates the noise for num_rounds instead; mode 'auto' turns DP on when
  either is set. Accounting: dp-accounting (rdp | pld), fixed-size cohorts
  (replace-one neighbours). mode 'example': DP-SGD in local training, each
  example's gradient clipped to example_clip."""
  mode: str = 'auto'
  clip_norm: float = 1.0
  example_clip: float = 1.0
  noise_multiplier: float = 0.0
  target_epsilon: float = 0.0
  delta: float = 0.0
  sampling: str = 'fixed'
  accountant: str = 'rdp'
  adaptive_clip: AdaptiveClip = AdaptiveClip()


class Privacy(NamedTuple):
  """DP of a run: the noise it adds and the epsilon it spends."""
  noise_multiplier: float       # sigma the accountant charges
  update_noise: float           # sigma on the updates (less, if the clip count is noised)
  clip_norm: float              # C: of an update (client) or of an example's gradient
  delta: float
  epsilon_per_round: tuple      # privacy/epsilon after rounds 1..T
  mode: str = 'client'          # 'client' (DP-FedAvg) | 'example' (DP-SGD)

  def host_metrics(self, rounds_done: int) -> dict:
    eps = self.epsilon_per_round
    return {'privacy/epsilon': eps[rounds_done - 1] if len(eps) >= rounds_done else None,
            'privacy/noise_multiplier': self.noise_multiplier}


def client_level(privacy: Optional[Privacy]) -> bool:
  return privacy is not None and privacy.mode == 'client'


def check(p) -> None:
  """Values that cannot mean what they say, in one line (before `mode` is read)."""
  for key in ('target_epsilon', 'noise_multiplier'):
    value = p[key]
    if not (math.isfinite(value) and value >= 0):
      raise ConfigError(f'privacy.{key}={value} must be a finite number >= 0 (0: not set); '
                        'a run with an invalid DP setting is refused, never trained without DP')
  if not 0.0 <= p.delta < 1.0:
    raise ConfigError(f'privacy.delta must be in [0, 1), got {p.delta}')
  for key in ('clip_norm', 'example_clip'):
    if not p[key] > 0:   # NaN fails too
      raise ConfigError(f'privacy.{key} must be > 0, got {p[key]}')


def privacy_mode(p) -> str:
  """'client', 'example' or 'none' from `privacy.mode` ('auto': DP once noise is asked for)."""
  if p.mode not in MODES:
    raise ConfigError(f'privacy.mode={p.mode!r} is not one of {MODES}')
  check(p)
  asked = p.target_epsilon > 0 or p.noise_multiplier > 0
  if p.mode == 'none' and asked:
    raise ConfigError('privacy.mode=none conflicts with privacy.target_epsilon / '
                      'privacy.noise_multiplier > 0')
  if p.mode == 'auto':
    return 'client' if asked else 'none'
  return p.mode


def make_privacy(p, run) -> Optional[Privacy]:
  """Calibrates sigma for a target epsilon, or accounts the given sigma (None: no DP).

  Example mode reads every client's example count from `run.problem` on `run.source`.
  """
  mode = privacy_mode(p)
  if mode == 'none':
    return None
  if p.sampling != 'fixed':
    raise ConfigError(f'not supported yet: privacy.sampling={p.sampling!r}: the cohort '
                      'sampler draws a fixed-size cohort without replacement (fixed)')
  if p.target_epsilon > 0 and p.noise_multiplier > 0:
    raise ConfigError('give privacy.target_epsilon or privacy.noise_multiplier, not both')
  if p.target_epsilon > 0 and not 0 < p.delta < 1:
    raise ConfigError(f'privacy.target_epsilon needs privacy.delta in (0, 1), got {p.delta}')
  if mode == 'example':
    return _example_privacy(p, run)
  if (p.noise_multiplier > 0 or p.target_epsilon > 0) and math.isinf(p.clip_norm):
    raise ConfigError('client-level DP needs a finite privacy.clip_norm (the bound on one '
                      "client's update)")
  facts = run.facts
  sizes = dict(rounds=run.num_rounds, cohort_size=facts.cohort_size,
               population=facts.population_size, sampling=p.sampling, accountant=p.accountant)
  sigma = p.noise_multiplier
  if p.target_epsilon > 0:
    sigma = accounting.calibrate_noise_multiplier(p.target_epsilon, delta=p.delta, **sizes)
  epsilons = ()
  if sigma > 0 and 0 < p.delta < 1:
    epsilons = tuple(accounting.epsilon_per_round(sigma, delta=p.delta, **sizes))
  update_noise = sigma
  if p.adaptive_clip.enabled and p.adaptive_clip.count_stddev > 0 and sigma > 0:
    update_noise = accounting.update_noise_multiplier(sigma, p.adaptive_clip.count_stddev)
  return Privacy(float(sigma), float(update_noise), float(p.clip_norm), float(p.delta),
                 epsilons)


def example_counts(problem, source, population: int) -> np.ndarray:
  """[P] train example counts of the population (round 0: no source changes them)."""
  count = lambda c: problem.client_data(source, c, 'train', 0)['num_examples']
  # Only the counts leave the jit: the examples themselves are never built.
  return np.asarray(jax.device_get(jax.jit(jax.vmap(count))(jnp.arange(population))))


def _example_privacy(p, run) -> Privacy:
  """DP-SGD in local training: sigma and the worst client's epsilon (`privacy.dpsgd`)."""
  if (p.noise_multiplier > 0 or p.target_epsilon > 0) and math.isinf(p.example_clip):
    raise ConfigError('example-level DP needs a finite privacy.example_clip (the bound on '
                      "one example's gradient)")
  if p.adaptive_clip.enabled:
    raise ConfigError('privacy.adaptive_clip with privacy.mode=example: adaptive clipping '
                      "is DP-FedAvg's (client level); DP-SGD clips to privacy.example_clip")
  facts = run.facts
  energy = accounting.worst_occurrence_energy(
      example_counts(run.problem, run.source, facts.population_size),
      batch_size=facts.batch_size, steps=facts.local_steps)
  sizes = dict(rounds=run.num_rounds, energy=energy, accountant=p.accountant)
  sigma = p.noise_multiplier
  if p.target_epsilon > 0:
    sigma = accounting.calibrate_example_noise(p.target_epsilon, delta=p.delta, **sizes)
  epsilons = ()
  if sigma > 0 and 0 < p.delta < 1:
    epsilons = tuple(accounting.example_epsilon_per_round(sigma, delta=p.delta, **sizes))
  return Privacy(float(sigma), float(sigma), float(p.example_clip), float(p.delta),
                 epsilons, 'example')


def contribute(p, run) -> Contribution:
  """The run's DP from its `privacy` block (an empty contribution without DP)."""
  privacy = make_privacy(p, run)
  if privacy is None:
    return Contribution('privacy')
  if privacy.mode == 'example':
    return Contribution(
        'privacy', transforms=(('privacy', clip_lib.example_count_weights()),),
        private_grads=dpsgd.local_grads(clip_norm=privacy.clip_norm,
                                        noise_multiplier=privacy.noise_multiplier),
        check=_check_example, host_metrics=privacy.host_metrics, info=privacy)
  a = p.adaptive_clip
  adaptive = (dp_mean_lib.AdaptiveClip(a.target_quantile, a.learning_rate, a.count_stddev)
              if a.enabled else None)
  return Contribution(
      'privacy',
      transforms=(('privacy', clip_lib.uniform_weights()),
                  ('privacy', clip_lib.clip(privacy.clip_norm, adaptive=a.enabled))),
      aggregator=dp_mean_lib.dp_mean(
          noise_multiplier=privacy.update_noise,
          expected_cohort_size=run.facts.cohort_size, clip_norm=privacy.clip_norm,
          adaptive=adaptive),
      needs_server='client-level DP', check=_check_client,
      host_metrics=privacy.host_metrics, info=privacy)


def _check_client(caps) -> None:
  if not caps.aggregator.dp_safe:
    raise ConfigError(f'client-level DP with aggregator.name={caps.aggregator_name}: the DP '
                      "mean is the aggregator whose output one client's clipped update "
                      'moves by at most C / m; a robust aggregator breaks that bound')
  for other in caps.others:
    if other.update_weights:
      raise ConfigError(f'client-level DP with {other.update_weights}: DP weighs every '
                        'client the same (norm-based weights would leak)')


def _check_example(caps) -> None:
  """Example-level DP covers the update: refuse an algorithm that reports more."""
  if caps.algorithm.client_report is not None:
    raise ConfigError(f'privacy.mode=example with algorithm.name={caps.algorithm.name}: its '
                      'client report (computed from raw examples) leaves the device without '
                      'noise')
