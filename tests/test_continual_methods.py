"""The S4 / S5 directions and TAP as published (issue 23): known answers and invariants.

task_isolation, dynamic_task_modules, temporal_gate, lwf, mas and TAP's
published variant, each on hand-checkable values or on the tiny XR problem;
the experiment-level runs of every one of them are the slow test at the end.
"""
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from fedxr_jax import algorithms
from fedxr_jax.algorithms import dynamic_task_modules as dtm
from fedxr_jax.algorithms import lwf as lwf_lib
from fedxr_jax.algorithms import tap as tap_lib
from fedxr_jax.algorithms import task_isolation as isolation
from fedxr_jax.algorithms import temporal_gate as gate_lib
from fedxr_jax.algorithms.registry import extend_model
from fedxr_jax.compose import experiment
from fedxr_jax.compose import xr_problem
from fedxr_jax.core import local as local_lib
from fedxr_jax.core import problem as problem_lib
from fedxr_jax.core.algorithm import ClientContext, RunFacts, ServerUpdate
from fedxr_jax.data import sources
from fedxr_jax.errors import ConfigError
from fedxr_jax.models import registry as models
from fedxr_jax.models.interface import ModelDef, Spec
import tiny
from helpers import assert_trees_equal, run_rounds


# -- task_isolation ----------------------------------------------------------------

def test_pcgrad_projects_only_conflicting_gradients():
  # g1 = [1, 0], g2 = [-1, 1] conflict: g1' = g1 + g2 / 2 = [.5, .5], g2' = g2 + g1 = [0, 1].
  gram = jnp.array([[1.0, -1.0], [-1.0, 2.0]])
  np.testing.assert_allclose(isolation.pcgrad_weights(gram), [2.0, 1.5])
  loss = lambda g: lambda th: jnp.sum(isolation.fan_out(th, 2) * g)
  conflicting = jnp.array([[1.0, 0.0], [-1.0, 1.0]])
  np.testing.assert_allclose(jax.grad(loss(conflicting))(jnp.zeros(2)), [0.5, 1.5])
  agreeing = jnp.array([[1.0, 0.0], [1.0, 1.0]])   # no conflict: the plain sum
  np.testing.assert_allclose(jax.grad(loss(agreeing))(jnp.zeros(2)), [2.0, 1.0])
  absent = jnp.array([[1.0, 0.0], [0.0, 0.0]])     # a task without labels projects nothing
  np.testing.assert_allclose(jax.grad(loss(absent))(jnp.zeros(2)), [1.0, 0.0])


def test_a_task_a_step_leaves_task_b_outputs_head_and_components_unchanged():
  # A one-block M3T with three tasks and a LoRA component each; one SGD step on task a's
  # loss alone (the task-split trees: LoRA and heads).
  tasks = {'a': 3, 'b': 2, 'c': 2}
  spec = Spec({'motion': ((8, 3), (2, 3)), 'gaze': ((8, 2), (2, 2))}, tasks)
  base = models.make('m3t', dict(width=8, num_heads=2, mlp_width=8, depth=1, num_prompts=1,
                                 lora_rank=3), spec, lora_residual=False, dtype='float32')
  model = extend_model({'name': 'task_isolation', 'task_isolation': {'common': 'fixed'}},
                       base, spec, {'lora_a': 'shared', 'lora_b': 'shared', 'heads': 'shared'})
  key_m, key_g, key_y = jax.random.split(jax.random.key(1), 3)
  x = {'motion': jax.random.normal(key_m, (6, 8, 3)), 'gaze': jax.random.normal(key_g, (6, 8, 2))}
  mask, y = jnp.ones((6, 2), bool), jax.random.randint(key_y, (6,), 0, 3)

  @jax.jit
  def step(params):
    flat = traverse_util.flatten_dict(params)
    split = {p: v for p, v in flat.items() if model.role_of(p) in isolation.TASK_ROLES}
    fixed = {p: v for p, v in flat.items() if p not in split}

    def task_a_loss(trained):
      logits = model.apply(traverse_util.unflatten_dict({**fixed, **trained}), x, mask)[0]['a']
      return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

    grads = jax.grad(task_a_loss)(split)
    moved = {p: v - 0.5 * grads[p] for p, v in split.items()}
    return traverse_util.unflatten_dict({**fixed, **moved})

  params = jax.jit(model.init)(jax.random.key(0))
  new = step(step(params))   # two steps: the LoRA B factor is zero at init
  before, after = (jax.jit(model.apply)(p, x, mask)[0] for p in (params, new))
  assert not np.allclose(after['a'], before['a'])
  for t in ('b', 'c'):
    np.testing.assert_array_equal(after[t], before[t])
  flat_old, flat_new = traverse_util.flatten_dict(params), traverse_util.flatten_dict(new)
  lora = [p for p in flat_old if model.role_of(p) in ('lora_a', 'lora_b')]
  assert lora and any(not np.allclose(flat_new[p][0], flat_old[p][0]) for p in lora)
  for p in lora:   # components 1 and 2 belong to tasks b and c
    np.testing.assert_array_equal(flat_new[p][1:], flat_old[p][1:])
  heads = {t: [p for p in flat_old if model.role_of(p) == 'heads' and t in p] for t in tasks}
  assert all(heads.values())
  assert any(not np.allclose(flat_new[p], flat_old[p]) for p in heads['a'])
  for p in heads['b'] + heads['c']:
    np.testing.assert_array_equal(flat_new[p], flat_old[p])


