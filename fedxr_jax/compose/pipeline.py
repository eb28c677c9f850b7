"""The between-local-and-server part of a configured run: who attacks, what
each client's update goes through, and how the server combines them.

Client update chain, in order:
  1. a model-poisoning attack on malicious clients (`attack.model`),
  2. HetLoRA's weights (`lora.hetlora_weights`),
  3. compression, optionally event-triggered (`compression`),
  4. client-level DP: uniform weights, then the clip (`privacy`): last, so
     what is released is bounded by C whatever came before; example-level
     DP (privacy.mode=example: DP-SGD in local training, `privacy.dpsgd`):
     example-count weights instead, nothing on the update.
Server: the client-level DP mean (`privacy`), else `aggregator.name`, with exact LoRA
wrapping the mean and omniscient attacks (ALIE, IPM) wrapping whichever
aggregator runs. Data poisoning (label flips, a backdoor) wraps the problem.
Contradictory settings are refused in one line.
"""
import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax import topology as topology_registry
from fedxr_jax.aggregators import dp_mean as dp_mean_lib
from fedxr_jax.aggregators import omniscient
from fedxr_jax.aggregators import registry as aggregator_registry
from fedxr_jax.aggregators.exact_lora import exact_lora
from fedxr_jax.algorithms import lora_rules
from fedxr_jax.attacks import malicious as malicious_lib
from fedxr_jax.attacks import poisoning
from fedxr_jax.core import rng
from fedxr_jax.core import transforms as transforms_lib
from fedxr_jax.core.problem import FederatedProblem
from fedxr_jax.errors import ConfigError
from fedxr_jax.privacy import accounting
from fedxr_jax.privacy import dpsgd
from fedxr_jax.transforms import clip as clip_lib
from fedxr_jax.transforms import registry as transform_registry
from fedxr_jax.transforms.hetlora import hetlora

MODEL_ATTACKS = ('none',) + tuple(transform_registry.ATTACKS) + ('alie', 'ipm')
DATA_ATTACKS = ('none', 'label_flip', 'backdoor')
PRIVACY_MODES = ('auto', 'none', 'client', 'example')


def default_attack_config() -> dict:
  return {'fraction': 0.0, 'model': 'none', 'data': 'none',
          **transform_registry.attack_settings(),
          'alie': {'z': 0.0}, 'ipm': {'epsilon': 0.1},
          'backdoor': {'modality': 'vision', 'task': '', 'target': 0, 'size': 4,
                       'value': 4.0, 'fraction': 0.5}}


def default_privacy_config() -> dict:
  return {'mode': 'auto', 'clip_norm': 1.0, 'example_clip': 1.0, 'noise_multiplier': 0.0,
          'target_epsilon': 0.0, 'delta': 0.0, 'sampling': 'fixed', 'accountant': 'rdp',
          'adaptive_clip': {'enabled': False, 'target_quantile': 0.5, 'learning_rate': 0.2,
                            'count_stddev': 0.0}}


class Privacy(NamedTuple):
  """DP of a run: the noise it adds and the epsilon it spends."""
  noise_multiplier: float       # sigma the accountant charges
  update_noise: float           # sigma on the updates (less, if the clip count is noised)
  clip_norm: float              # C: of an update (client) or of an example's gradient
  delta: float
  epsilon_per_round: tuple      # privacy/epsilon after rounds 1..T
  mode: str = 'client'          # 'client' (DP-FedAvg) | 'example' (DP-SGD)


def client_level(privacy: Optional[Privacy]) -> bool:
  return privacy is not None and privacy.mode == 'client'


def privacy_mode(p) -> str:
  """'client', 'example' or 'none' from `privacy.mode` ('auto': DP once noise is asked for)."""
  if p.mode not in PRIVACY_MODES:
    raise ConfigError(f'privacy.mode={p.mode!r} is not one of {PRIVACY_MODES}')
  asked = p.target_epsilon > 0 or p.noise_multiplier > 0
  if p.mode == 'none' and asked:
    raise ConfigError('privacy.mode=none conflicts with privacy.target_epsilon / '
                      'privacy.noise_multiplier > 0')
  if p.mode == 'auto':
    return 'client' if asked else 'none'
  return p.mode


def make_privacy(config, problem: Optional[FederatedProblem] = None,
                 source=None) -> Optional[Privacy]:
  """Calibrates sigma for a target epsilon, or accounts the given sigma (None: no DP).

  Example mode reads every client's example count from `problem` on `source`.
  """
  p = config.privacy
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
    return _example_privacy(config, problem, source)
  if (p.noise_multiplier > 0 or p.target_epsilon > 0) and math.isinf(p.clip_norm):
    raise ConfigError('client-level DP needs a finite privacy.clip_norm (the bound on one '
                      "client's update)")
  sizes = dict(rounds=config.num_rounds, cohort_size=config.cohort_size,
               population=config.population_size, sampling=p.sampling, accountant=p.accountant)
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


