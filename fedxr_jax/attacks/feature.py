"""Poisoning as a feature of a run: `contribute(config.attack, run)`.

A fixed fraction of the population is malicious (`attacks.malicious`, drawn
from the seed into the run's source, so two seeds are one program); every
client's data says whether it is one (`malicious.mark`). What they do:
  model   sign_flip | gaussian | scaled_replacement: an update transform at
          the 'attack' place of the chain (`transforms.registry.ATTACKS`);
          alie | ipm: omniscient, they read the honest uploads, so they wrap
          the server's aggregator (`aggregators.omniscient`) and need a
          server that sees every upload;
  data    label_flip | backdoor: the attackers' training data
          (`attacks.poisoning`).
"""
import dataclasses

import jax

from fedxr_jax.aggregators import omniscient
from fedxr_jax.attacks import malicious
from fedxr_jax.attacks import poisoning
from fedxr_jax.core import registry
from fedxr_jax.core import rng
from fedxr_jax.core.contribution import Contribution
from fedxr_jax.errors import ConfigError
from fedxr_jax.transforms import registry as transform_registry

OMNISCIENT = {'alie': omniscient.alie, 'ipm': omniscient.ipm}
MODEL_ATTACKS = ('none',) + tuple(transform_registry.ATTACKS) + tuple(OMNISCIENT)
DATA_ATTACKS = ('none', 'label_flip', 'backdoor')


@dataclasses.dataclass(frozen=True)
class Settings:
  """The `attack` block's own keys: `fraction` of the population is malicious
  (drawn from the seed); `model`: none | sign_flip | gaussian |
  scaled_replacement | alie | ipm; `data`: none | label_flip | backdoor.
  Each attack's settings are its own block (attack.sign_flip.scale, ...)."""
  fraction: float = 0.0
  model: str = 'none'
  data: str = 'none'


@dataclasses.dataclass(frozen=True)
class Backdoor:
  """A trigger patch on `modality`, relabelled to `target` of `task` ('': the
  first task), on `fraction` of an attacker's examples (`poisoning.trigger`)."""
  modality: str = 'vision'
  task: str = ''
  target: int = 0
  size: int = 4
  value: float = 4.0
  fraction: float = 0.5




def check(a) -> bool:
  """Names and the fraction, in one line each; whether anyone attacks."""
  if a.model not in MODEL_ATTACKS:
    raise ConfigError(f'attack.model={a.model!r} is not one of {MODEL_ATTACKS}')
  if a.data not in DATA_ATTACKS:
    raise ConfigError(f'attack.data={a.data!r} is not one of {DATA_ATTACKS}')
  attacking = a.model != 'none' or a.data != 'none'
  if attacking and not 0 < a.fraction < 1:
    raise ConfigError(f'attack.model / attack.data need attack.fraction in (0, 1), '
                      f'got {a.fraction}')
  return attacking


def source_arrays(a, population: int):
  """seed -> the malicious set (and the backdoor's draws) as data of the source."""

  def arrays(seed: int) -> dict:
    key = rng.stream(jax.random.key(seed), rng.ATTACK_STREAM)
    out = malicious.source_arrays(key, a.fraction, population)
    if a.data == 'backdoor':
      out[poisoning.KEY] = jax.device_get(jax.random.key_data(jax.random.fold_in(key, 1)))
    return out

  return arrays


def poison(a, spec, population: int):
  """problem -> the problem with its attackers marked and their data poisoned."""
  trig = None
  if a.data == 'backdoor':
    b = a.backdoor
    trig = poisoning.trigger(spec.modalities, spec.tasks, spec.num_classes,
                             modality=b.modality, task=b.task or None, target=b.target,
                             size=b.size, value=b.value, fraction=b.fraction)

  def wrap(problem):
    problem = malicious.mark(problem, population)
    if a.data == 'label_flip':
      return poisoning.label_flip(problem, spec.num_classes)
    if a.data == 'backdoor':
      return poisoning.backdoor(problem, trig)
    return problem

  return wrap


def contribute(a, run) -> Contribution:
  """The run's attackers from its `attack` block (an empty contribution: none)."""
  if not check(a):
    return Contribution('attack')
  population = run.facts.population_size
  transforms, wrap_aggregator, needs_server = [], None, ''
  if a.model in transform_registry.ATTACKS:
    transforms.append(('attack', transform_registry.make_attack(a)))
  if a.model in OMNISCIENT:
    attack = registry.make(OMNISCIENT[a.model], a[a.model], f'attack.{a.model}')
    transforms.append(('report', malicious.report()))
    wrap_aggregator = lambda inner: omniscient.with_attack(inner, attack)
    needs_server = f'attack.model={a.model}'
  wrap_problem = poison(a, run.spec, population)
  return Contribution('attack', transforms=tuple(transforms), wrap_aggregator=wrap_aggregator,
                      wrap_problem=wrap_problem,
                      source_arrays=source_arrays(a, population),
                      needs_server=needs_server, check=lambda caps: _check(a, caps))


def _check(a, caps) -> None:
  if caps.aggregator.robust and a.fraction >= 0.5:
    raise ConfigError(f'attack.fraction={a.fraction} >= 0.5 with aggregator.name='
                      f'{caps.aggregator_name}: no robust aggregator withstands a malicious '
                      'majority (breakdown point 1/2)')
