"""Test helpers."""
import jax
import numpy as np


def assert_trees_equal(a, b):
  """Bit-for-bit equality of two pytrees of arrays."""
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def assert_trees_close(a, b, rtol, atol):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def run_rounds(federation, world, num_rounds):
  server, clients, frozen = jax.jit(federation.init)()
  round_fn = jax.jit(federation.round)
  for _ in range(num_rounds):
    server, clients, _ = round_fn(server, clients, frozen, world)
  return server, clients
