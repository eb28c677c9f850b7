"""The CPU-friendly attention equals plain autodiff attention, value and gradient."""
import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.models.attention import attention


def _reference(q, k, v, bias):
  logits = jnp.einsum('...qd,...kd->...qk', q, k) / np.sqrt(q.shape[-1]) + bias
  return jnp.einsum('...qk,...kd->...qd', jax.nn.softmax(logits, -1), v)


def test_attention_value_and_gradients_match_autodiff():
  keys = jax.random.split(jax.random.key(0), 5)
  q, k, v = (jax.random.normal(kk, (3, 2, 5, 4)) for kk in keys[:3])
  bias = jnp.where(jax.random.bernoulli(keys[3], 0.7, (3, 1, 1, 5)), 0.0, -1e9)
  bias = bias.at[..., 0].set(0.0)   # every query sees at least one key
  w = jax.random.normal(keys[4], (3, 2, 5, 4))
  loss = lambda f: lambda *a: jnp.sum(w * f(*a))
  np.testing.assert_allclose(attention(q, k, v, bias), _reference(q, k, v, bias),
                             rtol=1e-5, atol=1e-6)
  got = jax.grad(loss(attention), argnums=(0, 1, 2, 3))(q, k, v, bias)
  want = jax.grad(loss(_reference), argnums=(0, 1, 2, 3))(q, k, v, bias)
  for g, r in zip(got, want):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)


def test_attention_under_vmap_matches():
  q = jax.random.normal(jax.random.key(1), (4, 2, 3, 6, 8))
  bias = jnp.zeros((4, 2, 1, 1, 6))
  f = lambda a, b: jnp.sum(attention(a, a, a, b) ** 2)
  g = lambda a, b: jnp.sum(_reference(a, a, a, b) ** 2)
  np.testing.assert_allclose(jax.vmap(jax.grad(f))(q, bias),
                             jax.vmap(jax.grad(g))(q, bias), rtol=1e-4, atol=1e-5)
