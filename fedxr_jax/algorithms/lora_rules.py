"""How LoRA factors are aggregated (`--config.lora.rule`).

Factors are the trees `lora_a` (A [r, in]) and `lora_b` (B [r, out]) of
`models.lora.LoRADense`; the adapted layer is W + s A^T B with s = alpha / r.

  fedit  A and B averaged separately (Zhang et al. 2024): inexact, since
         mean(A)^T mean(B) != mean(A^T B) when clients differ
  ffa    FFA-LoRA (Sun et al. 2024): A frozen at its random init, B averaged
  fedsa  FedSA-LoRA (Guo et al. 2025): A averaged, each client keeps its B
  exact  FedEx-LoRA (Singhal et al. 2025): FedIT plus the residual
         s (sum_i p_i A_i^T B_i - A^T B) (A, B: the new global factors) folded into the frozen
         base (the `lora_residual` tree), so the global model is exactly
         W + s sum_i p_i A_i^T B_i
  flora  FLoRA (Wang et al. 2024): the stacked product s sum_i p_i A_i^T B_i
         folded into the base, then LoRA restarts (B = 0; A keeps its
         average, which with B = 0 adds nothing): the same exact global
         model, but each round's adapter starts from zero

Heterogeneous ranks (`lora.device_ranks`) are zero-padded to r_max: a client
of rank r_i holds only the first r_i slices of A and B, so each rank slice is
averaged over the clients that hold it (`training.xr_problem`). HetLoRA's
sparsity-weighted aggregation (Cho et al. 2024) optionally scales a client's
LoRA weight by ||s A_i^T B_i||_F.
"""
from typing import Optional

import jax
import jax.numpy as jnp
from flax import traverse_util

from fedxr_jax.core import plan as plan_lib
from fedxr_jax.core import round as round_lib
from fedxr_jax.core import trees
from fedxr_jax.errors import ConfigError

RULES = ('fedit', 'ffa', 'fedsa', 'exact', 'flora')
EXACT_RULES = ('exact', 'flora')


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


def layers(tree: dict) -> dict:
  """{layer path: leaf} of a lora_a / lora_b / lora_residual tree."""
  return {path[:-1]: leaf for path, leaf in traverse_util.flatten_dict(tree).items()}


def products(a_tree: dict, b_tree: dict, scale: float) -> dict:
  """{layer path: s A^T B} for matching factor trees."""
  a, b = layers(a_tree), layers(b_tree)
  return {p: scale * a[p].T @ b[p] for p in a}


def _scalar_weight(w):
  """The LoRA weight of a client as one number (per-rank weights: their max)."""
  return jnp.max(w) if w.ndim else w


def make_rule(rule: str, *, scale: float, hetlora_weights: bool = False,
              heterogeneous: bool = False) -> Optional[round_lib.AggregationRule]:
  """The round's AggregationRule for `rule` (None: plain masked averaging)."""
  if rule in EXACT_RULES and heterogeneous:
    raise ConfigError(f'not supported yet: lora.rule={rule} with lora.device_ranks '
                      '(heterogeneous ranks)')
  if hetlora_weights and rule in ('ffa', 'fedsa'):
    raise ConfigError(f'not supported yet: lora.hetlora_weights with lora.rule={rule} '
                      '(HetLoRA weighs by both factors, and one is not shared)')
  reweight = client_terms = fold = None

  if hetlora_weights:
    def reweight(weights, trained, data):
      mask = (jnp.arange(jax.tree.leaves(trained['lora_a'])[0].shape[0])
              < data.get('lora_rank', 1 << 30)).astype(jnp.float32)
      masked = {r: jax.tree.map(lambda x: x * trees.expand_weight(mask, x), trained[r])
                for r in ('lora_a', 'lora_b')}
      norm = jnp.sqrt(sum(jnp.sum(d ** 2) for d in products(
          masked['lora_a'], masked['lora_b'], scale).values()))
      return {**weights, **{r: jax.tree.map(lambda w: w * norm, weights[r])
                            for r in ('lora_a', 'lora_b') if r in weights}}

  if rule in EXACT_RULES:
    def client_terms(trained, weights, data):
      del data
      w = _scalar_weight(jax.tree.leaves(weights['lora_b'])[0])
      prods = products(trained['lora_a'], trained['lora_b'], scale)
      return {'product': jax.tree.map(lambda d: w * d, prods), 'weight': w}

    def fold(shared, target, sums):
      total = sums['weight']
      mean_product = jax.tree.map(lambda d: d / jnp.maximum(total, 1e-12), sums['product'])
      held = total > 0
      flat = traverse_util.flatten_dict(shared['lora_residual'])
      if rule == 'exact':   # FedEx: keep the averaged factors, fold what they miss
        # The factors the model keeps (after any server optimizer), so the
        # global model is exact whatever that optimizer is.
        averaged = products(shared['lora_a'], shared['lora_b'], scale)
        folded = {p: jnp.where(held, r + mean_product[p[:-1]] - averaged[p[:-1]], r)
                  for p, r in flat.items()}
        return {**shared, 'lora_residual': traverse_util.unflatten_dict(folded)}
      # FLoRA: fold the whole product and restart the adapter from B = 0.
      folded = {p: jnp.where(held, r + mean_product[p[:-1]], r) for p, r in flat.items()}
      restarted = jax.tree.map(lambda b: jnp.where(held, jnp.zeros_like(b), b),
                               shared['lora_b'])
      return {**shared, 'lora_residual': traverse_util.unflatten_dict(folded),
              'lora_b': restarted}

  if reweight is None and client_terms is None:
    return None
  return round_lib.AggregationRule(reweight=reweight, client_terms=client_terms, fold=fold)
