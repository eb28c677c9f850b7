"""The compiled round: equivalences and invariants with known answers."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedxr_jax.core import rng
from fedxr_jax.core import round as round_lib
from fedxr_jax.compose import experiment
from helpers import assert_trees_close, assert_trees_equal, run_rounds

# Chunked/sharded rounds run the same math, but XLA:CPU blocks batched
# matmuls by batch size, so sums may be reassociated: float32 rounding only.
REASSOCIATION = dict(rtol=1e-5, atol=1e-6)


def test_round_traces_once(config):
  exp = experiment.build(config)
  fed = exp.federation
  server, clients, frozen = jax.jit(fed.init)(exp.world, exp.key)   # the runner's path
  plan, _ = exp.plan(0)
  round_fn = jax.jit(chex.assert_max_traces(fed.round, n=1))
  for _ in range(3):
    server, clients, metrics = round_fn(server, clients, frozen, exp.world, plan)
  assert int(server.round) == 3
  assert np.isfinite(float(metrics['train/loss']))


def _full_batch_config(config):
  """Every client: all sensors, all tasks, same example count; one full-batch step."""
  config.data.devices = ('apple_vision_pro',)
  config.data.modality_dropout = 0.0
  config.data.min_examples = config.data.max_examples = 8
  config.batch_size = 8
  config.local_steps = 1
  config.population_size = config.cohort_size = 4
  config.shuffle = False
  config.client_optimizer.learning_rate = 0.5
  return config


def test_fedavg_of_one_full_batch_step_is_a_centralized_gradient_step(config):
  exp = experiment.build(_full_batch_config(config))
  fed = exp.federation
  server, clients, frozen = jax.jit(fed.init)(exp.world, exp.key)   # the runner's path
  plan, _ = exp.plan(0)
  new_server, _, _ = jax.jit(fed.round)(server, clients, frozen, exp.world, plan)

  from fedxr_jax.compose import xr_problem
  problem = xr_problem.make_xr_problem(exp.spec, exp.model)
  data = jax.jit(jax.vmap(lambda c: problem.client_data(exp.world, c, 'train')))(
      jnp.arange(4))
  assert bool(jnp.all(data['task_mask']))
  union = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), data['examples'])
  meta = {'task_mask': data['task_mask'][0]}
  grads = jax.jit(jax.grad(lambda p: problem.loss({**frozen, **p}, union, meta)[0]))(
      server.shared)
  expected = jax.tree.map(lambda w, g: w - 0.5 * g, server.shared, grads)
  assert_trees_close(new_server.shared, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow   # masked aggregation has unit tests in tests/test_core.py
def test_module_no_client_holds_keeps_its_value(config):
  # Ray-Ban Meta glasses have camera and microphone only: no client trains
  # the motion or gaze encoders, so masked averaging must leave them alone,
  # while the vision encoder moves.
  config.data.devices = ('ray_ban_meta',)
  exp = experiment.build(config)
  fed = exp.federation
  server, clients, frozen = jax.jit(fed.init)(exp.world, exp.key)   # the runner's path
  plan, _ = exp.plan(0)
  before = server.shared['encoders']['encoders']
  after = jax.jit(fed.round)(server, clients, frozen, exp.world, plan)[0]
  after = after.shared['encoders']['encoders']
  assert_trees_equal(before['motion'], after['motion'])
  assert_trees_equal(before['gaze'], after['gaze'])
  assert not np.allclose(before['vision']['embed']['kernel'],
                         after['vision']['embed']['kernel'])


@pytest.mark.slow   # masked aggregation has unit tests in tests/test_core.py
def test_head_of_task_without_labels_keeps_its_value(config):
  # XReal Air has no microphone and no eye tracker; with only 'keyword'
  # (audio) and 'gesture' tasks, no client can label 'keyword'.
  config.data.devices = ('xreal_air',)
  config.data.tasks = ('gesture', 'keyword')
  exp = experiment.build(config)
  fed = exp.federation
  server, clients, frozen = jax.jit(fed.init)(exp.world, exp.key)   # the runner's path
  plan, _ = exp.plan(0)
  after = jax.jit(fed.round)(server, clients, frozen, exp.world, plan)[0]
  assert_trees_equal(server.shared['heads']['heads']['keyword'],
                     after.shared['heads']['heads']['keyword'])
  assert not np.allclose(server.shared['heads']['heads']['gesture']['kernel'],
                         after.shared['heads']['heads']['gesture']['kernel'])


# tests/test_topology.py::test_semi_with_chunked_clients_and_personal_heads compares chunked and
# unchunked rounds by default.
@pytest.mark.slow
def test_chunked_round_equals_unchunked(config):
  unchunked = experiment.build(config)
  config.chunk_size = 2
  chunked = experiment.build(config)
  a, _, _ = run_rounds(unchunked, 2)
  b, _, _ = run_rounds(chunked, 2)
  assert_trees_close(a.shared, b.shared, **REASSOCIATION)


@pytest.mark.slow   # tests/test_bench.py verifies re-runs bit for bit by default
def test_same_seed_is_bit_identical_and_seeds_differ(config):
  a, _, _ = run_rounds(experiment.build(config), 2)
  exp = experiment.build(config)
  b, _, _ = run_rounds(exp, 2)
  assert_trees_equal(a.shared, b.shared)
  config.seed = 1
  exp = experiment.build(config)
  c, _, _ = run_rounds(exp, 2)
  assert not np.allclose(a.shared['lora_b']['backbone']['block_0']['attn']['query']['lora_B'],
                         c.shared['lora_b']['backbone']['block_0']['attn']['query']['lora_B'])


# tests/test_strategies.py::test_personal_trees_are_never_communicated is default.
@pytest.mark.slow
def test_personal_trees_stay_with_their_clients(config):
  config.plan.heads = 'personal'
  config.population_size = 12
  config.cohort_size = 4
  exp = experiment.build(config)
  fed = exp.federation
  server, clients, frozen = jax.jit(fed.init)(exp.world, exp.key)   # the runner's path
  plan, _ = exp.plan(0)
  assert 'heads' not in server.shared
  new_server, new_clients, _ = jax.jit(fed.round)(server, clients, frozen, exp.world, plan)
  cohort = np.asarray(rng.sample_cohort(jax.random.key(config.seed), 0, 12, 4))
  kernel = lambda c: c.personal['heads']['heads']['gesture']['kernel']
  changed = ~np.all(np.isclose(kernel(clients), kernel(new_clients)), axis=(1, 2))
  assert sorted(np.flatnonzero(changed).tolist()) == sorted(cohort.tolist())


@pytest.mark.slow   # tests/test_algorithms.py runs server optimizers by default
def test_server_momentum_changes_the_update(config):
  plain = experiment.build(config)
  config.server_optimizer.sgd.momentum = 0.9
  momentum = experiment.build(config)
  a, _, _ = run_rounds(plain, 2)
  b, _, _ = run_rounds(momentum, 2)
  # Round 1 is identical (zero momentum), round 2 adds 0.9 x the first step.
  assert not np.allclose(a.shared['prompts']['prompts'], b.shared['prompts']['prompts'])
  assert isinstance(a, round_lib.ServerState)
