"""Model replacement (Bagdasaryan et al. 2020): malicious clients scale their update by gamma.

With gamma = cohort / server learning rate, an attacker's model X replaces
the global G: G + (eta / n) * gamma (X - G) = X when the honest updates
roughly cancel. Pair it with a backdoor (attacks.poisoning.backdoor) so
the replacing model carries one.
"""
import jax
import jax.numpy as jnp

from fedxr_jax.core import transforms
from fedxr_jax.core import trees
from fedxr_jax.errors import ConfigError


def scaled_replacement(gamma: float = 10.0) -> transforms.UpdateTransform:
  """Attackers send gamma * update. Stat 'attack/scaled_replacement/clients'."""
  if gamma <= 0:
    raise ConfigError(f'attack.scaled_replacement.gamma must be > 0, got {gamma}')

  def update(update, key, weights, info):
    del key
    bad = info.data['malicious']
    scaled = jax.tree.map(lambda u: (gamma * u).astype(u.dtype), update)
    return (trees.where_tree(bad, scaled, update), weights,
            {'attack/scaled_replacement/clients': bad.astype(jnp.float32)})

  return transforms.stateless(update)