# The same invariant through the XR problem's loss and local training (a data build and
# two compiled local updates); the one-block model test above covers it by default.
@pytest.mark.slow
def test_a_task_a_update_leaves_task_b_head_and_loss_unchanged(config):
  """Client 0, holding only its first task, trains two local steps of the tiny problem."""
  config.algorithm.name = 'task_isolation'
  config.algorithm.task_isolation.common = 'fixed'
  config.model.m3t.lora_rank = 3
  data_source = sources.make_data(config)   # the problem without make_problem's cost probe
  spec, world = data_source.spec, data_source.source
  model = experiment.make_model(config, spec)
  problem = xr_problem.make_xr_problem(spec, model, client_data_fn=data_source.client_data)
  tasks = spec.tasks
  plan = experiment.present_plan(experiment.make_plan(config, model.lora_rank), problem)
  algorithm = algorithms.make('task_isolation', config.algorithm.task_isolation,
                              experiment.run_facts(config, plan, spec))
  params, data = jax.jit(lambda w: (problem.init_params(jax.random.key(0)),
                                    problem.client_data(w, jnp.int32(0), 'train', 0)))(world)
  old = {r: v for r, v in params.items() if plan.get(r, 'frozen') != 'frozen'}
  frozen = {r: v for r, v in params.items() if r not in old}
  data = {**data, 'task_mask': jnp.arange(len(tasks)) == 0, 'step_budget': 2}
  local = local_lib.make_local_update(problem.loss, optax.sgd(0.5), local_steps=2,
                                      batch_size=8)
  # With the algorithm's role schedule, and (the control) the common path trained too.
  new, moved = jax.jit(lambda p: tuple(
      local(p, frozen, data, jax.random.key(1), role_active=schedule)[0]
      for schedule in (algorithm.role_schedule, None)))(old)

  @jax.jit
  def task_losses(params):   # each task t's loss on the client's data, as if it held only t
    meta = lambda t: {**problem_lib.client_meta(data), 'task_mask': jnp.arange(len(tasks)) == t}
    return jnp.stack([problem.loss({**frozen, **params}, data['examples'], meta(t))[1]
                      ['per_task'][t] for t in range(len(tasks))])

  heads_old, heads_new = old['heads']['heads'], new['heads']['heads']
  assert not np.allclose(heads_new[tasks[0]]['kernel'], heads_old[tasks[0]]['kernel'])
  loss_old, loss_new, loss_moved = (np.asarray(task_losses(p)) for p in (old, new, moved))
  for t in (1, 2):   # the other tasks: head, LoRA components and loss as they were
    for a, b in zip(jax.tree.leaves(heads_old[tasks[t]]), jax.tree.leaves(heads_new[tasks[t]])):
      np.testing.assert_array_equal(a, b)
    for role in ('lora_a', 'lora_b'):
      for a, b in zip(jax.tree.leaves(old[role]), jax.tree.leaves(new[role])):
        np.testing.assert_array_equal(a[t], b[t])
    assert loss_new[t] == loss_old[t]
  assert loss_new[0] < loss_old[0]
  assert any(not np.allclose(a[0], b[0]) for a, b in zip(
      jax.tree.leaves(old['lora_a']), jax.tree.leaves(new['lora_a'])))
  # The common path trained (no schedule) moves task b's loss: the paths isolate, not
  # the heads alone.
  assert loss_moved[1] != loss_old[1]


