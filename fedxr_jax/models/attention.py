"""Scaled dot-product attention with a backward pass laid out for XLA:CPU.

Layout [..., heads, tokens, head_dim]. XLA:CPU runs a batched matmul fast
only when the left operand contracts over its last dimension; autodiff of
attention produces two products (dK = dS^T Q, dV = P^T dO) that contract
over a middle dimension and run ~3x slower, and XLA folds a plain transpose
back into them. The custom VJP materializes those transposes behind an
optimization barrier, so every product takes the fast path (same math).
"""
import jax
import jax.numpy as jnp


def _transpose(x):
  # The barrier keeps XLA from folding the transpose into the next dot.
  return jax.lax.optimization_barrier(jnp.swapaxes(x, -1, -2))


def _forward(q, k, v, bias):
  scale = q.shape[-1] ** -0.5
  logits = jnp.einsum('...qd,...kd->...qk', q, k) * scale + bias
  probs = jax.nn.softmax(logits, axis=-1)
  return jnp.einsum('...qk,...kd->...qd', probs, v), probs


def _unbroadcast(grad, shape):
  """Sums `grad` over the axes along which an input of `shape` was broadcast."""
  grad = jnp.sum(grad, axis=tuple(range(grad.ndim - len(shape))))
  axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
  return jnp.sum(grad, axis=axes, keepdims=True)


@jax.custom_vjp
def attention(q, k, v, bias):
  """softmax(q k^T / sqrt(d) + bias) v; `bias` broadcasts to [..., q, k]."""
  return _forward(q, k, v, bias)[0]


def _attention_fwd(q, k, v, bias):
  out, probs = _forward(q, k, v, bias)
  return out, (q, k, v, probs, bias)


def _attention_bwd(res, d_out):
  q, k, v, probs, bias = res
  scale = q.shape[-1] ** -0.5
  d_v = jnp.einsum('...kq,...qd->...kd', _transpose(probs), d_out)
  d_probs = jnp.einsum('...qd,...kd->...qk', d_out, v)
  d_logits = probs * (d_probs - jnp.sum(d_probs * probs, axis=-1, keepdims=True))
  d_q = jnp.einsum('...qk,...kd->...qd', d_logits, k) * scale
  d_k = jnp.einsum('...kq,...qd->...kd', _transpose(d_logits), q) * scale
  return d_q, d_k, d_v, _unbroadcast(d_logits, bias.shape)




attention.defvjp(_attention_fwd, _attention_bwd)
