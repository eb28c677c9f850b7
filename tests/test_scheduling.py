"""Budget-aware scheduling and chunk sizes: the same numbers, fewer steps."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedxr_jax.core import chunking
from fedxr_jax.core import local as local_lib
from fedxr_jax.core import round as round_lib
from fedxr_jax.core import schedule
from fedxr_jax.core import vectorize
from fedxr_jax.errors import ConfigError
import tiny
from helpers import assert_trees_close, assert_trees_equal

BUILD = round_lib.build_federation
# Scheduling changes only the order in which the streamed sums add the
# clients: float32 reassociation of a few terms, about 1e-7 relative.
REORDERED = dict(rtol=2e-6, atol=1e-7)


def test_budget_order_is_stable_and_the_chunks_give_back_cohort_order():
  order = schedule.budget_order(jnp.array([3, 1, 3, 0, 1, 2]))
  np.testing.assert_array_equal(order, [3, 1, 4, 5, 0, 2])
  # Each chunk of 2 sees its clients in `order`: the sum of its ids.
  fn = lambda i: ({'i': i, 'chunk': jnp.zeros(())}, {'total': i})
  ids = jnp.arange(6) * 10
  out, summed = vectorize.map_clients(lambda i: fn(i), (ids,), chunk_size=2, order=order)
  np.testing.assert_array_equal(out['i'], ids)
  assert int(summed['total']) == 150


def test_sorting_happens_only_where_budgets_can_differ(monkeypatch):
  setup = tiny.setup(population=8, cohort=8)
  stage = _stage(setup)
  cohort = jnp.arange(8)
  assert schedule.budgets_vary(stage, setup.world, jnp.int32(0))
  assert schedule.cohort_order(stage, setup.world, cohort, 0, chunk_size=2) is not None
  for chunk, enabled in ((0, True), (8, True), (2, False)):   # one call, or off
    assert schedule.cohort_order(stage, setup.world, cohort, 0, chunk_size=chunk,
                                 enabled=enabled) is None
  constant = stage._replace(problem=_without_budgets(stage.problem))
  assert not schedule.budgets_vary(constant, setup.world, jnp.int32(0))


def test_vmapped_local_steps_stop_at_the_largest_budget():
  iterations = []

  def loss(params, batch, meta):
    del meta
    jax.debug.callback(lambda: iterations.append(1))
    return jnp.mean((batch['x'] * params['w']['v'] - 1.0) ** 2), ()

  update = local_lib.make_local_update(loss, optax.sgd(0.1), local_steps=8, batch_size=1,
                                       shuffle=False)
  data = {'examples': {'x': jnp.ones((2, 2))}, 'num_examples': jnp.array([2, 2]),
          'step_budget': jnp.array([1, 3])}
  run = jax.jit(jax.vmap(lambda d, k: update({'w': {'v': jnp.float32(0.0)}}, {}, d, k)))
  params, stats = run(data, jax.random.split(jax.random.key(0), 2))
  jax.effects_barrier()
  # 3 loop iterations, not 8 (the callback has no batched argument: one
  # call per iteration for the whole batch).
  assert len(iterations) == 3
  np.testing.assert_array_equal(stats['steps'], [1, 3])
  alone = [update({'w': {'v': jnp.float32(0.0)}}, {}, jax.tree.map(lambda x: x[i], data),
                  jax.random.key(0))[0]['w']['v'] for i in range(2)]
  np.testing.assert_allclose(params['w']['v'], alone, rtol=1e-6)


def _stage(setup):
  """The LocalStage a tiny federation's round closes over."""
  return next(c.cell_contents for c in setup.federation.round.__closure__
              if isinstance(c.cell_contents, round_lib.RoundSetup)).stage


def _without_budgets(problem):
  """The problem with no 'step_budget' in its data: every client runs local_steps."""
  def client_data(*args, **kwargs):
    data = dict(problem.client_data(*args, **kwargs))
    del data['step_budget']
    return data
  return problem._replace(client_data=client_data)


def _building_with(monkeypatch, **overrides):
  """tiny.setup's build_federation calls get `overrides` (tiny does not pass them)."""
  monkeypatch.setattr(round_lib, 'build_federation',
                      lambda *args, **kw: BUILD(*args, **{**kw, **overrides}))


def _federation(monkeypatch, scheduled, **kw):
  _building_with(monkeypatch, schedule_by_budget=scheduled)
  return tiny.setup(**kw)


def _run_both(monkeypatch, rounds=2, **kw):
  """(unscheduled, scheduled): each [(server, clients, metrics) per round] + eval sums."""
  runs = {}
  for scheduled in (False, True):
    setup = _federation(monkeypatch, scheduled, **kw)
    fed = setup.federation
    server, clients, frozen = jax.jit(fed.init)(setup.world, setup.key)
    step, states = jax.jit(fed.round), []
    for r in range(rounds):
      server, clients, metrics = step(server, clients, frozen, setup.world, setup.plan(r)[0])
      states.append((server, clients, metrics))
    ids = jnp.arange(kw.get('population', 8), dtype=jnp.int32)
    evaluated = jax.jit(fed.evaluate, static_argnums=(5,))(server, clients, frozen,
                                                            setup.world, ids, 'test')
    runs[scheduled] = (states, evaluated)
  return runs[False], runs[True]


