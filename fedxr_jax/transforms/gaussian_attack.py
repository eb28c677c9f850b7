"""Gaussian attack: malicious clients send N(0, sigma^2) noise instead of their update."""
import jax
import jax.numpy as jnp

from fedxr_jax.core import transforms
from fedxr_jax.core import trees
from fedxr_jax.errors import ConfigError


def gaussian_attack(sigma: float = 1.0) -> transforms.UpdateTransform:
  """Every coordinate of an attacker's update is drawn N(0, sigma^2) from its key.

  Stat 'attack/gaussian/clients' counts the cohort's attackers.
  """
  if sigma <= 0:
    raise ConfigError(f'attack.gaussian.sigma must be > 0, got {sigma}')

  def update(update, key, weights, info):
    bad = info.data['malicious']
    leaves, treedef = jax.tree.flatten(update)
    keys = jax.random.split(key, len(leaves))
    noise = [(sigma * jax.random.normal(k, u.shape, jnp.float32)).astype(u.dtype)
             for k, u in zip(keys, leaves)]
    return (trees.where_tree(bad, jax.tree.unflatten(treedef, noise), update), weights,
            {'attack/gaussian/clients': bad.astype(jnp.float32)})

  return transforms.stateless(update)
