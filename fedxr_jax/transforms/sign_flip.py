"""Sign flipping: malicious clients send -scale * their update."""
from typing import Callable

import jax
import jax.numpy as jnp

from fedxr_jax.core import transforms
from fedxr_jax.core import trees
from fedxr_jax.errors import ConfigError


def sign_flip(is_malicious: Callable, scale: float = 1.0) -> transforms.UpdateTransform:
  """is_malicious: client_id -> bool scalar (attacks.malicious.predicate).

  Honest clients' updates pass through value for value (a select, so their
  sent model is start + update rather than the trained leaf bit for bit).
  Stat 'attack/sign_flip/clients' counts the cohort's attackers.
  """
  if scale <= 0:
    raise ConfigError(f'attack.sign_flip.scale must be > 0, got {scale}')

  def update(update, key, weights, info):
    del key
    bad = is_malicious(info.client_id)
    flipped = jax.tree.map(lambda u: (-scale * u).astype(u.dtype), update)
    return (trees.where_tree(bad, flipped, update), weights,
            {'attack/sign_flip/clients': bad.astype(jnp.float32)})

  return transforms.stateless(update)