@pytest.mark.parametrize('algorithm', [   # fedavg by default
    'fedavg', pytest.param('ditto', marks=pytest.mark.slow),
    pytest.param('local_ft', marks=pytest.mark.slow),
    pytest.param('fedrep', marks=pytest.mark.slow)])
def test_scheduled_chunks_give_the_unscheduled_numbers(monkeypatch, algorithm):
  # Random budgets in 1..4 over 16 clients in chunks of 4; personal heads.
  # Ditto trains a personal model, local_ft fine-tunes in evaluation, FedRep
  # schedules roles by step: all through the same loop. (TAP needs the XR
  # model's heads: benchmarks/same_numbers.py checks it.)
  kw = dict(population=16, cohort=16, local_steps=4, chunk_size=4, algorithm=algorithm,
            plan={'body': 'shared', 'head': 'personal'})
  if algorithm == 'fedrep':
    kw['algorithm_settings'] = {'head_steps': 1, 'head_roles': ('head',)}
  (off, off_eval), (on, on_eval) = _run_both(monkeypatch, **kw)
  budgets = tiny.make_source(20, 4)['budget'][:16]
  assert list(np.argsort(budgets, kind='stable')) != list(range(16))   # the order changes
  # In round 1 each client computes what it computed unscheduled, bit for bit.
  assert_trees_equal(off[0][1], on[0][1])
  # Sums over the cohort add in another order (and round 2 starts from them).
  for (s_off, c_off, m_off), (s_on, c_on, m_on) in zip(off, on):
    assert_trees_close(s_off.shared, s_on.shared, **REORDERED)
    assert_trees_close(c_off, c_on, **REORDERED)
    assert_trees_close(m_off, m_on, **REORDERED)
  assert_trees_close(off_eval, on_eval, **REORDERED)


def test_equal_budgets_change_only_the_rounding_of_cohort_means(monkeypatch):
  # Data budgets all equal: the stable order is the cohort's own, so every
  # client and every streamed sum is the same; a cohort mean of per-client
  # stats may compile to another summation order.
  off, on = _run_both(monkeypatch, population=16, cohort=16, local_steps=3, chunk_size=4,
                      budgets=[3])
  for (s_off, c_off, m_off), (s_on, c_on, m_on) in zip(off[0], on[0]):
    assert_trees_equal((s_off, c_off), (s_on, c_on))
    assert_trees_close(m_off, m_on, **REORDERED)
  assert_trees_equal(off[1], on[1])


def test_budgets_that_cannot_differ_give_the_same_program_bit_for_bit(monkeypatch):
  problem = tiny.problem
  monkeypatch.setattr(tiny, 'problem', lambda *a: _without_budgets(problem(*a)))
  off, on = _run_both(monkeypatch, population=16, cohort=16, local_steps=3, chunk_size=4)
  assert_trees_equal(off, on)


def test_auto_chunk_prefers_small_chunks_on_cpu_and_shrinks_to_fit():
  mib = 2.0**20
  pick = lambda n, budget, **kw: chunking.auto_chunk_size(
      n, budget_bytes=budget * mib, bound=lambda k: 10 * k * mib,
      measure=lambda k: 2 * k * mib, **kw)
  assert pick(32, 1e6, platform='cpu') == 8
  assert pick(32, 1e6, platform='cpu', mesh_size=2) == 16     # 8 per device
  assert pick(6, 1e6, platform='cpu') == 0 and pick(24, 1e6, platform='cpu') == 8
  assert pick(32, 1e6, platform='gpu') == 0                   # the whole cohort
  assert pick(32, 9, platform='cpu') == 4                     # 8 needs 16 MiB, 4 needs 8
  assert pick(32, 50, platform='gpu') == 16                   # 32 clients need 64 MiB
  # 2 MiB a client (the measure), 1 MiB left: refused naming both and what to lower.
  with pytest.raises(ConfigError, match=r'one client trains in an estimated 0.0021 GB but '
                     r'0.00105 GB is left .*; lower local_steps'):
    pick(32, 1, platform='cpu')
  with pytest.raises(ConfigError, match='splits evenly'):
    pick(6, 1e6, platform='cpu', mesh_size=4)


def test_parse_chunk_size():
  assert chunking.parse('auto') == 'auto' and chunking.parse('AUTO') == 'auto'
  assert chunking.parse('8') == 8 and chunking.parse(0) == 0
  for bad in ('-1', 'big', -2):
    with pytest.raises(ConfigError):
      chunking.parse(bad)


def test_auto_chunk_size_is_measured_on_the_federation(monkeypatch):
  setup = tiny.setup(population=16, cohort=16, chunk_size=4)
  stage = _stage(setup)
  states = jax.eval_shape(setup.federation.init, setup.world, setup.key)
  temps = [chunking.chunk_memory(stage, states, setup.world, k)['temp'] for k in (1, 4)]
  bound = chunking.chunk_bytes_bound(stage, states, setup.world, 1)
  assert 0 < temps[0] < temps[1] <= 4 * bound
  _building_with(monkeypatch, chunk_size='auto', source=setup.world)
  assert tiny.setup(population=16, cohort=16).federation.chunk_size == 8
  with pytest.raises(ConfigError, match='source'):
    BUILD(setup.problem, {'body': 'shared', 'head': 'shared'}, population_size=4,
          cohort_size=4, local_steps=1, batch_size=1, client_optimizer=optax.sgd(0.1),
          server_optimizer=optax.sgd(1.0), topology=setup.federation.topology,
          chunk_size='auto')
