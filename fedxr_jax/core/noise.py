"""The Gaussian mechanism's noise on a pytree, keys split leaf by leaf."""
import jax
import jax.numpy as jnp


def add_gaussian_noise(tree, stddev, key):
  """tree + N(0, stddev^2) on every coordinate; leaf i draws from split(key)[i].

  Noise is drawn in float32 and added at the leaf's dtype.
  """
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(key, max(len(leaves), 1))
  noisy = [(x + stddev * jax.random.normal(k, x.shape, jnp.float32)).astype(x.dtype)
           for x, k in zip(leaves, keys)]
  return jax.tree.unflatten(treedef, noisy)
