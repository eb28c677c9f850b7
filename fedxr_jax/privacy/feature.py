"""Differential privacy as a feature of a run: `contribute(config.privacy, run)`.

Client level (DP-FedAvg, McMahan et al. 2018): every update is clipped to
`clip_norm` over all its shared trees after every other change (the
'privacy' place of the chain: uniform weights, then the clip), and the
server's aggregator becomes the DP mean (noise on the sum, a fixed
denominator; `aggregators.dp_mean`). Example level (`mode=example`,
DP-SGD in local training, `privacy.dpsgd`): each upload is private itself,
so whatever the server or a neighbour does with it is post-processing;
example-count weights, nothing on the update. Accounting with
dp-accounting (`privacy.accountants`); every row gets `privacy/epsilon`
and the accountant that gave it (`privacy/accountant`, `privacy/sampling`,
`privacy/mechanism`).

The rest of the block, each its own settings:
  sampling=poisson   each client joins a round with q = cohort_size /
                     population (`privacy.poisson`): the round compiles for
                     a padded maximum, the clients not drawn sit it out;
                     accounted as Poisson (add-or-remove-one), with PLD.
  mechanism=dp_ftrl  tree-aggregated noise on the released prefix sums
                     (`privacy.ftrl`), no amplification by sampling, W
                     from the run's cohort schedule.
  secure_aggregation SecAgg / SecAgg+ as a cost, no cryptography
                     (`privacy.secagg`): its bits on the channel model's rows.
  audit.canaries     one-run auditing (`privacy.audit`): the audited lower
                     bound 'privacy/audit_epsilon' beside the accountant's.

Settings that would weaken the guarantee are refused in one line before
anything compiles: a negative or non-finite target epsilon or noise
multiplier is not "no DP", and an accountant that cannot account the
sampler is never replaced by one that can.
"""
import dataclasses
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.aggregators import dp_mean as dp_mean_lib
from fedxr_jax.core import round_plan
from fedxr_jax.core.contribution import Contribution
from fedxr_jax.errors import ConfigError
from fedxr_jax.privacy import accountants
from fedxr_jax.privacy import accounting
from fedxr_jax.privacy import audit
from fedxr_jax.privacy import dpsgd
from fedxr_jax.privacy import ftrl
from fedxr_jax.privacy import poisson
from fedxr_jax.privacy import secagg
from fedxr_jax.privacy.audit import Settings as AuditSettings
from fedxr_jax.privacy.ftrl import Settings as FtrlSettings
from fedxr_jax.privacy.poisson import Settings as PoissonSettings
from fedxr_jax.privacy.secagg import Settings as SecAggSettings
from fedxr_jax.transforms import clip as clip_lib

MODES = ('auto', 'none', 'client', 'example')
MECHANISMS = ('dp_fedavg', 'dp_ftrl')
SECURE_AGGREGATION = ('none',) + secagg.PROTOCOLS


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
  sum, a fixed denominator (the expected cohort size). target_epsilon
  (+ delta) calibrates the noise for num_rounds instead; mode 'auto' turns
  DP on when either is set. sampling: fixed (cohort_size distinct clients,
  replace-one neighbours) | poisson (each client with q = cohort_size /
  population, add-or-remove-one; `poisson`). accountant (dp-accounting):
  rdp | pld (pld: Poisson only; prv refused). mechanism: dp_fedavg (fresh
  noise each round) | dp_ftrl (tree noise, `ftrl`). secure_aggregation:
  none | secagg | secagg_plus, a cost model (`secagg`). audit: canaries for
  one-run auditing. mode 'example': DP-SGD in local training, each
  example's gradient clipped to example_clip."""
  mode: str = 'auto'
  clip_norm: float = 1.0
  example_clip: float = 1.0
  noise_multiplier: float = 0.0
  target_epsilon: float = 0.0
  delta: float = 0.0
  sampling: str = 'fixed'
  poisson: PoissonSettings = PoissonSettings()
  accountant: str = 'rdp'
  mechanism: str = 'dp_fedavg'
  ftrl: FtrlSettings = FtrlSettings()
  adaptive_clip: AdaptiveClip = AdaptiveClip()
  secure_aggregation: str = 'none'
  secagg: SecAggSettings = SecAggSettings()
  audit: AuditSettings = AuditSettings()


