"""Closed-form heads before round 1 (warm_start.heads=ridge, algorithms/warm_start.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedxr_jax.algorithms import warm_start
from fedxr_jax.compose import experiment
from fedxr_jax.core import rng
from fedxr_jax.core import trees
from fedxr_jax.errors import ConfigError


def _ridge(x, y, ridge):
  """Numpy ridge regression with an unregularised bias: [d+1, K]."""
  a = np.concatenate([x, np.ones((len(x), 1))], 1).astype(np.float64)
  d = x.shape[1]
  lam = ridge * np.trace(a[:, :d].T @ a[:, :d]) / d
  reg = np.diag(np.r_[np.full(d, lam), 0.0])
  return np.linalg.solve(a.T @ a + reg, a.T @ y)


def test_solve_is_ridge_regression_with_an_unregularised_bias():
  x = np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32)
  y = np.random.default_rng(1).normal(size=(40, 3)).astype(np.float32)
  a = np.concatenate([x, np.ones((40, 1), np.float32)], 1)
  w, count = warm_start.solve({'gram': jnp.asarray(a.T @ a), 'cross': jnp.asarray(a.T @ y)},
                              0.1)
  assert count == 40
  np.testing.assert_allclose(w, _ridge(x, y, 0.1), rtol=1e-4, atol=1e-5)


def test_round_zero_heads_are_the_ridge_readout_of_the_first_cohorts_features(config):
  """Every task kind (class one-hot, gaze vector, box logits), from an independent path:
  the model's CLS features (what its heads read) of round 1's cohort pooled in numpy."""
  config.data.source = 'world'
  config.warm_start.heads = 'ridge'
  config.warm_start.classifier_scale = 3.0
  exp = experiment.build(config)
  server, _, _ = jax.jit(exp.federation.init)(exp.world, exp.key)
  params = jax.jit(lambda k: exp.federation.setup.initial_params(rng.run_key(k)))(exp.key)
  merged = trees.merge_roles(*params.values())
  features = jax.jit(exp.model.features)
  client_data = jax.jit(exp.problem.client_data, static_argnums=2)
  # What the statistics read is what the heads read.
  ex = client_data(exp.world, jnp.int32(3), 'train', jnp.int32(0))['examples']
  outputs, _ = jax.jit(exp.model.apply)(merged, ex['x'], ex['modality_mask'])
  read = jax.jit(exp.model.head_inputs)(merged, ex['x'], ex['modality_mask'])
  for task in exp.spec.tasks:
    head = merged['heads'][task]
    np.testing.assert_allclose(outputs[task], read @ head['kernel'] + head['bias'],
                               rtol=1e-5, atol=1e-5)
  xs, labels, targets, masks = [], [], [], []
  for c in exp.sample_cohort(0):   # round 1's cohort
    data = client_data(exp.world, jnp.int32(c), 'train', jnp.int32(0))
    ex = data['examples']
    xs.append(np.asarray(features(merged, ex['x'], ex['modality_mask'])[:, 0]))
    labels.append(np.asarray(ex['y']))
    targets.append({k: np.asarray(v) for k, v in ex['targets'].items()})
    masks.append(np.asarray(ex['example_mask'][:, None] & data['task_mask'][None]
                            & ex['label_mask']))
  x, y, m = np.concatenate(xs), np.concatenate(labels), np.concatenate(masks)
  for t, td in enumerate(exp.spec.task_defs):
    keep = m[:, t]
    if td.kind == 'classification':
      target = np.eye(td.size)[y[keep, t]] * 3.0
    else:
      target = np.concatenate([tg[td.name] for tg in targets])[keep]
      if td.kind == 'detection':
        box = np.clip(target, 1e-3, 1 - 1e-3)
        target = np.log(box) - np.log1p(-box)
    expected = _ridge(x[keep], target, config.warm_start.ridge)
    head = server.shared['heads']['heads'][td.name]
    got = np.concatenate([head['kernel'], head['bias'][None]], 0)
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-3 * np.abs(expected).max())


@pytest.mark.parametrize('keys, says', [
    ({'warm_start.heads': 'ncm'}, "warm_start.heads='ncm' is not one of"),
    ({'warm_start.heads': 'ridge', 'warm_start.ridge': 0.0}, 'ridge > 0'),
    ({'warm_start.heads': 'ridge', 'plan.heads': 'personal'}, 'plan.heads=personal'),
    ({'warm_start.heads': 'ridge', 'privacy.noise_multiplier': 1.0, 'privacy.delta': 1e-5},
     'with DP'),
    ({'warm_start.heads': 'ridge', 'topology.kind': 'decentralized'},
     'warm_start.heads=ridge with topology.kind=decentralized'),
    ({'warm_start.heads': 'ridge', 'model.name': 'mlp'}, 'model mlp'),
])
def test_an_impossible_warm_start_is_one_line(config, keys, says):
  for key, value in keys.items():
    block, name = key.rsplit('.', 1)
    config[block][name] = value
  with pytest.raises(ConfigError, match=says):
    experiment.build(config)
