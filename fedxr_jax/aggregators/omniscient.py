"""Omniscient model poisoning: attackers who see the honest updates of the round.

ALIE ("A little is enough", Baruch et al. 2019) and IPM (inner product
manipulation, Xie et al. 2020) craft the attackers' update from the honest
clients' statistics of the round, which a per-client transform in a
vectorized round cannot see. `with_attack` wraps an aggregator instead:
it overwrites the stacked uploads of the malicious clients, then runs the
inner aggregator (stacked, or streamed: its contributions are summed here).

Statistics are per coordinate over the honest holders of a module (weight
> 0, per slice for [C, E] weights), each counted once; std is the
population std (ddof 0). A malicious client's update becomes the crafted
one on the modules it holds, and its model `start + crafted`, start being
`model - update`; its weights are kept. n and f (for ALIE's z) count the
round's clients that hold any module, and the malicious among them.
"""
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.scipy import special

from fedxr_jax.core import aggregation
from fedxr_jax.core import held
from fedxr_jax.errors import ConfigError


class OmniscientAttack(NamedTuple):
  name: str
  # (honest mean, honest std, clients n, attackers f) -> the attackers' update leaf.
  craft: Callable


def alie_z(n, f) -> jax.Array:
  """Baruch et al.'s z_max = Phi^-1((n - s) / n), s = floor(n/2 + 1) - f."""
  n = jnp.asarray(n, jnp.float32)
  s = jnp.floor(n / 2 + 1) - f
  # f > n/2 would give Phi^-1(>= 1) = inf: cap it at a finite z.
  return special.ndtri(jnp.clip((n - s) / jnp.maximum(n, 1.0), 0.0, 1.0 - 1e-6))


def alie(z: float = 0.0) -> OmniscientAttack:
  """mean - z std of the honest updates; z from (n, f) by the paper's formula unless > 0."""
  def craft(mean, std, n, f):
    return mean - (alie_z(n, f) if not z else z) * std
  return OmniscientAttack('alie', craft)


def ipm(epsilon: float = 0.1) -> OmniscientAttack:
  """-epsilon times the mean of the honest updates."""
  if epsilon <= 0:
    raise ConfigError(f'attack.ipm.epsilon must be > 0, got {epsilon}')
  return OmniscientAttack('ipm', lambda mean, std, n, f: -epsilon * mean)


def forge(stacked: aggregation.ClientUpdate, attack: OmniscientAttack, bad) -> tuple:
  """(stacked uploads with the malicious ones crafted, attackers in the round)."""
  present = held.holds_any(stacked.weights, 1)
  n = jnp.sum(present, dtype=jnp.int32)
  f = jnp.sum(present & bad, dtype=jnp.int32)

  def leaf(w, u, x):
    mine = held.mask(w, u)
    liar = jnp.broadcast_to(bad.reshape(bad.shape + (1,) * (u.ndim - 1)), u.shape)
    honest = mine & ~liar
    count = jnp.maximum(jnp.sum(honest, axis=0), 1)
    u32 = u.astype(jnp.float32)
    mean = jnp.sum(jnp.where(honest, u32, 0.0), axis=0) / count
    var = jnp.sum(jnp.where(honest, jnp.square(u32 - mean), 0.0), axis=0) / count
    fake = attack.craft(mean, jnp.sqrt(var), n, f)
    swap = mine & liar
    return (jnp.where(swap, fake, u).astype(u.dtype),
            jnp.where(swap, x - u + fake, x).astype(x.dtype))

  pairs = held.map_modules(leaf, stacked.weights, stacked.update, stacked.model)
  first = lambda p: isinstance(p, tuple)
  update = jax.tree.map(lambda p: p[0], pairs, is_leaf=first)
  model = jax.tree.map(lambda p: p[1], pairs, is_leaf=first)
  return stacked._replace(update=update, model=model), f


def with_attack(inner: aggregation.Aggregator,
                attack: OmniscientAttack) -> aggregation.Aggregator:
  """`inner` after the malicious clients' uploads are replaced by `attack`'s.

  Who is malicious: each upload's 'malicious' stat (`attacks.malicious.report`,
  last in the client's transform chain). Always on the stacked path: the
  attack needs every upload.
  """

  def aggregate(shared, state, stacked, key):
    forged, f = forge(stacked, attack, stacked.stats['malicious'] > 0)
    if inner.stacked:
      clients = forged
    else:
      clients = jax.tree.map(lambda x: jnp.sum(x, axis=0), jax.vmap(inner.contribute)(forged))
    target, state, metrics = inner.aggregate(shared, state, clients, key)
    return target, state, {**metrics, f'attack/{attack.name}/clients': f.astype(jnp.float32)}

  return aggregation.Aggregator(f'{inner.name}+{attack.name}', aggregate, init=inner.init,
                               robust=inner.robust,
                                after_server=inner.after_server)
