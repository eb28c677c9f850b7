"""Example-level DP-SGD in local training (privacy.mode=example): known answers."""
import functools
import math

import dp_accounting
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from dp_accounting import pld, rdp

from fedxr_jax import algorithms
from fedxr_jax.core import algorithm as algorithm_lib
from fedxr_jax.core import local as local_lib
from fedxr_jax.core import transforms
from fedxr_jax.core import trees
from fedxr_jax.errors import ConfigError
from fedxr_jax.privacy import accounting
from fedxr_jax.privacy import dpsgd
from fedxr_jax.compose import experiment
from fedxr_jax.aggregators import registry as aggregator_registry
from fedxr_jax.compose import pipeline
from fedxr_jax.core.contribution import Capabilities
from fedxr_jax.privacy import feature as privacy_feature
from fedxr_jax.transforms import clip as clip_lib
import tiny
from helpers import assert_trees_close, assert_trees_equal, run_rounds

DELTA = 1e-5


def _client(client_id=0, budget=None):
  """One tiny client's train data (4..8 examples of 8 slots)."""
  source = {k: jnp.asarray(v) for k, v in tiny.make_source(8, 4).items()}
  data = tiny.problem().client_data(source, client_id, 'train')
  return data if budget is None else {**data, 'step_budget': jnp.int32(budget)}


def _params(key=0):
  return tiny.problem().init_params(jax.random.key(key))


def _update(private_grads, *, local_steps=4, batch_size=4, lr=0.3, batch_axis=None):
  return local_lib.make_local_update(tiny.problem().loss, optax.sgd(lr),
                                     local_steps=local_steps, batch_size=batch_size,
                                     batch_axis=batch_axis, private_grads=private_grads)


# The gradient ------------------------------------------------------------------------


@pytest.mark.parametrize('with_regularizer', [False, True])
def test_without_noise_or_clipping_local_dpsgd_is_the_plain_local_training(with_regularizer):
  # The tiny loss is a masked mean over the batch, and batches hold valid
  # examples only: the mean of per-example gradients is the batch gradient.
  data, params = _client(3, budget=4), _params()
  anchor = jax.tree.map(lambda x: x + 1.0, params)
  reg = (lambda p: 0.3 * trees.squared_distance(p, anchor)) if with_regularizer else None
  run = lambda hook: jax.jit(lambda p, d, k: _update(hook)(p, {}, d, k, regularizer=reg))(
      params, data, jax.random.key(7))
  plain, plain_stats = run(None)
  private, stats = run(dpsgd.local_grads(clip_norm=math.inf, noise_multiplier=0.0))
  assert_trees_close(private, plain, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stats['loss'], plain_stats['loss'], rtol=1e-6)
  assert int(stats['steps']) == 4
  # It trained: 4 steps at lr 0.3 move the weights.
  assert float(transforms.global_norm(jax.tree.map(jnp.subtract, private, params))) > 0.05


@pytest.mark.parametrize('algorithm, settings', [   # fedprox by default
    ('fedprox', {'mu': 0.5}), pytest.param('scaffold', {}, marks=pytest.mark.slow),
    pytest.param('ditto', {'lam': 0.5}, marks=pytest.mark.slow)])
def test_without_noise_or_clipping_dpsgd_rounds_are_the_algorithms_rounds(algorithm, settings):
  # The regularizer's exact gradient (FedProx, Ditto), SCAFFOLD's correction
  # and Ditto's personal training (the same hook) all go through DP-SGD.
  runs = [run_rounds(tiny.setup(algorithm=algorithm, algorithm_settings=settings,
                                private_grads=hook), 2)[:2]
          for hook in (None, dpsgd.local_grads(clip_norm=math.inf, noise_multiplier=0.0))]
  assert_trees_close(runs[1], runs[0], rtol=1e-5, atol=1e-6)


def _linear_loss(params, batch):
  err = batch['x'] @ params['w'] + params['b'] - batch['y']
  return jnp.mean(err ** 2), {}


