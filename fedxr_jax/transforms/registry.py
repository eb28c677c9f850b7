"""Update transforms by config block: model-poisoning attacks and compression.

  attack.model       none | sign_flip | gaussian | scaled_replacement
                     (per client; alie and ipm need the round's honest
                     updates and wrap the aggregator: aggregators.omniscient)
  compression.name   none | topk | qsgd | sign, optionally behind an event
                     trigger (compression.event_threshold > 0)
Each name's settings are its own block (attack.sign_flip.scale, ...), the
factory's defaults.
"""
import dataclasses

from fedxr_jax.core import registry
from fedxr_jax.core.contribution import Contribution
from fedxr_jax.transforms import event_trigger
from fedxr_jax.transforms import gaussian_attack
from fedxr_jax.transforms import qsgd
from fedxr_jax.transforms import scaled_replacement
from fedxr_jax.transforms import sign
from fedxr_jax.transforms import sign_flip
from fedxr_jax.transforms import topk

@dataclasses.dataclass(frozen=True)
class Compression:
  """The `compression` block's own keys: `name` none | topk | qsgd | sign (error
  feedback kept per client); event_threshold > 0: a client uploads only when
  its update's norm reaches it (accumulating what it holds back when
  event_accumulate). Each compressor's settings are its own block."""
  name: str = 'none'
  event_threshold: float = 0.0
  event_accumulate: bool = True


ATTACKS = {
    'sign_flip': sign_flip.sign_flip,
    'gaussian': gaussian_attack.gaussian_attack,
    'scaled_replacement': scaled_replacement.scaled_replacement,
}
COMPRESSORS = {'topk': topk.topk, 'qsgd': qsgd.qsgd, 'sign': sign.scaled_sign}


def make_attack(block):
  """The model-poisoning transform of `attack.model` (None for 'none')."""
  name = block['model']
  if name == 'none' or name not in ATTACKS:
    return None
  return registry.make(ATTACKS[name], block[name], f'attack.{name}')


def make_compression(block):
  """The compression transform of `compression` (None when nothing is compressed)."""
  name = block['name']
  compressor = None
  if name != 'none':
    factory = registry.pick(COMPRESSORS, name, 'compression.name')
    compressor = registry.make(factory, block[name], f'compression.{name}')
  if block['event_threshold'] > 0:
    return event_trigger.event_trigger(block['event_threshold'],
                                       accumulate=block['event_accumulate'],
                                       compressor=compressor)
  return compressor


def contribute(block, run) -> Contribution:
  """Uplink compression as a feature: its transform at the 'compression' place."""
  del run
  compressor = make_compression(block)
  return Contribution('compression', transforms=(
      () if compressor is None else (('compression', compressor),)))