# -- dynamic_task_modules ------------------------------------------------------------

def test_linear_cka_known_answers():
  z = jax.random.normal(jax.random.key(0), (64, 3))
  y = jax.random.normal(jax.random.key(1), (64, 2))

  def cka(a, b):
    return float(dtm.linear_cka(a.sum(0), b.sum(0), a.T @ a, a.T @ b, b.T @ b, a.shape[0]))

  assert cka(z, z) == pytest.approx(1.0, abs=1e-5)
  assert cka(z, 3.0 * z + 1.0) == pytest.approx(1.0, abs=1e-5)   # scale and shift
  assert cka(z[:, :2], y) < 0.2
  assert cka(jnp.zeros((64, 3)), y) == 0.0                       # a constant head


def _fake_model(tasks: dict, width: int = 4) -> ModelDef:
  """A linear model: {task: x W_t + b_t}, params {'heads': {'heads': {t: ...}}}."""
  def init(key):
    return {'heads': {'heads': {t: {'kernel': jax.random.normal(jax.random.fold_in(key, i),
                                                                (width, k)),
                                    'bias': jnp.zeros((k,))}
                                for i, (t, k) in enumerate(tasks.items())}}}

  def apply(params, x, mask):
    del mask
    h = params['heads']['heads']
    return {t: x['v'] @ h[t]['kernel'] + h[t]['bias'] for t in tasks}, {}

  return ModelDef(name='fake', init=init, apply=apply, features=None,
                  role_of=lambda path: 'heads',
                  module_weights=lambda c: {'heads': {'heads': dict(c['labeled'])}},
                  lora_rank=0, lora_scale=0.0, num_experts=0, tokens=1, width=width, depth=1,
                  num_heads=1, dtype='float32', moe_balance=0.0)


def _cka_sums(z, y, n_labels):
  w = jnp.ones(z.shape[0])
  yy = jax.nn.one_hot(y, n_labels)
  return {'z': z.sum(0), 'y': yy.sum(0), 'zz': z.T @ z, 'zy': z.T @ yy, 'yy': yy.T @ yy,
          'n': w.sum()}


def test_dynamic_modules_extend_a_similar_head_after_the_probe():
  tasks = {'a': 2, 'b': 2, 'c': 2}
  model = extend_model({'name': 'dynamic_task_modules', 'dynamic_task_modules': {}},
                       _fake_model(tasks), Spec({}, tasks), {})
  params = model.init(jax.random.key(0))
  x = {'v': jax.random.normal(jax.random.key(1), (16, 4))}
  base = _fake_model(tasks).apply({'heads': params['heads']}, x, None)[0]
  out = model.apply(params, x, None)[0]
  for t in tasks:   # before any decision: every task's own head, bit for bit
    np.testing.assert_array_equal(out[t], base[t])

  facts = RunFacts(plan={'heads': 'shared'}, tasks=tuple(tasks))
  algo = algorithms.make('dynamic_task_modules', dict(probe_rounds=1, similarity=0.5), facts)
  shared = {'heads': {**params['heads'], dtm.NAME: params[dtm.NAME]}}
  state = algo.init_server_state(shared)
  labels = jax.random.randint(jax.random.key(2), (40,), 0, 2)
  other = jax.random.normal(jax.random.key(3), (40, 2))
  z = jnp.concatenate([jax.nn.one_hot(labels, 2), other, other], 1)   # head a = c's labels

  def report(labeled, loss_new, loss_ext):
    cka = {t: _cka_sums(z, labels, 2) for t in tasks}
    return {'labeled': jnp.asarray(labeled, jnp.float32), 'cka': cka,
            'loss_new': jnp.asarray(loss_new), 'loss_ext': jnp.asarray(loss_ext)}

  def step(state, r, rep):
    return algo.update_server_state(state, ServerUpdate(None, 1.0, rep, shared, jnp.int32(r)))

  zero = [0.0, 0.0, 0.0]
  state = step(state, 0, report([1, 1, 0], zero, zero))            # a and b from round 0
  state = step(state, 3, report([1, 1, 1], zero, zero))            # c arrives at round 3
  np.testing.assert_array_equal(state['first'], [0, 0, 3])
  assert int(state['source'][2]) == 0 and float(state['similarity'][2]) > 0.99
  assert not bool(state['decided'][2])
  edited = algo.edit_model(shared, state)['heads'][dtm.NAME]['c']
  np.testing.assert_array_equal(edited['source'], [1, 1, 0, 0, 0, 0])
  assert float(edited['extend']) == 0.0                            # still probing
  # The probe round: the extension's loss is within the tolerance: extend.
  done = step(state, 4, report([1, 1, 1], [0.5, 0.5, 0.50], [0.5, 0.5, 0.51]))
  assert bool(done['decided'][2]) and bool(done['extend'][2])
  assert not done['decided'][:2].any()                             # a and b never arrived
  edited = algo.edit_model(shared, done)['heads'][dtm.NAME]['c']
  assert float(edited['extend']) == 1.0
  # ...and its outputs are then the adapter's on head a's outputs.
  own = {**params[dtm.NAME], 'c': {**edited, 'adapter': jnp.eye(6, 2), 'bias': jnp.ones(2)}}
  out = model.apply({**params, dtm.NAME: own}, x, None)[0]
  np.testing.assert_allclose(out['c'], base['a'] + 1.0, rtol=1e-6)
  # A clearly worse extension: a new head.
  done = step(state, 4, report([1, 1, 1], [0.5, 0.5, 0.5], [0.5, 0.5, 0.9]))
  assert bool(done['decided'][2]) and not bool(done['extend'][2])


