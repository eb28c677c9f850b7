"""Algorithms against hand computations on a two-client quadratic."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedxr_jax import algorithms
from fedxr_jax.core import local as local_lib
from fedxr_jax.core import rng
from fedxr_jax.core.problem import FederatedProblem
from fedxr_jax import topology as topology_registry
from fedxr_jax.core.algorithm import RunFacts
from fedxr_jax.core.problem import geography
from fedxr_jax.core.round import build_federation
from fedxr_jax.core.round_plan import RoundPlan
from fedxr_jax.topology.channel import Channel
from fedxr_jax.errors import ConfigError
from fedxr_jax.compose import experiment
from helpers import assert_trees_equal, run_rounds

A, B = np.array([1.0, 3.0]), np.array([2.0, -1.0])   # f_i(x) = a_i/2 (x - b_i)^2
LR, STEPS = 0.1, 3


def _quadratic_problem(available=(True, True)):
  def client_data(source, cid, split, round_idx=0):
    del split, round_idx
    return {'examples': {'a': source['a'][cid][None], 'b': source['b'][cid][None]},
            'num_examples': jnp.int32(1),
            'available': jnp.asarray(available)[cid]}

  def loss(params, batch, meta):
    del meta
    x = params['model']['x']
    return jnp.mean(0.5 * batch['a'] * (x - batch['b']) ** 2), ()

  return FederatedProblem(
      init_params=lambda key: {'model': {'x': jnp.zeros(())}}, loss=loss,
      client_data=client_data, module_weights=lambda data, stats=None: {
          'model': jnp.float32(1.0)},
      eval_stats=lambda params, data: {})


def _run(name, num_rounds, available=(True, True), **settings):
  facts = RunFacts(population_size=2, cohort_size=2, local_steps=STEPS, batch_size=1,
                   plan={'model': 'shared'}, client_optimizer='sgd',
                   client_learning_rate=LR)
  problem = _quadratic_problem(available)
  source = {'a': jnp.asarray(A, jnp.float32), 'b': jnp.asarray(B, jnp.float32)}
  topology = topology_registry.make({'kind': 'centralized', 'centralized': {}}, facts=facts,
                                    geography=geography(problem, source), channel=Channel())
  fed = build_federation(
      problem, {'model': 'shared'}, population_size=2,
      cohort_size=2, local_steps=STEPS, batch_size=1, client_optimizer=optax.sgd(LR),
      server_optimizer=optax.sgd(1.0), shuffle=False, topology=topology,
      algorithm=algorithms.make(name, settings, facts))
  server, clients, frozen = fed.init(source, rng.key_data(0))
  plan = RoundPlan(cohort=jnp.arange(2, dtype=jnp.int32), topo=topology.layout(0, np.arange(2))[0])
  for _ in range(num_rounds):
    server, clients, _ = jax.jit(fed.round)(server, clients, frozen, source, plan)
  return server, clients


def _local_sgd(x, i, extra_grad=lambda x: 0.0):
  for _ in range(STEPS):
    x -= LR * (A[i] * (x - B[i]) + extra_grad(x))
  return x


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
  server, _ = _run('fedprox', 2, mu=mu)
  np.testing.assert_allclose(server.shared['model']['x'], w, rtol=1e-5)
  plain, _ = _run('fedavg', 2)
  assert not np.isclose(float(plain.shared['model']['x']), w)


@pytest.mark.slow   # two XR builds; the quadratic-problem tests above pin FedProx by hand
def test_fedprox_with_mu_zero_is_fedavg(config):
  fedavg, _, _ = run_rounds(experiment.build(config), 2)
  config.algorithm.name = 'fedprox'
  config.algorithm.fedprox.mu = 0.0
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



def test_unavailable_client_sits_the_round_out():
  server, _ = _run('fedavg', 1, available=(True, False))
  np.testing.assert_allclose(server.shared['model']['x'], _local_sgd(0.0, 0), rtol=1e-6)


def test_ditto_personal_models_match_hand_computation_and_leave_fedavg_alone():
  lam, w = 0.5, 0.0
  v = [0.0, 0.0]
  for _ in range(2):
    v = [_local_sgd(v[i], i, lambda x, w=w: lam * (x - w)) for i in range(2)]
    w = float(np.mean([_local_sgd(w, i) for i in range(2)]))
  server, clients = _run('ditto', 2, lam=lam)
  np.testing.assert_allclose(clients.algorithm['personal']['model']['x'], v, rtol=1e-5)
  plain, _ = _run('fedavg', 2)
  assert_trees_equal(plain.shared, server.shared)


def test_ewc_consolidates_fisher_and_anchor_then_pulls_towards_them():
  lam = 2.0
  server, _ = _run('ewc', 1, lam=lam, rounds=(1,))
  # Round 0 starts at x = 0: per-example gradient a_i (0 - b_i), squared and
  # averaged over the two (one-example) clients.
  fisher = np.mean([(A[i] * (0.0 - B[i])) ** 2 for i in range(2)])
  np.testing.assert_allclose(server.algorithm['fisher']['model']['x'], fisher, rtol=1e-6)
  np.testing.assert_allclose(server.algorithm['anchor']['model']['x'], 0.0)
  w1 = float(server.shared['model']['x'])
  server2, _ = _run('ewc', 2, lam=lam, rounds=(1,))
  expected = np.mean([_local_sgd(w1, i, lambda x: lam * fisher * (x - 0.0))
                      for i in range(2)])
  np.testing.assert_allclose(server2.shared['model']['x'], expected, rtol=1e-5)
  # Before the boundary nothing is consolidated.
  early, _ = _run('ewc', 1, lam=lam, rounds=(5,))
  np.testing.assert_array_equal(early.algorithm['fisher']['model']['x'], 0.0)


def test_fedrep_trains_heads_first_then_the_body():
  facts = RunFacts(local_steps=3, plan={'heads': 'personal'})
  schedule = algorithms.make('fedrep', {'head_steps': 2}, facts).role_schedule
  loss = lambda p, batch, meta: ((p['heads']['h'] * p['body']['b'] - 1.0) ** 2, {})
  data = {'examples': {'x': jnp.zeros((1,))}, 'num_examples': jnp.int32(1)}
  out, _ = local_lib.make_local_update(loss, optax.sgd(0.1), local_steps=3, batch_size=1,
                                       shuffle=False)(
      {'heads': {'h': jnp.float32(1.0)}, 'body': {'b': jnp.float32(0.5)}}, {}, data,
      jax.random.key(0), role_active=schedule)
  h, b = 1.0, 0.5
  for _ in range(2):            # head steps: d/dh (hb - 1)^2 = 2 (hb - 1) b
    h -= 0.1 * 2 * (h * b - 1) * b
  b -= 0.1 * 2 * (h * b - 1) * h   # one body step
  np.testing.assert_allclose(out['heads']['h'], h, rtol=1e-6)
  np.testing.assert_allclose(out['body']['b'], b, rtol=1e-6)
