"""Gradient inversion: rebuilding a client's input from the gradient it uploads.

One example's single-step update is -lr * its gradient, so a server that
sees the update sees the gradient (pass `-update / lr`; the cosine loss
ignores the scale). The attack optimizes a dummy input (and, without a
known label, soft-label logits: DLG, Zhu et al. 2019) with Adam until its
gradient matches: 1 - cosine similarity over all leaves together
(Geiping et al. 2020) or squared L2 (DLG), optionally projected onto the
input's box. The label can first be read off the last layer (iDLG, Zhao et
al. 2020): for softmax cross-entropy the bias gradient is p - onehot(y),
negative only at the true class.
"""
from typing import Callable, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from fedxr_jax.errors import ConfigError

KINDS = ('cosine', 'l2')


def _flat(tree):
  return jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in jax.tree.leaves(tree)])


def gradient_match_loss(grads, target_grads, kind: str = 'cosine') -> jax.Array:
  """1 - cos(g, g*) or ||g - g*||^2, over all leaves as one vector."""
  a, b = _flat(grads), _flat(target_grads)
  if kind == 'cosine':
    return 1.0 - a @ b / jnp.maximum(jnp.linalg.norm(a) * jnp.linalg.norm(b), 1e-12)
  return jnp.sum(jnp.square(a - b))


def label_from_gradient(last_layer_grad) -> jax.Array:
  """iDLG: the true class of one softmax-cross-entropy example, from its last layer.

  A bias gradient [K] is p - onehot(y): its one negative entry. A kernel
  gradient [H, K] is h (p - onehot(y))^T: with non-negative features h
  (ReLU, sigmoid) its column sums have the same signs.
  """
  g = jnp.asarray(last_layer_grad)
  return jnp.argmin(g if g.ndim == 1 else jnp.sum(g, axis=tuple(range(g.ndim - 1))))


class Reconstruction(NamedTuple):
  x: jax.Array          # the reconstructed input
  label: jax.Array      # [K] label probabilities (one-hot when the label was given)
  match_loss: jax.Array  # the gradient-matching loss at the end


def invert_gradients(loss_fn: Callable, params, target_grads, x_init, *,
                     num_classes: int, label: Optional[jax.Array] = None,
                     label_init: Optional[jax.Array] = None, steps: int = 1000,
                     learning_rate: float = 0.1, kind: str = 'cosine',
                     bounds: Optional[Tuple[float, float]] = None) -> Reconstruction:
  """Optimizes a dummy input whose gradient of `loss_fn` at `params` matches `target_grads`.

  loss_fn(params, x, y) -> scalar for one example, with y a probability
  vector [K]; target_grads has the structure of jax.grad(loss_fn)(params).
  label: the class if known (e.g. `label_from_gradient`); otherwise
  soft-label logits [num_classes] are optimized too, from `label_init`
  (default zeros). bounds: (lo, hi) box the input is projected onto.
  Jit it with everything but params, target_grads, x_init and the labels static.
  """
  if kind not in KINDS:
    raise ConfigError(f'inversion.kind must be one of {KINDS}, got {kind!r}')
  if steps < 1:
    raise ConfigError(f'inversion.steps must be >= 1, got {steps}')
  if num_classes < 2:
    raise ConfigError(f'inversion needs num_classes >= 2, got {num_classes}')
  fixed = None if label is None else jax.nn.one_hot(label, num_classes)
  logits = jnp.zeros((num_classes,)) if label_init is None else jnp.asarray(label_init)
  opt = optax.adam(learning_rate)

  def probs(z):
    return fixed if fixed is not None else jax.nn.softmax(z)

  def objective(v):
    x, z = v
    grads = jax.grad(loss_fn)(params, x, probs(z))
    return gradient_match_loss(grads, target_grads, kind)

  def project(v):
    x, z = v
    return (x if bounds is None else jnp.clip(x, *bounds), z)

  def step(carry, _):
    v, state = carry
    loss, g = jax.value_and_grad(objective)(v)
    updates, state = opt.update(g, state, v)
    return (project(optax.apply_updates(v, updates)), state), loss

  v = project((jnp.asarray(x_init, jnp.float32), logits))
  (v, _), _ = jax.lax.scan(step, (v, opt.init(v)), None, length=steps)
  return Reconstruction(v[0], probs(v[1]), objective(v))


def psnr(x_hat, x, data_range: float = 1.0) -> jax.Array:
  """Peak signal-to-noise ratio in dB: 10 log10(range^2 / MSE)."""
  mse = jnp.mean(jnp.square(jnp.asarray(x_hat, jnp.float32) - jnp.asarray(x, jnp.float32)))
  return 10.0 * jnp.log10(data_range ** 2 / jnp.maximum(mse, 1e-20))


def attack_report(reconstruction: Reconstruction, x, label, data_range: float = 1.0) -> dict:
  """{'psnr': dB, 'label_recovered': bool} of a reconstruction against the truth."""
  return {'psnr': float(psnr(reconstruction.x, x, data_range)),
          'label_recovered': bool(jnp.argmax(reconstruction.label) == label)}
