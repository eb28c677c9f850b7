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


def run_rounds(exp, num_rounds):
  """Runs an experiment's federation for `num_rounds`; (server, clients, metrics).

  `exp` is a compose.experiment.Experiment or a tiny.Setup: anything with
  `federation`, `world` and `plan(round_idx)`.
  """
  fed = exp.federation
  server, clients, frozen = jax.jit(fed.init)(exp.world, exp.key)
  round_fn = jax.jit(fed.round)
  metrics = []
  for r in range(num_rounds):
    plan, _ = exp.plan(r)
    server, clients, m = round_fn(server, clients, frozen, exp.world, plan)
    metrics.append(m)
  return server, clients, metrics