class Privacy(NamedTuple):
  """DP of a run: the noise it adds and the epsilon it spends."""
  noise_multiplier: float       # sigma the accountant charges
  update_noise: float           # sigma on the updates (less, if the clip count is noised)
  clip_norm: float              # C: of an update (client) or of an example's gradient
  delta: float
  epsilon_per_round: tuple      # privacy/epsilon after rounds 1..T
  mode: str = 'client'          # 'client' (DP-FedAvg) | 'example' (DP-SGD)
  accountant: str = 'rdp'       # the dp-accounting accountant of epsilon_per_round
  sampling: str = 'fixed'       # the cohort sampler it accounts
  mechanism: str = 'dp_fedavg'  # | 'dp_ftrl'

  def host_metrics(self, rounds_done: int) -> dict:
    eps = self.epsilon_per_round
    return {'privacy/epsilon': eps[rounds_done - 1] if len(eps) >= rounds_done else None,
            'privacy/noise_multiplier': self.noise_multiplier,
            'privacy/accountant': self.accountant, 'privacy/sampling': self.sampling,
            'privacy/mechanism': self.mechanism}


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


def check_choices(p, mode: str) -> None:
  """The block's names and what does not combine, one line each (`mode` from `privacy_mode`)."""
  if p.sampling not in accounting.SAMPLINGS:
    raise ConfigError(f'privacy.sampling must be one of {accounting.SAMPLINGS}, got '
                      f'{p.sampling!r}')
  if p.mechanism not in MECHANISMS:
    raise ConfigError(f'privacy.mechanism must be one of {MECHANISMS}, got {p.mechanism!r}')
  if p.secure_aggregation not in SECURE_AGGREGATION:
    raise ConfigError(f'privacy.secure_aggregation must be one of {SECURE_AGGREGATION}, got '
                      f'{p.secure_aggregation!r}')
  if p.ftrl.tree_rounds < 0 or p.audit.canaries < 0:
    raise ConfigError('privacy.ftrl.tree_rounds and privacy.audit.canaries must be >= 0 '
                      '(0: the whole run / no audit)')
  if mode != 'none':
    # Any accountant name, then the pair: pld with the fixed sampler is refused, never
    # replaced by rdp. DP-SGD and DP-FTRL account no cohort sampling (the pair of 'poisson').
    accountants.check(p.sampling if (mode == 'client' and p.mechanism == 'dp_fedavg')
                      else 'poisson', p.accountant)
  needs_client = [what for what, on in (
      (f'privacy.mechanism={p.mechanism}', p.mechanism != 'dp_fedavg'),
      ('privacy.audit.canaries > 0', p.audit.canaries > 0)) if on]
  if needs_client and mode != 'client':
    raise ConfigError(f'{needs_client[0]} needs client-level DP (privacy.mode=client with '
                      f'privacy.noise_multiplier or privacy.target_epsilon), got mode={mode}')
  if needs_client and p.adaptive_clip.enabled:
    raise ConfigError(f'not supported yet: {needs_client[0]} with privacy.adaptive_clip '
                      '(its clip norm moves with the noisy count)')
  if p.sampling == 'poisson' and mode == 'example':
    raise ConfigError('not supported yet: privacy.sampling=poisson with privacy.mode=example '
                      "(DP-SGD accounts each client's examples, not the cohort sampler)")
  if p.sampling == 'poisson' and p.mechanism == 'dp_ftrl':
    raise ConfigError('privacy.mechanism=dp_ftrl with privacy.sampling=poisson: DP-FTRL claims '
                      'no amplification by sampling, so Poisson buys nothing (use fixed)')
  if p.sampling == 'poisson' and p.secure_aggregation != 'none':
    raise ConfigError(f'not supported yet: privacy.secure_aggregation={p.secure_aggregation} '
                      'with privacy.sampling=poisson (the protocol cost depends on the '
                      "round's drawn count)")


def make_privacy(p, run) -> Optional[Privacy]:
  """Calibrates sigma for a target epsilon, or accounts the given sigma (None: no DP).

  Example mode reads every client's example count from `run.problem` on `run.source`.
  """
  mode = privacy_mode(p)
  check_choices(p, mode)
  if mode == 'none':
    return None
  if p.target_epsilon > 0 and p.noise_multiplier > 0:
    raise ConfigError('give privacy.target_epsilon or privacy.noise_multiplier, not both')
  if p.target_epsilon > 0 and not 0 < p.delta < 1:
    raise ConfigError(f'privacy.target_epsilon needs privacy.delta in (0, 1), got {p.delta}')
  if mode == 'example':
    return _example_privacy(p, run)
  if (p.noise_multiplier > 0 or p.target_epsilon > 0) and math.isinf(p.clip_norm):
    raise ConfigError('client-level DP needs a finite privacy.clip_norm (the bound on one '
                      "client's update)")
  if p.mechanism == 'dp_ftrl':
    return _ftrl_privacy(p, run)
  facts = run.facts
  sizes = dict(rounds=run.num_rounds, cohort_size=facts.cohort_size,
               population=facts.population_size, sampling=p.sampling, accountant=p.accountant)
  sigma = p.noise_multiplier
  if p.target_epsilon > 0:
    sigma = accountants.noise_multiplier_for(p.target_epsilon, delta=p.delta, **sizes)
  epsilons = ()
  if sigma > 0 and 0 < p.delta < 1:
    epsilons = tuple(accountants.epsilons(sigma, delta=p.delta, **sizes))
  update_noise = sigma
  if p.adaptive_clip.enabled and p.adaptive_clip.count_stddev > 0 and sigma > 0:
    update_noise = accounting.update_noise_multiplier(sigma, p.adaptive_clip.count_stddev)
  return Privacy(float(sigma), float(update_noise), float(p.clip_norm), float(p.delta),
                 epsilons, accountant=p.accountant, sampling=p.sampling)


