"""Behaviour-conditioned user signatures (the paper's Solution 3).

A user's signature is a fixed-size summary of its interaction trace: for
each modality of the run, over the trace's examples that carry it,

  log RMS amplitude          how strongly the user moves / speaks / looks
  log mean |x_t+1 - x_t|     rhythm: motion speed, gaze velocity, voice change
  lag-1 autocorrelation      cadence: smooth vs. jerky signals
  share present              how often the sensor is on

(axis 1 of an input is its time axis; an image's rows). The model maps the
signature to `tokens` prompt tokens with a shared linear layer (role
'signature'), prepended to its input tokens: a user is conditioned by its
statistics alone, without any parameter of its own or any update on its
device, so a new user is personalised the moment it has a trace. The problem
adapter (`compose.xr_problem`) computes the signature from the user's
training examples of the round (its recent trace) and gives it to every one
of its examples, train and test. A constant trace gives one fixed
signature, and the model is then the same model with fixed prompts.
"""
import flax.linen as nn
import jax.numpy as jnp

STATS = ('log_rms', 'log_velocity', 'autocorrelation', 'present')
EPS = 1e-6


def width(num_modalities: int) -> int:
  """Size of the signature of a run with `num_modalities` modalities."""
  return len(STATS) * num_modalities


def modality_statistics(x, present, num_valid):
  """[len(STATS)] of one modality: x [N, T, ...], present [N] bool (valid and on)."""
  v = x.reshape(x.shape[0], x.shape[1], -1).astype(jnp.float32)
  w = present.astype(jnp.float32)
  count = jnp.maximum(jnp.sum(w), 1.0)
  rms = jnp.sqrt(jnp.mean(v ** 2, axis=(1, 2)))
  velocity = jnp.mean(jnp.abs(v[:, 1:] - v[:, :-1]), axis=(1, 2))
  c = v - jnp.mean(v, axis=1, keepdims=True)
  auto = jnp.sum(c[:, 1:] * c[:, :-1], axis=(1, 2)) / jnp.maximum(
      jnp.sum(c ** 2, axis=(1, 2)), EPS)
  mean = lambda s: jnp.sum(w * s) / count
  return jnp.stack([mean(jnp.log(rms + EPS)), mean(jnp.log(velocity + EPS)), mean(auto),
                    jnp.sum(w) / jnp.maximum(num_valid, 1.0)])


def trace_statistics(examples: dict, modalities) -> jnp.ndarray:
  """The signature [width(M)] of a trace: examples {'x': {m: [N, ...]},
  'modality_mask' [N, M], 'example_mask' [N]}, modalities in mask order."""
  valid = examples['example_mask']
  num_valid = jnp.sum(valid).astype(jnp.float32)
  return jnp.concatenate([
      modality_statistics(examples['x'][m], examples['modality_mask'][:, i] & valid,
                          num_valid) for i, m in enumerate(modalities)])


class SignaturePrompts(nn.Module):
  """Prompt tokens [..., tokens, width] from a signature [..., S] (one linear layer)."""
  tokens: int
  width: int

  @nn.compact
  def __call__(self, signature):
    init = nn.initializers.normal(0.02)
    out = nn.Dense(self.tokens * self.width, kernel_init=init, bias_init=init,
                   name='project')(signature)
    return out.reshape(signature.shape[:-1] + (self.tokens, self.width))
