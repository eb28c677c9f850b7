"""LoRA aggregation rules as a feature of a run: `contribute(config.lora, run)`.

The tuning-plan rules (fedit, ffa, fedsa: `lora_rules.plan_modes`) need
nothing here; HetLoRA's weights are an update transform at the 'reweight'
place of the chain, and the exact rules (exact, flora) take the place of
the server's aggregator (`aggregators.exact_lora`).
"""
import dataclasses

from fedxr_jax.aggregators.exact_lora import exact_lora
from fedxr_jax.algorithms import lora_rules
from fedxr_jax.core.contribution import Contribution
from fedxr_jax.errors import ConfigError
from fedxr_jax.transforms.hetlora import hetlora


@dataclasses.dataclass(frozen=True)
class Settings:
  """The `lora` block: rule fedit | ffa | fedsa | exact | flora
  (`algorithms.lora_rules`); device_ranks: a rank per data.devices entry
  (heterogeneous, zero-padded); hetlora_weights: HetLoRA's aggregation weights."""
  rule: str = 'fedit'
  device_ranks: tuple = ()
  hetlora_weights: bool = False


def contribute(lc, run) -> Contribution:
  """`lc`: the `lora` block; `run.model` (a ModelDef) gives its rank and alpha / rank."""
  rank, scale = run.model.lora_rank, run.model.lora_scale
  ranks = tuple(lc.device_ranks)
  devices = getattr(run.spec, 'devices', ())
  if ranks and len(ranks) != len(devices):
    raise ConfigError(f'lora.device_ranks has {len(ranks)} entries for '
                      f'{len(devices)} data.devices')
  if any(not 1 <= r <= rank for r in ranks):
    raise ConfigError(f'lora.device_ranks={ranks} must be in [1, the model\'s LoRA rank {rank}]')
  exact = lc.rule in lora_rules.EXACT_RULES
  if exact and ranks:
    raise ConfigError(f'not supported yet: lora.rule={lc.rule} with lora.device_ranks '
                      '(heterogeneous ranks)')
  if lc.hetlora_weights and lc.rule in ('ffa', 'fedsa'):
    raise ConfigError(f'not supported yet: lora.hetlora_weights with lora.rule={lc.rule} '
                      '(HetLoRA weighs by both factors, and one is not shared)')
  if not rank:
    return Contribution('lora')
  reweight = lc.hetlora_weights
  return Contribution(
      'lora', transforms=((('reweight', hetlora(scale=scale)),) if reweight else ()),
      aggregator=exact_lora(lc.rule, scale=scale) if exact else None,
      update_weights='lora.hetlora_weights' if reweight else '',
      check=(lambda caps: _check_exact(lc.rule, caps)) if exact else None)


def _check_exact(rule: str, caps) -> None:
  if not caps.topology.has_server:
    raise ConfigError(f'not supported yet: lora.rule={rule} with topology.kind='
                      f'{caps.topology.kind} (the residual needs the central average)')
  other = next((c.feature for c in caps.others if c.aggregator is not None), None)
  if other is not None or not caps.aggregator.dp_safe:
    what = ('client-level DP' if other == 'privacy' else other if other is not None
            else f'aggregator.name={caps.aggregator_name}')
    raise ConfigError(f'not supported yet: lora.rule={rule} with {what} (the exact residual '
                      "folds every client's own factors)")