def example_counts(problem: FederatedProblem, source, population: int) -> np.ndarray:
  """[P] train example counts of the population (round 0: no source changes them)."""
  count = lambda c: problem.client_data(source, c, 'train', 0)['num_examples']
  # Only the counts leave the jit: the examples themselves are never built.
  return np.asarray(jax.jit(jax.vmap(count))(jnp.arange(population)))


def _example_privacy(config, problem, source) -> Privacy:
  """DP-SGD in local training: sigma and the worst client's epsilon (`privacy.dpsgd`)."""
  p = config.privacy
  if not p.example_clip > 0:
    raise ConfigError(f'privacy.example_clip must be > 0, got {p.example_clip}')
  if (p.noise_multiplier > 0 or p.target_epsilon > 0) and math.isinf(p.example_clip):
    raise ConfigError('example-level DP needs a finite privacy.example_clip (the bound on '
                      "one example's gradient)")
  if p.adaptive_clip.enabled:
    raise ConfigError('privacy.adaptive_clip with privacy.mode=example: adaptive clipping '
                      "is DP-FedAvg's (client level); DP-SGD clips to privacy.example_clip")
  if problem is None:
    raise ConfigError("privacy.mode=example needs the problem and its source (the clients' "
                      'example counts)')
  energy = accounting.worst_occurrence_energy(
      example_counts(problem, source, config.population_size),
      batch_size=config.batch_size, steps=config.local_steps)
  sizes = dict(rounds=config.num_rounds, energy=energy, accountant=p.accountant)
  sigma = p.noise_multiplier
  if p.target_epsilon > 0:
    sigma = accounting.calibrate_example_noise(p.target_epsilon, delta=p.delta, **sizes)
  epsilons = ()
  if sigma > 0 and 0 < p.delta < 1:
    epsilons = tuple(accounting.example_epsilon_per_round(sigma, delta=p.delta, **sizes))
  return Privacy(float(sigma), float(sigma), float(p.example_clip), float(p.delta),
                 epsilons, 'example')


def make_private_grads(privacy: Optional[Privacy]) -> Optional[Callable]:
  """The DP-SGD hook of local training (None: plain gradients)."""
  if privacy is None or privacy.mode != 'example':
    return None
  return dpsgd.local_grads(clip_norm=privacy.clip_norm,
                           noise_multiplier=privacy.noise_multiplier)


def check_algorithm(privacy: Optional[Privacy], algorithm) -> None:
  """Example-level DP covers the update: refuse an algorithm that reports more."""
  if privacy is not None and privacy.mode == 'example' and algorithm.client_report is not None:
    raise ConfigError(f'privacy.mode=example with algorithm.name={algorithm.name}: its client '
                      'report (computed from raw examples) leaves the device without noise')


def malicious_predicate(config) -> Optional[Callable]:
  """client_id -> bool for the run's fixed malicious set (None: no attacker)."""
  a = config.attack
  if a.model not in MODEL_ATTACKS:
    raise ConfigError(f'attack.model={a.model!r} is not one of {MODEL_ATTACKS}')
  if a.data not in DATA_ATTACKS:
    raise ConfigError(f'attack.data={a.data!r} is not one of {DATA_ATTACKS}')
  attacking = a.model != 'none' or a.data != 'none'
  if attacking and not 0 < a.fraction < 1:
    raise ConfigError(f'attack.model / attack.data need attack.fraction in (0, 1), '
                      f'got {a.fraction}')
  if not attacking:
    return None
  key = rng.stream(jax.random.key(config.seed), rng.ATTACK_STREAM)
  return malicious_lib.predicate(key, a.fraction, config.population_size)


def poison_problem(config, problem: FederatedProblem, spec, is_malicious) -> FederatedProblem:
  """The problem with the attackers' training data poisoned (`attack.data`)."""
  a = config.attack
  if a.data == 'none':
    return problem
  if a.data == 'label_flip':
    return poisoning.label_flip(problem, is_malicious, spec.num_classes)
  b = a.backdoor
  trig = poisoning.trigger(spec.modalities, spec.tasks, spec.num_classes,
                           modality=b.modality, task=b.task or None, target=b.target,
                           size=b.size, value=b.value, fraction=b.fraction)
  key = jax.random.fold_in(rng.stream(jax.random.key(config.seed), rng.ATTACK_STREAM), 1)
  return poisoning.backdoor(problem, is_malicious, trig, key)


