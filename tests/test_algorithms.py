"""Algorithms against hand computations on a two-client quadratic."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from fedxr_jax import algorithms
from fedxr_jax.core.problem import FederatedProblem
from fedxr_jax.core.round import build_federation
from fedxr_jax.errors import ConfigError
from fedxr_jax.training import experiment
from helpers import assert_trees_equal, run_rounds

A, B = np.array([1.0, 3.0]), np.array([2.0, -1.0])   # f_i(x) = a_i/2 (x - b_i)^2
LR, STEPS = 0.1, 3


def _quadratic_problem():
  def client_data(source, cid, split, round_idx=0):
    del split, round_idx
    return {'examples': {'a': source['a'][cid][None], 'b': source['b'][cid][None]},
            'num_examples': jnp.int32(1)}

  def loss(params, batch, meta):
    del meta
    x = params['model']['x']
    return jnp.mean(0.5 * batch['a'] * (x - batch['b']) ** 2), ()

  return FederatedProblem(
      init_params=lambda key: {'model': {'x': jnp.zeros(())}}, loss=loss,
      client_data=client_data, module_weights=lambda data, stats=None: {'model': jnp.float32(1.0)},
      eval_stats=lambda params, data: {})


def _run(name, rounds, prox_mu=0.0):
  config = ml_collections.ConfigDict(dict(
      algorithm=dict(name=name, prox_mu=prox_mu),
      client_optimizer=dict(name='sgd', learning_rate=LR, momentum=0.0)))
  fed = build_federation(
      _quadratic_problem(), {'model': 'shared'}, seed=0, population_size=2,
      cohort_size=2, local_steps=STEPS, batch_size=1, client_optimizer=optax.sgd(LR),
      server_optimizer=optax.sgd(1.0), shuffle=False,
      algorithm=algorithms.make_algorithm(name, config))
  source = {'a': jnp.asarray(A, jnp.float32), 'b': jnp.asarray(B, jnp.float32)}
  server, clients, frozen = fed.init(source)
  for _ in range(rounds):
    server, clients, _ = jax.jit(fed.round)(server, clients, frozen, source, {})
  return server, clients


def test_scaffold_matches_hand_computation():
  w, c, ci = 0.0, 0.0, [0.0, 0.0]
  for _ in range(3):
    xs, new_ci = [], []
    for i in range(2):
      x = w
      for _ in range(STEPS):
        x -= LR * (A[i] * (x - B[i]) - ci[i] + c)
      xs.append(x)
      new_ci.append(ci[i] - c + (w - x) / (STEPS * LR))
    c += (2 / 2) * np.mean(np.subtract(new_ci, ci))
    ci, w = new_ci, float(np.mean(xs))
  server, clients = _run('scaffold', 3)
  np.testing.assert_allclose(server.shared['model']['x'], w, rtol=1e-5)
  np.testing.assert_allclose(server.algorithm['model']['x'], c, rtol=1e-5)
  np.testing.assert_allclose(clients.algorithm['model']['x'], ci, rtol=1e-5)


def test_fedprox_matches_hand_computation():
  mu, w = 0.5, 0.0
  for _ in range(2):
    xs = []
    for i in range(2):
      x = w
      for _ in range(STEPS):
        x -= LR * (A[i] * (x - B[i]) + mu * (x - w))
      xs.append(x)
    w = float(np.mean(xs))
  server, _ = _run('fedprox', 2, prox_mu=mu)
  np.testing.assert_allclose(server.shared['model']['x'], w, rtol=1e-5)
  plain, _ = _run('fedavg', 2)
  assert not np.isclose(float(plain.shared['model']['x']), w)


def test_fedprox_with_mu_zero_is_fedavg(config):
  fedavg, _, _ = run_rounds(experiment.build(config), 2)
  config.algorithm.name = 'fedprox'
  config.algorithm.prox_mu = 0.0
  fedprox, _, _ = run_rounds(experiment.build(config), 2)
  assert_trees_equal(fedavg.shared, fedprox.shared)


def test_unsupported_combinations_fail_clearly(config):
  config.algorithm.name = 'scafold'
  with pytest.raises(ConfigError, match="did you mean 'scaffold'"):
    experiment.build(config)
  config.algorithm.name = 'scaffold'
  config.client_optimizer.name = 'adam'
  with pytest.raises(ConfigError, match='needs client_optimizer.name=sgd'):
    experiment.build(config)
  config.client_optimizer.name = 'sgd'
  config.topology.kind = 'decentralized'
  config.population_size = config.cohort_size
  with pytest.raises(ConfigError, match='not supported yet'):
    experiment.build(config)
