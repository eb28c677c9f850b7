"""Composable user modules (the paper's Solution 3): a library of adapters over a frozen
backbone, and each user's own composition of them.

The library holds `size` bottleneck adapters on the fused representation (the
backbone's CLS features, before the task heads); a user's composition is its
selection logits, softmax weights over the library (`select` > 0: only its
top-`select` modules, renormalised):

  f' = f + sum_k a_k up_k(gelu(down_k(f))),   a = softmax(selection | top-m)

Roles (`models.m3t.role_of`): 'library' (the modules: shared by default,
averaged over the users that train them) and 'selection' (the user's
composition: personal, never leaves the device). The backbone is untouched:
its role stays as the plan has it (frozen in PEFT). Every module's up
projection starts at zero, so the library is the identity at init (the
model's outputs equal the model without one). With `select` < size a user's
unselected modules take no gradient, and count as unchanged in the mean
(FedAvg's weights: the user's examples).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp


def composition(logits, select: int):
  """[K] weights of the user's modules: softmax over the top-`select` logits (0: all)."""
  if not select or select >= logits.shape[-1]:
    return jax.nn.softmax(logits)
  _, top = jax.lax.top_k(logits, select)
  chosen = jnp.any(jax.nn.one_hot(top, logits.shape[-1], dtype=bool), axis=0)
  return jax.nn.softmax(jnp.where(chosen, logits, -jnp.inf))


class ModuleLibrary(nn.Module):
  """`size` bottleneck adapters of width `dim`, stacked [K, ...] (one slice per module)."""
  size: int
  dim: int

  @nn.compact
  def __call__(self, features, weights):
    """features [..., width] + the weights [K]-mix of every module's residual."""
    width, k = features.shape[-1], self.size
    init = nn.initializers.lecun_normal(batch_axis=(0,))
    down = self.param('down', init, (k, width, self.dim))
    b_down = self.param('b_down', nn.initializers.zeros, (k, self.dim))
    up = self.param('up', nn.initializers.zeros, (k, self.dim, width))
    b_up = self.param('b_up', nn.initializers.zeros, (k, width))
    h = nn.gelu(jnp.einsum('...w,kwd->...kd', features, down) + b_down)
    out = jnp.einsum('...kd,kdw->...kw', h, up) + b_up
    return features + jnp.einsum('k,...kw->...w', weights, out)
