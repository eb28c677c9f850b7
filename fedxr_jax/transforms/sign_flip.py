"""Sign flipping: malicious clients send -scale * their update."""
import jax
import jax.numpy as jnp

from fedxr_jax.core import transforms
from fedxr_jax.core import trees
from fedxr_jax.errors import ConfigError


def sign_flip(scale: float = 1.0) -> transforms.UpdateTransform:
  """The client knows it attacks: `data['malicious']` (`attacks.malicious.mark`).

  Honest clients' updates pass through value for value (a select, so their
  sent model is start + update rather than the trained leaf bit for bit).
  Stat 'attack/sign_flip/clients' counts the cohort's attackers.
  """
  if scale <= 0:
    raise ConfigError(f'attack.sign_flip.scale must be > 0, got {scale}')

  def update(update, key, weights, info):
    del key
    bad = info.data['malicious']
    flipped = jax.tree.map(lambda u: (-scale * u).astype(u.dtype), update)
    return (trees.where_tree(bad, flipped, update), weights,
            {'attack/sign_flip/clients': bad.astype(jnp.float32)})

  return transforms.stateless(update)