def make_transforms(config, is_malicious, privacy: Optional[Privacy]
                    ) -> transforms_lib.UpdateTransform:
  """The chain of client update transforms (see the module docstring)."""
  chain = []
  if is_malicious is not None:
    attack = transform_registry.make_attack(config.attack, is_malicious)
    if attack is not None:
      chain.append(attack)
  if config.model.lora_rank and config.lora.hetlora_weights:
    chain.append(hetlora(scale=config.model.lora_alpha / config.model.lora_rank))
  compression = transform_registry.make_compression(config.compression)
  if compression is not None:
    chain.append(compression)
  if client_level(privacy):
    chain += [clip_lib.uniform_weights(),
              clip_lib.clip(privacy.clip_norm, adaptive=config.privacy.adaptive_clip.enabled)]
  elif privacy is not None:
    chain.append(clip_lib.example_count_weights())
  return transforms_lib.chain(*chain)


def _check_combinations(config, topology_kind: str, privacy):
  # Example-level DP protects each upload itself: whatever the server or a
  # neighbour does with it is post-processing.
  privacy = privacy if client_level(privacy) else None
  name, central = config.aggregator.name, topology_kind in topology_registry.CENTRAL
  exact = config.model.lora_rank and config.lora.rule in lora_rules.EXACT_RULES
  omniscient_attack = config.attack.model in ('alie', 'ipm')
  if not central and (name != 'mean' or privacy is not None or omniscient_attack):
    what = (f'aggregator.name={name}' if name != 'mean' else
            'client-level DP' if privacy is not None else f'attack.model={config.attack.model}')
    raise ConfigError(f'not supported yet: {what} with topology.kind={topology_kind} '
                      '(it needs a central server that sees every upload)')
  if privacy is not None and name != 'mean':
    raise ConfigError(f'client-level DP with aggregator.name={name}: the DP mean is the '
                      "aggregator whose output one client's clipped update moves by at most "
                      'C / m; a robust aggregator breaks that bound')
  if privacy is not None and config.model.lora_rank and config.lora.hetlora_weights:
    raise ConfigError('client-level DP with lora.hetlora_weights: DP weighs every client '
                      'the same (norm-based weights would leak)')
  if exact and (name != 'mean' or privacy is not None):
    raise ConfigError(f'not supported yet: lora.rule={config.lora.rule} with '
                      f"{'client-level DP' if privacy is not None else 'aggregator.name=' + name}"
                      ' (the exact residual folds every client\'s own factors)')
  if name in ('krum', 'multi_krum', 'median', 'trimmed_mean', 'geometric_median') and (
      config.attack.fraction >= 0.5 and (config.attack.model != 'none'
                                         or config.attack.data != 'none')):
    raise ConfigError(f'attack.fraction={config.attack.fraction} >= 0.5 with '
                      f'aggregator.name={name}: no robust aggregator withstands a malicious '
                      'majority (breakdown point 1/2)')


def make_aggregator(config, topology_kind: str, is_malicious, privacy: Optional[Privacy]):
  """The server's aggregator (None: the default streamed mean)."""
  _check_combinations(config, topology_kind, privacy)
  aggregator = None
  if client_level(privacy):
    p = config.privacy.adaptive_clip
    adaptive = (dp_mean_lib.AdaptiveClip(p.target_quantile, p.learning_rate, p.count_stddev)
                if p.enabled else None)
    keep = ('lora_residual',) if config.model.lora_rank else ()
    aggregator = dp_mean_lib.dp_mean(noise_multiplier=privacy.update_noise,
                                     expected_cohort_size=config.cohort_size,
                                     clip_norm=privacy.clip_norm, adaptive=adaptive,
                                     keep_roles=keep)
  elif config.model.lora_rank and config.lora.rule in lora_rules.EXACT_RULES:
    aggregator = exact_lora(config.lora.rule,
                            scale=config.model.lora_alpha / config.model.lora_rank)
  elif config.aggregator.name != 'mean':
    aggregator = aggregator_registry.make(config.aggregator, config.cohort_size)
  if config.attack.model in ('alie', 'ipm'):
    a = config.attack
    attack = (omniscient.alie(a.alie.z or None) if a.model == 'alie'
              else omniscient.ipm(a.ipm.epsilon))
    inner = aggregator or aggregator_registry.make({'name': 'mean'}, config.cohort_size)
    aggregator = omniscient.with_attack(inner, attack, is_malicious)
  return aggregator