def test_every_clipped_per_example_gradient_is_the_hand_gradient_scaled_to_norm_c():
  # loss_i = (x_i . w + b - y_i)^2: g_i = 2 e_i (x_i, 1), e_i the residual.
  x = jnp.array([[3.0, 0.0], [0.01, 0.02], [-2.0, 4.0], [0.0, 0.0], [1.0, 1.0]])
  y = jnp.array([0.0, 0.0, 1.0, 0.0, 50.0])
  params = {'w': jnp.array([1.0, -0.5]), 'b': jnp.array(0.1)}
  clip_norm = 1.0
  clipped, norms = jax.jit(functools.partial(dpsgd.clipped_example_grads, _linear_loss),
                           static_argnums=2)(params, {'x': x, 'y': y}, clip_norm)
  e = np.asarray(x @ params['w'] + params['b'] - y)
  hand = 2 * e[:, None] * np.concatenate([np.asarray(x), np.ones((5, 1))], axis=1)
  hand_norms = np.linalg.norm(hand, axis=1)
  np.testing.assert_allclose(norms, hand_norms, rtol=1e-5)
  got = np.concatenate([np.asarray(clipped['w']), np.asarray(clipped['b'])[:, None]], axis=1)
  out_norms = np.linalg.norm(got, axis=1)
  assert np.all(out_norms <= clip_norm * (1 + 1e-6))
  expected = hand * np.minimum(1.0, clip_norm / hand_norms)[:, None]
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
  # Large ones land on C, small ones are untouched.
  assert (hand_norms > clip_norm).sum() >= 3 and (hand_norms < clip_norm).sum() >= 1
  np.testing.assert_allclose(out_norms[hand_norms > clip_norm], clip_norm, rtol=1e-6)


def _zero_gradient_loss(params, batch, meta):
  del meta
  return jnp.sum(params['w'] * 0.0) + 0.0 * jnp.mean(batch['x']), {}


def _noise_update(sigma, clip_norm, *, local_steps, batch_size):
  return jax.jit(jax.vmap(local_lib.make_local_update(
      _zero_gradient_loss, optax.sgd(1.0), local_steps=local_steps, batch_size=batch_size,
      private_grads=dpsgd.local_grads(clip_norm=clip_norm, noise_multiplier=sigma)),
      in_axes=(None, None, None, 0)))


def test_local_noise_std_on_a_zero_gradient_problem_is_sigma_c_over_the_batch():
  # One SGD step at lr 1 moves w by exactly -noise / B. 4000 coordinates x
  # 16 clients: relative s.e. of the std 0.3%; we allow 2%.
  sigma, clip_norm, batch = 2.5, 0.4, 8
  params = {'w': jnp.zeros(4000)}
  data = {'examples': {'x': jnp.ones((10, 1))}, 'num_examples': jnp.int32(10)}
  keys = jax.random.split(jax.random.key(3), 16)
  out, _ = _noise_update(sigma, clip_norm, local_steps=1, batch_size=batch)(
      params, {}, data, keys)
  moved = np.asarray(out['w'])
  assert abs(moved.std() / (sigma * clip_norm / batch) - 1) < 0.02
  assert abs(moved.mean()) < 3 * moved.std() / math.sqrt(moved.size)
  # Each client its own noise; the same key the same noise (no global state).
  assert abs(np.corrcoef(moved[0], moved[1])[0, 1]) < 0.1
  again, _ = _noise_update(sigma, clip_norm, local_steps=1, batch_size=batch)(
      params, {}, data, keys)
  np.testing.assert_array_equal(again['w'], moved)


def test_each_local_step_draws_fresh_noise():
  # Two steps: w = -(n_0 + n_1) / B, std sqrt(2) sigma C / B (the same noise twice: 2x).
  sigma, clip_norm, batch = 1.0, 1.0, 4
  data = {'examples': {'x': jnp.ones((10, 1))}, 'num_examples': jnp.int32(10)}
  out, _ = _noise_update(sigma, clip_norm, local_steps=2, batch_size=batch)(
      {'w': jnp.zeros(4000)}, {}, data, jax.random.split(jax.random.key(4), 16))
  ratio = float(np.asarray(out['w']).std()) / (sigma * clip_norm / batch)
  assert abs(ratio / math.sqrt(2) - 1) < 0.02