def cohort_schedule(facts, rounds: int) -> list:
  """The run's cohorts, rounds 1..`rounds` (the fixed sampler: a pure function of the seed)."""
  sample = round_plan.cohort_sampler(facts.seed, facts.population_size, facts.cohort_size)
  return [sample(r) for r in range(int(rounds))]


def _ftrl_privacy(p, run) -> Privacy:
  """DP-FTRL: sigma and epsilon per round from the schedule's exact sensitivity (`ftrl`)."""
  facts = run.facts
  tree_rounds = p.ftrl.tree_rounds or run.num_rounds
  energy = ftrl.schedule_energy(ftrl.participation(cohort_schedule(facts, run.num_rounds),
                                                   facts.population_size), tree_rounds)
  sigma = p.noise_multiplier
  if p.target_epsilon > 0:
    sigma = ftrl.noise_for_energy(p.target_epsilon, float(energy[-1]), delta=p.delta,
                                  accountant=p.accountant)
  epsilons, seen = (), {}
  if sigma > 0 and 0 < p.delta < 1:
    for e in energy.tolist():
      if e not in seen:
        seen[e] = ftrl.epsilon_for_energy(sigma, e, delta=p.delta, accountant=p.accountant)
    epsilons = tuple(seen[e] for e in energy.tolist())
  return Privacy(float(sigma), float(sigma), float(p.clip_norm), float(p.delta), epsilons,
                 accountant=p.accountant, sampling='fixed', mechanism='dp_ftrl')


def compiled_cohort_size(p, *, population: int, cohort_size: int, rounds: int) -> int:
  """The cohort size the round compiles for: cohort_size, or Poisson's padded maximum."""
  if p.sampling != 'poisson':
    return int(cohort_size)
  return poisson.compiled_cohort_size(p.poisson, population=population,
                                      cohort_size=cohort_size, rounds=rounds)


def cohort_sampler(p, *, seed: int, population: int, cohort_size: int, rounds: int):
  """round_idx -> [M] numpy cohort of a Poisson run (None: the fixed sampler's run)."""
  if p.sampling != 'poisson':
    return None
  size = compiled_cohort_size(p, population=population, cohort_size=cohort_size,
                              rounds=rounds)
  return poisson.cohort_sampler(seed, population, cohort_size / population, size,
                                rounds_hint=rounds, overflow=p.poisson.overflow)


def check_asynchronous(p) -> None:
  """What of the block does not combine with server steps on a clock (one line)."""
  for key, value, default in (('sampling', p.sampling, 'fixed'),
                              ('secure_aggregation', p.secure_aggregation, 'none')):
    if value != default:
      raise ConfigError(f'not supported yet: privacy.{key}={value} with asynchrony (clients '
                        'start at their own times, not in sampled rounds)')


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
                 epsilons, 'example', accountant=p.accountant, sampling=p.sampling)


def contribute(p, run) -> Contribution:
  """The run's privacy features from its `privacy` block, as one contribution.

  DP (client or example level, with its audit), the Poisson sampler's
  membership, and secure aggregation's costs each contribute their part;
  a block asking for none of them contributes nothing.
  """
  privacy = make_privacy(p, run)
  return _merged(privacy, (_dp_part(p, run, privacy), _sampling_part(p, run),
                           _secagg_part(p, run, privacy)))


