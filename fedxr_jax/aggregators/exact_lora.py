"""Exact LoRA aggregation: FedEx-LoRA (rule 'exact') and FLoRA (rule 'flora').

Both need each client's product s A_i^T B_i, which the streamed mean never
stacks: each client adds w_i s A_i^T B_i to the chunked sums beside the
inner mean, and after the server step (where the round syncs) the average
product is folded into `lora_residual`, a dense [in, out] term per adapted
layer (stop_gradient in the forward pass, weight 0 so it is downloaded but
never uploaded):
  exact  keep the averaged factors A, B (after any server optimizer) and fold
         s sum_i p_i A_i^T B_i - s A^T B, so the global model is exactly
         W + s sum_i p_i A_i^T B_i whatever the server optimizer is;
  flora  fold the whole average product and restart the adapter (B = 0; A
         keeps its average, which with B = 0 adds nothing).
Tested: the effective s A^T B + R equals sum_i p_i s A_i^T B_i computed
from each client's own factors.
"""
import jax
import jax.numpy as jnp
from flax import traverse_util

from fedxr_jax.models import lora as lora_math
from fedxr_jax.core import aggregation
from fedxr_jax.errors import ConfigError


RULES = ('exact', 'flora')   # what `rule` may be (algorithms.lora_rules.EXACT_RULES)


def _scalar_weight(w):
  """The LoRA weight of a client as one number (per-rank weights: their max)."""
  return jnp.max(w) if w.ndim else w


def exact_lora(rule: str, *, scale: float,
               inner: aggregation.Aggregator = None) -> aggregation.Aggregator:
  inner = inner or aggregation.weighted_mean()
  if rule not in RULES:
    raise ConfigError(f'exact LoRA aggregation needs lora.rule in {RULES}, got {rule!r}')
  if inner.stacked:
    raise ConfigError(f'not supported yet: lora.rule={rule} with a stacked aggregator '
                      f'({inner.name})')

  def contribute(client: aggregation.ClientUpdate):
    w = _scalar_weight(jax.tree.leaves(client.weights['lora_b'])[0])
    prods = lora_math.products(client.model['lora_a'], client.model['lora_b'], scale)
    return {'mean': inner.contribute(client),
            'rule': {'product': jax.tree.map(lambda d: w * d, prods), 'weight': w}}

  def aggregate(shared, state, sums, key):
    return inner.aggregate(shared, state, sums['mean'], key)

  def after_server(shared, state, sums):
    del state
    sums = sums['rule']
    total = sums['weight']
    mean_product = jax.tree.map(lambda d: d / jnp.maximum(total, 1e-12), sums['product'])
    held = total > 0
    flat = traverse_util.flatten_dict(shared['lora_residual'])
    if rule == 'exact':   # FedEx: keep the averaged factors, fold what they miss
      averaged = lora_math.products(shared['lora_a'], shared['lora_b'], scale)
      folded = {p: jnp.where(held, r + mean_product[p[:-1]] - averaged[p[:-1]], r)
                for p, r in flat.items()}
      return {**shared, 'lora_residual': traverse_util.unflatten_dict(folded)}
    # FLoRA: fold the whole product and restart the adapter from B = 0.
    folded = {p: jnp.where(held, r + mean_product[p[:-1]], r) for p, r in flat.items()}
    restarted = jax.tree.map(lambda b: jnp.where(held, jnp.zeros_like(b), b),
                             shared['lora_b'])
    return {**shared, 'lora_residual': traverse_util.unflatten_dict(folded),
            'lora_b': restarted}

  return aggregation.Aggregator(f'{rule}_lora', aggregate, contribute, inner.init,
                                after_server)