def test_masked_steps_past_a_budget_change_no_number():
  # Client 0 (budget 2) beside a budget-2 client, then beside a budget-4 one:
  # the loop runs 2 then 4 iterations; client 0's result is the same bits.
  hook = dpsgd.local_grads(clip_norm=0.5, noise_multiplier=1.0)
  update = _update(hook, batch_axis='clients')
  run = jax.jit(jax.vmap(lambda d, k: update(_params(), {}, d, k), axis_name='clients'))
  keys = jax.random.split(jax.random.key(5), 2)
  stack = lambda a, b: jax.tree.map(lambda x, y: jnp.stack([x, y]), a, b)
  short, s_stats = run(stack(_client(0, budget=2), _client(1, budget=2)), keys)
  long, l_stats = run(stack(_client(0, budget=2), _client(1, budget=4)), keys)
  assert_trees_equal(jax.tree.map(lambda x: x[0], short), jax.tree.map(lambda x: x[0], long))
  np.testing.assert_array_equal(s_stats['loss'][0], l_stats['loss'][0])
  np.testing.assert_array_equal(l_stats['steps'], [2, 4])
  # And client 1 did take its 2 extra (noisy) steps.
  assert not np.array_equal(short['body']['w'][1], long['body']['w'][1])


# Accounting --------------------------------------------------------------------------


@pytest.mark.parametrize('n, b, steps, energy', [
    (16, 4, 4, 1),    # one pass: each example once
    (8, 4, 4, 2),     # two passes: each example in two steps
    (6, 4, 3, 2),     # 12 positions over 6 examples: twice each
    (7, 4, 3, 2),     # 12 over 7: five examples twice, in distinct steps
    (3, 4, 1, 4),     # one batch of 4 over 3: one example twice in it: 2^2
    (1, 3, 2, 18),    # one example, 3 copies in each of 2 steps: 9 + 9
])
def test_occurrence_energy_matches_the_batches_local_training_draws(n, b, steps, energy):
  # Count copies with core.local's own sampler over a shuffled order.
  order = local_lib.example_order(jax.random.key(n), n, n + 3, shuffle=True)
  counts = np.zeros((steps, n + 3), int)
  for s in range(steps):
    for i in np.asarray(local_lib.batch_indices(s, order, n, b)):
      counts[s, i] += 1
  from_sampler = int((counts ** 2).sum(axis=0).max())
  assert from_sampler == energy
  assert accounting.occurrence_energy(n, b, steps) == energy
  assert accounting.occurrence_energy(n, b, 0) == 0


@pytest.mark.parametrize('accountant', ['rdp', 'pld'])
def test_example_epsilon_is_a_direct_dp_accounting_computation(accountant):
  # N = 8, B = 4, 4 steps: each example is in 2 steps a round (K = 2); a
  # replaced example moves each of those sums by 2C: 2 Gaussians of
  # multiplier sigma / 2 a round, 5 rounds.
  sigma, rounds = 3.0, 5
  energy = accounting.worst_occurrence_energy([8, 11, 16, 0], batch_size=4, steps=4)
  assert energy == 2   # N = 8 is the worst; N = 0 trains nothing
  eps = accounting.example_epsilon_per_round(sigma, delta=DELTA, rounds=rounds, energy=energy,
                                             accountant=accountant)
  for r in range(1, rounds + 1):
    acc = (rdp.RdpAccountant() if accountant == 'rdp' else pld.PLDAccountant())
    direct = acc.compose(dp_accounting.GaussianDpEvent(sigma / 2), 2 * r).get_epsilon(DELTA)
    assert eps[r - 1] == pytest.approx(direct, rel=1e-6 if accountant == 'rdp' else 1e-3)
  # B > N: an example twice in one batch is one Gaussian at sigma / 4.
  eps_dup = accounting.example_epsilon_per_round(sigma, delta=DELTA, rounds=1,
                                                 energy=accounting.occurrence_energy(3, 4, 1))
  direct = rdp.RdpAccountant().compose(dp_accounting.GaussianDpEvent(sigma / 4)).get_epsilon(
      DELTA)
  assert eps_dup[0] == pytest.approx(direct, rel=1e-6)
  assert accounting.example_epsilon_per_round(0.0, delta=DELTA, rounds=2, energy=1) == [
      math.inf] * 2


