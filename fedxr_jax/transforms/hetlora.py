"""HetLoRA's sparsity-weighted aggregation (Cho et al. 2024).

Scales a client's LoRA module weights by ||s A_i^T B_i||_F of its trained
factors (masked to its own rank), so clients whose adapters moved more weigh
more. Only the weights change: the update is sent as it is.
"""
import jax
import jax.numpy as jnp

from fedxr_jax.models import lora as lora_math
from fedxr_jax.core import transforms
from fedxr_jax.core import trees

FACTORS = ('lora_a', 'lora_b')


def hetlora(*, scale: float) -> transforms.UpdateTransform:

  def update(update, key, weights, info):
    del key
    trained = info.trained
    mask = (jnp.arange(jax.tree.leaves(trained['lora_a'])[0].shape[0])
            < info.data.get('lora_rank', 1 << 30)).astype(jnp.float32)
    masked = {r: jax.tree.map(lambda x: x * trees.expand_weight(mask, x), trained[r])
              for r in FACTORS}
    norm = jnp.sqrt(sum(jnp.sum(d ** 2) for d in lora_math.products(
        masked['lora_a'], masked['lora_b'], scale).values()))
    weights = {**weights, **{r: jax.tree.map(lambda w: w * norm, weights[r])
                             for r in FACTORS if r in weights}}
    return update, weights, {}

  return transforms.stateless(update)
