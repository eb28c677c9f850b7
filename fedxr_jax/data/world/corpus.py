"""World seeds: federations and the public pretraining corpus never share a world.

A federation's world key is fold_in(key(seed), 7) for its config.seed
(`data.sources.make_data`), and config.seed must lie in [0, 2^32)
(`training.checks`). A seed is read here as a 64-bit number whose high word
becomes the key's first word, so for seeds below 2^32 `world_key(seed)` is
exactly that key. Corpus seeds are 2^32 + i: their root keys have first word
1, which no federation seed can produce, so every corpus world is drawn from
a root key no federation uses (the derived world keys then coincide only if
threefry collides, ~2^-64).
"""
import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.errors import ConfigError

WORLD_STREAM = 7                 # as data.sources.make_data
CORPUS_BASE = 1 << 32
FEDERATION_SEEDS = (0, 1 << 32)  # config.seed range, [low, high)


def root_key(seed: int):
  """The PRNG key of a 64-bit seed: key data [seed >> 32, seed & 0xffffffff]."""
  seed = int(seed)
  if not 0 <= seed < 1 << 64:
    raise ConfigError(f'world seed must be in [0, 2^64), got {seed}')
  return jax.random.wrap_key_data(
      jnp.asarray(np.array([seed >> 32, seed & 0xFFFFFFFF], np.uint32)))


def world_key(seed: int):
  """The key `make_world` takes for a world seed (federation or corpus)."""
  return jax.random.fold_in(root_key(seed), WORLD_STREAM)


def corpus_seeds(n: int, start: int = 0) -> tuple:
  """n public-corpus world seeds, disjoint from every federation seed."""
  if n < 0 or start < 0 or start + n > 1 << 32:
    raise ConfigError(f'corpus_seeds: need 0 <= start, 0 <= n, start + n <= 2^32; got '
                      f'n={n}, start={start}')
  return tuple(CORPUS_BASE + start + i for i in range(n))


def is_federation_seed(seed: int) -> bool:
  return FEDERATION_SEEDS[0] <= int(seed) < FEDERATION_SEEDS[1]