# -- temporal_gate -------------------------------------------------------------------

def _tiny_m3t(algorithm_block):
  spec = Spec({'motion': ((8, 3), (2, 3)), 'gaze': ((8, 2), (2, 2))}, {'gesture': 3})
  base = models.make('m3t', dict(width=8, num_heads=2, mlp_width=8, depth=1, num_prompts=1,
                                 lora_rank=0), spec, lora_residual=False, dtype='float32')
  return base, extend_model(algorithm_block, base, spec, {'adapters': 'shared'})


def test_temporal_gate_closed_is_the_model_and_open_ignores_a_drift():
  base, model = _tiny_m3t({'name': 'temporal_gate', 'temporal_gate': {}})
  params = jax.jit(model.init)(jax.random.key(0))
  key_m, key_g = jax.random.split(jax.random.key(1))
  x = {'motion': jax.random.normal(key_m, (4, 8, 3)), 'gaze': jax.random.normal(key_g, (4, 8, 2))}
  mask = jnp.ones((4, 2), bool)
  own = params[gate_lib.NAME]
  shut = {**params, gate_lib.NAME: {**own, 'out': {**own['out'], 'bias': jnp.full(2, -jnp.inf)}}}
  apply = jax.jit(model.apply)
  plain = jax.jit(base.apply)({k: v for k, v in params.items() if k != gate_lib.NAME}, x, mask)
  np.testing.assert_array_equal(apply(shut, x, mask)[0]['gesture'], plain[0]['gesture'])
  wide = {**params, gate_lib.NAME: {**own, 'out': {**own['out'], 'bias': jnp.full(2, jnp.inf)}}}
  # An offset on both streams (a biased sensor, a darker scene), then a gain as well: the
  # normalised streams differ only by the scale's epsilon.
  shifted = {m: v + 0.5 for m, v in x.items()}
  drifted = {m: 3.0 * v + 0.5 for m, v in x.items()}
  opened = apply(wide, x, mask)[0]['gesture']
  np.testing.assert_allclose(apply(wide, shifted, mask)[0]['gesture'], opened, atol=1e-5)
  np.testing.assert_allclose(apply(wide, drifted, mask)[0]['gesture'], opened, atol=5e-3)
  assert not np.allclose(apply(shut, drifted, mask)[0]['gesture'], plain[0]['gesture'],
                         atol=5e-3)   # the raw model moves
  signals_of = jax.jit(lambda v: gate_lib.drift_signals(v, mask, ('motion', 'gaze')))
  signals, offsets, scales = signals_of(drifted)
  _, offsets0, scales0 = signals_of(x)
  np.testing.assert_allclose(offsets['gaze'], 3.0 * offsets0['gaze'] + 0.5, rtol=1e-5)
  np.testing.assert_allclose(scales['gaze'] - gate_lib.EPS, 3.0 * (scales0['gaze']
                                                                   - gate_lib.EPS), rtol=1e-5)
  assert signals.shape == (4, 8)


# -- lwf and mas -----------------------------------------------------------------------

