"""How LoRA factors are aggregated (`--config.lora.rule`).

Factors are the trees `lora_a` (A [r, in]) and `lora_b` (B [r, out]) of
`models.lora.LoRADense`; the adapted layer is W + s A^T B with s = alpha / r.

  fedit  A and B averaged separately (Zhang et al. 2024): inexact, since
         mean(A)^T mean(B) != mean(A^T B) when clients differ
  ffa    FFA-LoRA (Sun et al. 2024): A frozen at its random init, B averaged
  fedsa  FedSA-LoRA (Guo et al. 2025): A averaged, each client keeps its B
  exact  FedEx-LoRA (Singhal et al. 2025): FedIT plus the residual folded
         into the frozen base (`aggregators.exact_lora`)
  flora  FLoRA (Wang et al. 2024): the stacked product folded into the base,
         then LoRA restarts (`aggregators.exact_lora`)

The first three are tuning-plan modes of the two factor trees; the exact
rules are an aggregator. Heterogeneous ranks (`lora.device_ranks`) are
zero-padded to r_max: a client of rank r_i holds only the first r_i slices
of A and B, so each rank slice is averaged over the clients that hold it
(`compose.xr_problem`); HetLoRA's sparsity-weighted aggregation is the
update transform `transforms.hetlora`.
"""
from fedxr_jax.aggregators import exact_lora
from fedxr_jax.core import plan as plan_lib
from fedxr_jax.errors import ConfigError

RULES = ('fedit', 'ffa', 'fedsa', 'exact', 'flora')
EXACT_RULES = exact_lora.RULES


def plan_modes(rule: str, lora_mode: str) -> dict:
  """Modes of the trees lora_a, lora_b, lora_residual for a rule."""
  if rule not in RULES:
    raise ConfigError(f'lora.rule={rule!r} is not one of {RULES}')
  if rule != 'fedit' and lora_mode != plan_lib.SHARED:
    raise ConfigError(f'lora.rule={rule} needs plan.lora=shared, got {lora_mode!r}')
  return {
      'fedit': {'lora_a': lora_mode, 'lora_b': lora_mode},
      'ffa': {'lora_a': plan_lib.FROZEN, 'lora_b': plan_lib.SHARED},
      'fedsa': {'lora_a': plan_lib.SHARED, 'lora_b': plan_lib.PERSONAL},
      'exact': {'lora_a': plan_lib.SHARED, 'lora_b': plan_lib.SHARED,
                'lora_residual': plan_lib.SHARED},
      'flora': {'lora_a': plan_lib.SHARED, 'lora_b': plan_lib.SHARED,
                'lora_residual': plan_lib.SHARED},
  }[rule]