def test_calibrated_example_sigma_is_the_smallest_that_meets_the_target():
  kw = dict(delta=DELTA, rounds=20, energy=3)
  tol = 1e-3
  sigma = accounting.calibrate_example_noise(6.0, tol=tol, **kw)
  assert accounting.example_epsilon_per_round(sigma, **kw)[-1] <= 6.0
  assert accounting.example_epsilon_per_round(sigma - tol, **kw)[-1] > 6.0


# The pipeline ------------------------------------------------------------------------


def _config(config, **privacy):
  config.privacy.update(dict(mode='example', delta=DELTA, **privacy))
  return config


def _run_context(config):
  source = {k: jnp.asarray(v) for k, v in
            tiny.make_source(config.population_size, config.local_steps).items()}
  facts = algorithm_lib.RunFacts(
      seed=0, population_size=config.population_size, cohort_size=config.cohort_size,
      local_steps=config.local_steps, batch_size=config.batch_size, plan={'body': 'shared'},
      tasks=('t',))
  return pipeline.RunContext(facts, config.num_rounds, None, config.model, tiny.problem(),
                             source)


def _tiny_privacy(config):
  run = _run_context(config)
  return privacy_feature.make_privacy(config.privacy, run), run.source


def _caps(config, algorithm=None, kind='centralized'):
  """What a feature's check sees: the configured aggregator, a topology of `kind`."""
  topology = tiny.setup(kind=kind).federation.topology
  return Capabilities(topology, aggregator_registry.make(config.aggregator, config.cohort_size),
                      config.aggregator.name, algorithm, ())


def test_the_pipeline_accounts_the_worst_client_of_the_population(config):
  # Test config: B = 8, 2 local steps over tiny clients of 4..8 examples.
  # N = 4 (the fewest): every example twice in each batch, K = 2^2 + 2^2 = 8
  # (N = 5 also 8, for one example; N = 6: 5; N = 8: 2).
  privacy, source = _tiny_privacy(_config(config, noise_multiplier=2.0, example_clip=0.7))
  counts = privacy_feature.example_counts(tiny.problem(), source, config.population_size)
  np.testing.assert_array_equal(counts, source['num_examples'][:config.population_size])
  assert counts.min() == 4
  assert privacy.mode == 'example' and privacy.clip_norm == 0.7
  direct = rdp.RdpAccountant().compose(
      dp_accounting.GaussianDpEvent(2.0 / (2 * math.sqrt(8))), config.num_rounds).get_epsilon(
          DELTA)
  assert privacy.epsilon_per_round[-1] == pytest.approx(direct, rel=1e-6)
  assert len(privacy.epsilon_per_round) == config.num_rounds
  # Client-level pieces stay out; the weights become example counts.
  part = privacy_feature.contribute(config.privacy, _run_context(config))
  assert part.aggregator is None and not part.needs_server
  assert part.private_grads is not None and part.info == privacy
  assert [order for order, _ in part.transforms] == ['privacy']


def test_example_count_weights_keep_zeros_and_release_only_the_count():
  t = clip_lib.example_count_weights()
  weights = {'enc': {'a': jnp.float32(3.0), 'b': jnp.float32(0.0)}, 'head': jnp.float32(7.0)}
  info = transforms.ClientInfo(client_id=0, start={}, trained={},
                               data={'num_examples': jnp.int32(5)})
  _, _, out, stats = t.update({}, (), jax.random.key(0), weights, info)
  assert jax.tree.map(float, out) == {'enc': {'a': 5.0, 'b': 0.0}, 'head': 5.0}
  assert stats == {}


def test_robust_aggregators_and_serverless_topologies_are_fine_with_example_dp(config):
  _config(config, noise_multiplier=1.0)
  part = privacy_feature.contribute(config.privacy, _run_context(config))
  fedavg = algorithms.make('fedavg', {}, _run_context(config).facts)
  for name, kind in (('median', 'centralized'), ('mean', 'decentralized')):
    config.aggregator.name = name
    topology = tiny.setup(kind=kind).federation.topology
    _, aggregator = pipeline.assemble(config, (part,), topology, fedavg)
    assert aggregator.name == name