def test_lwf_terms_and_teacher():
  out = lambda a, b: {'outputs': {'t0': jnp.array([a]), 't1': jnp.array([b])},
                      'features': jnp.array([[1.0, 2.0]])}
  same = lwf_lib.distillation(out([0.0, 1.0], [2.0, 0.0]), out([0.0, 1.0], [2.0, 0.0]),
                              ('t0', 't1'), jnp.ones(2), jnp.ones(1, bool), 2.0)
  assert all(float(v) == 0.0 for v in same.values())
  teacher = out([0.0, jnp.log(3.0)], [0.0, 0.0])
  student = {'outputs': {'t0': jnp.zeros((1, 2)), 't1': jnp.zeros((1, 2))},
             'features': jnp.array([[1.0, 4.0]])}
  terms = lwf_lib.distillation(teacher, student, ('t0', 't1'), jnp.array([1.0, 0.0]),
                               jnp.ones(1, bool), 1.0)
  p = np.array([0.25, 0.75])   # KL(softmax([0, ln 3]) || uniform), t1 not known
  assert float(terms['heads']) == pytest.approx(float(np.sum(p * np.log(p / 0.5))), rel=1e-5)
  assert float(terms['features']) == pytest.approx(2.0)   # (2^2 + 0) / 2

  facts = RunFacts(plan={'heads': 'shared'}, tasks=('t0', 't1'))
  algo = algorithms.make('lwf', {'rounds': (3,)}, facts)
  shared = {'heads': jnp.zeros(2)}
  state = algo.init_server_state(shared)
  problem = types.SimpleNamespace(
      loss=lambda p, b, m: (jnp.sum(p['heads']), {}),
      predict=lambda p, b, m: dict.fromkeys(('t0', 't1'), jnp.stack([p['heads']] * 2)))
  batch, meta = {'example_mask': jnp.ones(2, bool)}, {}
  params = {'heads': jnp.array([1.0, -1.0])}
  # No teacher yet: the problem's loss.
  assert float(algo.objective(problem, shared, {}, state)(params, batch, meta)[0]) == 0.0
  update = lambda st, r: algo.update_server_state(st, ServerUpdate(
      None, 1.0, {'labeled': jnp.array([1.0, 0.0])}, {'heads': jnp.array([5.0, 5.0])},
      jnp.int32(r)))
  assert not bool(update(state, 0)['active'])
  state = update(state, 2)                     # the round before the boundary ends
  assert bool(state['active'])
  np.testing.assert_array_equal(state['teacher']['heads'], [5.0, 5.0])
  np.testing.assert_array_equal(state['known'], [True, False])
  loss = float(algo.objective(problem, shared, {}, state)(params, batch, meta)[0])
  q = jax.nn.softmax(jnp.array([1.0, -1.0]) / 2.0)   # teacher uniform, T = 2
  assert loss == pytest.approx(4.0 * float(jnp.sum(0.5 * jnp.log(0.5 / q))), rel=1e-5)


def test_mas_importance_of_a_linear_model():
  facts = RunFacts(plan={'heads': 'shared'}, tasks=('t',), batch_size=3)
  algo = algorithms.make('mas', {'rounds': (2,), 'lam': 0.5}, facts)
  w = jnp.array([[1.0, 2.0], [0.0, -1.0]])
  x = jnp.array([[1.0, 1.0], [2.0, 0.0], [0.0, 3.0], [9.0, 9.0]])
  data = {'examples': {'x': x, 'example_mask': jnp.arange(4) < 3},
          'task_mask': jnp.array([True]), 'num_examples': jnp.int32(3)}
  ctx = ClientContext(start={'heads': w}, trained={'heads': w}, data=data, train=None,
                      task_losses=None, example_grads=None,
                      predict=lambda p, b, m: {'t': b['x'] @ p['heads']}, loss=None)
  omega = algo.client_report(ctx, {})['heads']
  # d ||x W||^2 / dW = 2 x (x W)^T, absolute, mean over the 3 valid examples.
  expected = np.mean([np.abs(2 * np.outer(v, v @ np.asarray(w))) for v in np.asarray(x[:3])], 0)
  np.testing.assert_allclose(omega, expected, rtol=1e-5)
  state = algo.init_server_state({'heads': w})
  state = algo.update_server_state(state, ServerUpdate(None, 1.0, {'heads': omega},
                                                       {'heads': w}, jnp.int32(1)))
  np.testing.assert_allclose(state['omega']['heads'], expected, rtol=1e-6)
  moved = {'heads': w + 1.0}
  reg = algo.regularizer(moved, None, {}, state)
  assert float(reg) == pytest.approx(0.5 * float(np.sum(expected)), rel=1e-5)