def _dp_part(p, run, privacy) -> Contribution:
  if privacy is None:
    return Contribution('privacy')
  if privacy.mode == 'example':
    return Contribution(
        'privacy', transforms=(('privacy', clip_lib.example_count_weights()),),
        private_grads=dpsgd.local_grads(clip_norm=privacy.clip_norm,
                                        noise_multiplier=privacy.noise_multiplier),
        check=_check_example, host_metrics=privacy.host_metrics)
  a = p.adaptive_clip
  adaptive = (dp_mean_lib.AdaptiveClip(a.target_quantile, a.learning_rate, a.count_stddev)
              if a.enabled else None)
  size = run.facts.cohort_size
  if privacy.mechanism == 'dp_ftrl':
    aggregator = ftrl.dp_ftrl_mean(
        noise_multiplier=privacy.update_noise, expected_cohort_size=size,
        clip_norm=privacy.clip_norm, tree_rounds=p.ftrl.tree_rounds or run.num_rounds)
  else:
    aggregator = dp_mean_lib.dp_mean(
        noise_multiplier=privacy.update_noise, expected_cohort_size=size,
        clip_norm=privacy.clip_norm, adaptive=adaptive)
  transforms = (('privacy', clip_lib.uniform_weights()),
                ('privacy', clip_lib.clip(privacy.clip_norm, adaptive=a.enabled)))
  if p.audit.canaries:
    canaries = audit.draw(p.audit, run.facts.population_size, privacy.clip_norm)
    # A canary replaces what it trained before anything else sees it (an attacker's place).
    transforms = (('attack', audit.canary_transform(canaries)),) + transforms
    aggregator = audit.scored(aggregator, canaries, delta=privacy.delta,
                              confidence=p.audit.confidence)
  return Contribution('privacy', transforms=transforms, aggregator=aggregator,
                      needs_server='client-level DP', check=_check_client,
                      host_metrics=privacy.host_metrics)


def _sampling_part(p, run) -> Contribution:
  """Poisson: the clients a round did not draw sit it out (the cohort's padding).

  Every row states the compiled size and the chance that a round of the run
  draws more ('poisson/compiled_cohort', 'poisson/run_overflow_probability').
  """
  if p.sampling != 'poisson':
    return Contribution('privacy')
  facts = run.facts
  rate = facts.cohort_size / facts.population_size
  size = compiled_cohort_size(p, population=facts.population_size,
                              cohort_size=facts.cohort_size, rounds=run.num_rounds)
  facts_row = {'poisson/compiled_cohort': size,
               'poisson/run_overflow_probability': poisson.run_overflow_probability(
                   facts.population_size, rate, size, run.num_rounds)}
  return Contribution('privacy', wrap_problem=lambda problem: poisson.wrap_problem(problem, rate),
                      source_arrays=poisson.source_arrays, check=_check_poisson,
                      host_metrics=lambda rounds_done: dict(facts_row))


def _secagg_part(p, run, privacy) -> Contribution:
  """SecAgg / SecAgg+ as a cost on every participating client's link bits."""
  protocol = p.secure_aggregation
  if protocol == 'none':
    return Contribution('privacy')
  cost = secagg.run_cost(protocol, p.secagg, cohort_size=run.facts.cohort_size,
                         update_size=_update_words(run, weighted=not client_level(privacy)))
  return Contribution('privacy', transforms=(('report', secagg.cost_transform(cost)),),
                      needs_server=f'privacy.secure_aggregation={protocol}',
                      check=lambda caps: secagg.check_run(caps, protocol),
                      host_metrics=lambda rounds_done: secagg.host_metrics(cost))


def _update_words(run, weighted: bool) -> int:
  """d of the run's uploads: its shared trees' coordinates (+ module weights if weighted)."""
  problem, shared = run.problem, [r for r, m in run.facts.plan.items() if m == 'shared']
  params = jax.eval_shape(lambda: problem.init_params(jax.random.key(0)))
  weights = None
  if weighted:
    template = jax.eval_shape(lambda: problem.module_weights(
        problem.client_data(run.source, jnp.int32(0), 'train', jnp.int32(0)), None))
    weights = {r: template[r] for r in shared}
  return secagg.update_words({r: params[r] for r in shared}, weights)


def _merged(info, parts) -> Contribution:
  """One 'privacy' contribution from its parts (each field from the parts that set it)."""
  have = lambda field: [getattr(c, field) for c in parts if getattr(c, field)]
  checks, metrics = have('check'), have('host_metrics')
  wraps, sources = have('wrap_problem'), have('source_arrays')

  def wrap_problem(problem):
    for wrap in wraps:
      problem = wrap(problem)
    return problem

  def check(caps):
    for one in checks:
      one(caps)

  return Contribution(
      'privacy', transforms=sum((c.transforms for c in parts), ()),
      aggregator=next((c.aggregator for c in parts if c.aggregator is not None), None),
      wrap_problem=wrap_problem if wraps else None,
      source_arrays=(lambda seed: {k: v for f in sources for k, v in f(seed).items()})
      if sources else None,
      needs_server=next(iter(have('needs_server')), ''), check=check if checks else None,
      private_grads=next(iter(have('private_grads')), None),
      host_metrics=(lambda n: {k: v for f in metrics for k, v in f(n).items()})
      if metrics else None, info=info)


def _check_poisson(caps) -> None:
  if caps.aggregator.stacked:
    raise ConfigError(f'not supported yet: privacy.sampling=poisson with aggregator.name='
                      f'{caps.aggregator_name} (a stacked aggregator is sized for a fixed '
                      'cohort; the padded slots would count as clients)')


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