@pytest.mark.parametrize('privacy, message', [
    (dict(example_clip=0.0), 'privacy.example_clip must be > 0'),
    (dict(example_clip=-1.0, noise_multiplier=1.0), 'privacy.example_clip must be > 0'),
    (dict(example_clip=math.inf, noise_multiplier=1.0), 'needs a finite privacy.example_clip'),
    (dict(noise_multiplier=1.0, adaptive_clip=dict(enabled=True)),
     'privacy.adaptive_clip with privacy.mode=example'),
    (dict(noise_multiplier=1.0, target_epsilon=3.0), 'not both'),
    (dict(noise_multiplier=1.0, sampling='poisson'), 'not supported yet: privacy.sampling'),
])
def test_contradictory_example_settings_are_one_line(config, privacy, message):
  with pytest.raises(ConfigError) as err:
    _tiny_privacy(_config(config, **privacy))
  assert message in str(err.value) and '\n' not in str(err.value)


def test_an_algorithm_that_reports_raw_statistics_is_refused(config):
  _config(config, noise_multiplier=1.0)
  facts = algorithm_lib.RunFacts(seed=0, population_size=24, cohort_size=8, local_steps=2,
                                 batch_size=8, plan={'body': 'shared'}, tasks=('t',))
  part = privacy_feature.contribute(config.privacy, _run_context(config))
  with pytest.raises(ConfigError) as err:
    part.check(_caps(config, algorithms.make('ewc', {'rounds': (2,)}, facts)))
  assert 'its client report' in str(err.value) and '\n' not in str(err.value)
  part.check(_caps(config, algorithms.make('fedprox', {'mu': 0.1}, facts)))


# Federated runs ----------------------------------------------------------------------


def _accuracy(setup, server, clients, num_clients):
  _, _, frozen = jax.jit(setup.federation.init)(setup.world, setup.key)
  sums = jax.jit(setup.federation.evaluate, static_argnums=(5,))(
      server, clients, frozen, setup.world, jnp.arange(num_clients), 'test')
  return float(sums['correct'].sum() / sums['count'].sum())


def _tiny_run(sigma, rounds=15):
  hook = None if sigma is None else dpsgd.local_grads(clip_norm=1.0, noise_multiplier=sigma)
  setup = tiny.setup(population=20, cohort=20, lr=0.3, private_grads=hook)
  server, clients, metrics = run_rounds(setup, rounds)
  return [float(m['train/loss']) for m in metrics], _accuracy(setup, server, clients, 20)


def test_a_tiny_federation_trains_under_small_dp_noise_and_not_under_large():
  # Measured (15 rounds, C = 1): no DP loss 0.97 -> 0.51, accuracy 0.82;
  # sigma 0.5: 1.01 -> 0.54, 0.82; sigma 8: 1.14 -> 0.85, 0.59.
  plain_loss, plain_acc = _tiny_run(None)
  loss, acc = _tiny_run(0.5)
  assert loss[-1] < 0.7 * loss[0]
  assert acc > plain_acc - 0.05
  noisy_loss, noisy_acc = _tiny_run(8.0)
  assert noisy_loss[-1] > loss[-1] + 0.15 and noisy_acc < acc - 0.1


# test_a_tiny_federation_trains_under_small_dp_noise_and_not_under_large is default.
@pytest.mark.slow
def test_an_example_mode_experiment_trains_and_reports_epsilon(config):
  config.num_rounds = 3
  _config(config, noise_multiplier=0.5, example_clip=1.0)
  exp = experiment.build(config)
  assert exp.privacy.mode == 'example'
  # Test config: B = 8, 2 steps, 8..16 examples: K = 2 where N < 16.
  counts = privacy_feature.example_counts(exp.problem, exp.world, config.population_size)
  assert 8 <= counts.min() < 16
  direct = [rdp.RdpAccountant().compose(dp_accounting.GaussianDpEvent(0.25), 2 * r)
            .get_epsilon(DELTA) for r in (1, 2, 3)]
  eps = [exp.host_metrics(r)['privacy/epsilon'] for r in (1, 2, 3)]
  np.testing.assert_allclose(eps, direct, rtol=1e-6)
  _, _, metrics = run_rounds(exp, 3)
  losses = [float(m['train/loss']) for m in metrics]
  assert all(np.isfinite(losses)) and losses[-1] < losses[0]