def _tiny_rounds(name: str, settings: dict, rounds: int = 2):
  """The shared model after `rounds` rounds of the tiny problem under algorithm `name`."""
  s = tiny.setup(population=8, cohort=4, local_steps=3, algorithm=name,
                 algorithm_settings=settings)
  step = jax.jit(s.federation.round)
  server, clients, frozen = jax.jit(s.federation.init)(s.world, s.key)
  for r in range(rounds):
    server, clients, _ = step(server, clients, frozen, s.world, s.plan(r)[0])
  return server.shared


def test_lwf_and_mas_with_weight_zero_are_fedavg():
  fedavg = _tiny_rounds('fedavg', {})
  # The teacher / anchor is taken after round 0: round 1 carries the zero-weight terms.
  assert_trees_equal(_tiny_rounds('lwf', {'rounds': (1,), 'heads': 0.0}), fedavg)
  assert_trees_equal(_tiny_rounds('mas', {'rounds': (1,), 'lam': 0.0}), fedavg)
  distilled = _tiny_rounds('lwf', {'rounds': (1,), 'heads': 1.0})
  assert not np.allclose(distilled['body']['w'], fedavg['body']['w'])


# -- TAP as published --------------------------------------------------------------------

def test_tap_distils_once_after_the_last_round_and_swaps_pair_modules():
  facts = RunFacts(local_steps=4, plan={'heads': 'shared'}, tasks=('t0', 't1'), num_rounds=5)
  tap = algorithms.make('tap', dict(finetune_steps=2, distill_once=True, pair_modules=True),
                        facts)
  params = {'heads': {'heads': {'t0': jnp.zeros(2), 't1': jnp.zeros(2)}}}
  ctx = ClientContext(
      start=params, trained=params, data={}, task_losses=None, example_grads=None,
      train=lambda p, **kw: (jax.tree.map(lambda x: x + 1.0, p), {'steps': jnp.int32(2)}),
      predict=None, loss=None, round=jnp.int32(4))
  kept, cost = tap.eval_adapt(ctx, {})
  np.testing.assert_array_equal(kept['heads']['heads']['t0'], 0.0)   # before the end: stage 1's
  assert int(cost.train_steps) == 0
  distilled, cost = tap.eval_adapt(ctx._replace(round=jnp.int32(5)), {})
  np.testing.assert_array_equal(distilled['heads']['heads']['t0'], 1.0)
  assert int(cost.train_steps) == 4     # teacher fine-tuning + distillation
  # Stage 1 takes task t's head and its pair modules together.
  glob = {'heads': {'heads': {'t0': jnp.float32(1.0), 't1': jnp.float32(1.0)},
                    tap_lib.PAIRS: {'t0': {'m': jnp.float32(1.0)}, 't1': {'m': jnp.float32(1.0)}}}}
  pers = jax.tree.map(lambda x: x * 0.0, glob)
  losses = lambda p: jnp.where(p['heads']['heads']['t1'] > 0.5, jnp.array([0.5, 2.0]),
                               jnp.array([1.0, 1.0]))
  ctx = ClientContext(start=glob, trained=glob,
                      data={'task_mask': jnp.array([True, True]), 'num_examples': jnp.int32(5)},
                      train=lambda p, **kw: (p, {'steps': jnp.int32(4)}), task_losses=losses,
                      example_grads=None, predict=None, loss=None)
  new = tap.personalize(ctx, {'personal': pers}, {})[0]['personal']['heads']
  assert float(new['heads']['t0']) == 1.0 and float(new[tap_lib.PAIRS]['t0']['m']) == 1.0
  assert float(new['heads']['t1']) == 0.0 and float(new[tap_lib.PAIRS]['t1']['m']) == 0.0


