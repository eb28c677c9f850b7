"""Where a user is at a round: mobility as a pure function of (client, round)."""
import jax
import jax.numpy as jnp


def walk(client_key, round_idx, area_m: float, walk_m_per_round: float):
  """[2] metres in [0, area_m]^2.

  Each user walks a circle of its own around a home point at
  `walk_m_per_round` per round: no state to carry or checkpoint.
  """
  key = jax.random.fold_in(client_key, 0x9051)
  u = jax.random.uniform(key, (4,))
  home = u[:2] * area_m
  radius = 0.05 * area_m * (0.5 + u[2])
  angle = 2 * jnp.pi * u[3] + round_idx * walk_m_per_round / radius
  pos = home + radius * jnp.stack([jnp.cos(angle), jnp.sin(angle)])
  return jnp.clip(pos, 0.0, area_m)
