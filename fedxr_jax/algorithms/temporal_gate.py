"""Temporal context signalling (SHIFT T; the paper's Solution 5).

A light module reads drift signals off each example's own sensor streams
and gates how the model takes them in. Per modality m it measures
  offset   the stream's mean (a gaze shift, a darker scene, a sensor's bias),
  scale    log of its standard deviation (contrast, gain),
  jitter   log of the mean step-to-step change over the scale (degraded
           gesture / tracking precision: noise between consecutive samples),
and whether m is present. A small MLP (`hidden` units, shared over the
population) maps these 3M + M signals to one gate g_m in [0, 1] per modality,
and the model sees
  x_m' = (1 - g_m) x_m + g_m (x_m - offset_m) / scale_m,
the raw stream where the context is as usual and the context-normalised one
(invariant to a shift and a gain of the stream) where the gate opens. The
gate's parameters sit in the `adapters` tree (trained and shared as the
plan says); its output layer starts at zero (g = 1/2). Otherwise it is
FedAvg. Feedback latency, the paper's third signal, is not in the data's
inputs (the simulator renders no interaction timing): not supported yet.
"""
import jax
import jax.numpy as jnp

from fedxr_jax.algorithms import model_extension
from fedxr_jax.core import algorithm as algorithm_lib
from fedxr_jax.errors import ConfigError

NAME = 'adapter_temporal_gate'   # its entry in the param dict (adapters role)
EPS = 1e-3


def drift_signals(x: dict, mask, modalities) -> tuple:
  """(signals [B, 4M], offsets {m: [B]}, scales {m: [B]}) of each example's streams."""
  feats, offsets, scales = [], {}, {}
  for i, m in enumerate(modalities):
    v = x[m].reshape(x[m].shape[0], x[m].shape[1], -1)    # [B, steps, rest]
    mean = jnp.mean(v, axis=(1, 2))
    std = jnp.sqrt(jnp.mean((v - mean[:, None, None]) ** 2, axis=(1, 2)))
    step = (jnp.mean(jnp.abs(jnp.diff(v, axis=1)), axis=(1, 2)) if v.shape[1] > 1
            else jnp.zeros_like(mean))
    present = mask[:, i].astype(v.dtype)
    offsets[m], scales[m] = mean, std + EPS
    feats += [mean * present, jnp.log(std + EPS) * present,
              (jnp.log(step + EPS) - jnp.log(std + EPS)) * present, present]
  return jnp.stack(feats, axis=-1), offsets, scales


def gates(own: dict, signals):
  """[B, M] gates from the signals."""
  h = jnp.tanh(signals @ own['hidden']['kernel'] + own['hidden']['bias'])
  return jax.nn.sigmoid(h @ own['out']['kernel'] + own['out']['bias'])


def gated_inputs(own: dict, x: dict, mask, modalities) -> dict:
  signals, offsets, scales = drift_signals(x, mask, modalities)
  g = gates(own, signals)
  out = {}
  for i, m in enumerate(modalities):
    shape = (-1,) + (1,) * (x[m].ndim - 1)
    normalised = (x[m] - offsets[m].reshape(shape)) / scales[m].reshape(shape)
    gi = g[:, i].reshape(shape)
    out[m] = (1.0 - gi) * x[m] + gi * normalised
  return {**x, **out}


def extend_model(model, spec, plan, *, hidden):
  """The model with the gate in front of its encoders (module doc)."""
  del plan
  modalities = tuple(spec.modalities)
  num = len(modalities)

  def init(key, base):
    del base
    return {'hidden': {'kernel': jax.random.normal(key, (4 * num, hidden)) / jnp.sqrt(4 * num),
                       'bias': jnp.zeros((hidden,))},
            'out': {'kernel': jnp.zeros((hidden, num)), 'bias': jnp.zeros((num,))}}

  def apply(base_apply, base, own, x, mask):
    return base_apply(base, gated_inputs(own, x, mask, modalities), mask)

  def features(base_features, base, own, x, mask):
    return base_features(base, gated_inputs(own, x, mask, modalities), mask)

  return model_extension.with_modules(model, NAME, 'adapters', init=init, apply=apply,
                                      weights=lambda counts: counts['examples'],
                                      features=features)


def temporal_gate(facts, *, hidden: int = 8) -> algorithm_lib.Algorithm:
  """hidden: units of the gate's hidden layer."""
  if hidden < 1:
    raise ConfigError(f'algorithm.temporal_gate.hidden must be >= 1, got {hidden}')
  if facts.plan and facts.plan.get('adapters', 'frozen') == 'frozen':
    raise ConfigError('algorithm.name=temporal_gate trains its gate in the adapters tree: '
                      'needs --config.plan.adapters=shared (or personal)')
  return algorithm_lib.plain('temporal_gate')