def test_tap_pair_modules_are_held_by_the_clients_with_the_pair():
  tasks = {'a': 2, 'b': 3}
  spec = Spec({'m0': None, 'm1': None}, tasks)
  model = extend_model({'name': 'tap', 'tap': {'pair_modules': True}}, _fake_model(tasks),
                       spec, {})
  counts = {'labeled': {'a': 4.0, 'b': 0.0},
            'pairs': {'a': {'m0': 4.0, 'm1': 0.0}, 'b': {'m0': 0.0, 'm1': 0.0}}}
  w = model.module_weights(counts)['heads'][tap_lib.PAIRS]
  assert w == {'a': {'m0': 4.0, 'm1': 0.0}, 'b': {'m0': 0.0, 'm1': 0.0}}
  params = model.init(jax.random.key(0))
  assert params[tap_lib.PAIRS]['b']['m1']['kernel'].shape == (4, 3)
  assert model.role_of((tap_lib.PAIRS, 'a', 'm0', 'kernel')) == 'heads'


# -- refusals -------------------------------------------------------------------------------

def test_each_method_refuses_what_it_does_not_support():
  tasks = ('a', 'b', 'c')
  shared = {'lora_a': 'shared', 'lora_b': 'shared', 'heads': 'shared', 'adapters': 'shared'}
  facts = lambda **plan: RunFacts(plan={**shared, **plan}, tasks=tasks, local_steps=4)
  cases = [
      ('task_isolation', {}, facts(lora_a='frozen', lora_b='frozen'), 'own LoRA'),
      ('task_isolation', {}, facts(lora_residual='shared'), 'exact LoRA rule'),
      ('task_isolation', {'common': 'never'}, facts(), 'common'),
      ('dynamic_task_modules', {}, facts(heads='personal'), 'plan.heads=shared'),
      ('dynamic_task_modules', {'probe_rounds': 0}, facts(), 'probe_rounds'),
      ('temporal_gate', {}, facts(adapters='frozen'), 'plan.adapters'),
      ('lwf', {}, facts(), 'algorithm.lwf.rounds'),
      ('lwf', {'rounds': (3,), 'experts': 1.0}, facts(), 'num_experts'),
      ('mas', {}, facts(), 'algorithm.mas.rounds'),
      ('tap', {'distill_once': True}, facts(), 'num_rounds'),
  ]
  for name, block, run, match in cases:
    with pytest.raises(ConfigError, match=match):
      algorithms.make(name, block, run)
  small = _fake_model(dict.fromkeys(tasks, 2))._replace(lora_rank=2)
  with pytest.raises(ConfigError, match='LoRA rank >= 3'):
    extend_model({'name': 'task_isolation', 'task_isolation': {}}, small,
                 Spec({}, dict.fromkeys(tasks, 2)), {})
  with pytest.raises(ConfigError, match='not supported yet: .*experts'):
    extend_model({'name': 'task_isolation', 'task_isolation': {}},
                 small._replace(lora_rank=3, num_experts=2), Spec({}, dict.fromkeys(tasks, 2)), {})


# -- every method through a run ----------------------------------------------------------------

RUNS = {
    'task_isolation': {'model.m3t.lora_rank': 3},
    'task_isolation_fixed': {'algorithm.name': 'task_isolation', 'model.m3t.lora_rank': 3,
                             'algorithm.task_isolation.common': 'fixed'},
    'dynamic_task_modules': {'data.functional.arrival_rounds': (0, 0, 1),
                             'algorithm.dynamic_task_modules.probe_rounds': 1},
    'temporal_gate': {'data.temporal.schedule': 'step', 'data.temporal.period_rounds': 1,
                      'data.temporal.sensor_degradation': 1.0},
    'lwf': {'algorithm.lwf.rounds': (1,), 'algorithm.lwf.features': 1.0},
    'mas': {'algorithm.mas.rounds': (1,)},
    'tap': {'algorithm.tap.pair_modules': True, 'algorithm.tap.distill_once': True,
            'algorithm.tap.finetune_steps': 1, 'num_rounds': 3},
}


# Experiment-level (a build and a compile each); the known-answer tests above cover each
# method's math by default.
@pytest.mark.slow
@pytest.mark.parametrize('run', list(RUNS))
def test_every_continual_method_trains_and_evaluates(config, run):
  config.algorithm.name = run
  for key, value in RUNS[run].items():
    *parents, leaf = key.split('.')
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  exp = experiment.build(config)
  server, clients, metrics = run_rounds(exp, 3)
  assert all(np.isfinite(float(m['train/loss'])) for m in metrics)
  _, _, frozen = jax.jit(exp.federation.init)(exp.world, exp.key)
  stats = jax.jit(exp.federation.evaluate, static_argnums=(5,))(
      server, clients, frozen, exp.world, jnp.arange(8), 'test')
  assert float(np.sum(stats['count'])) > 0
