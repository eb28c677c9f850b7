"""The paper's research directions S1-S3 (issue 23): known answers and invariants.

crossmodal_distill (S1), offload and resource_aware (S2), module_library and
signature_prompts (S3). Round-level invariants run on the tiny problem
(tests/tiny.py, compiles in a second); the model-level ones on an 8-wide M3T.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tiny
from fedxr_jax.algorithms import crossmodal_distill as crossmodal_lib
from fedxr_jax.algorithms import offload as offload_lib
from fedxr_jax.algorithms import resource_aware
from fedxr_jax.compose import experiment
from fedxr_jax.compose import pipeline
from fedxr_jax.compose import xr_problem
from fedxr_jax.core.algorithm import RunFacts
from fedxr_jax.data import catalog
from fedxr_jax.data import shift
from fedxr_jax.errors import ConfigError
from fedxr_jax.models import library as library_lib
from fedxr_jax.models import m3t
from fedxr_jax.models import mlp
from fedxr_jax.models import signature as signature_lib
from fedxr_jax.models.interface import Spec
from helpers import assert_trees_close, assert_trees_equal, run_rounds

MODALITIES = {m: (catalog.MODALITIES[m].shape, catalog.MODALITIES[m].token_shape)
              for m in ('audio', 'motion')}
SPEC = Spec(MODALITIES, {'gesture': 6, 'intent': 4})
SMALL = dict(lora_residual=False, dtype='float32', width=8, depth=2, num_heads=2,
             mlp_width=8, num_prompts=2, lora_rank=2)


def _inputs(n=3, seed=1):
  keys = jax.random.split(jax.random.key(seed), len(MODALITIES))
  x = {m: jax.random.normal(k, (n,) + layout[0]) for k, (m, layout) in
       zip(keys, MODALITIES.items())}
  return x, jnp.ones((n, len(MODALITIES)), bool)


# -- S1 crossmodal_distill ---------------------------------------------------

def _two_modality_problem(poor_only=False):
  """The tiny problem with modality a (features 0-1) and b (2-3); device 1 (or, with
  `poor_only`, every device) senses only a, and an absent modality reads as zeros."""
  def make(walk_m_per_round=0.0):
    base = tiny.problem(walk_m_per_round)
    of_feature = jnp.array([0, 0, 1, 1])

    def client_data(source, c, split, round_idx=0):
      data = base.client_data(source, c, split, round_idx)
      has_b = jnp.logical_not(poor_only) & (data['device'] == 0)
      n = data['examples']['x'].shape[0]
      mask = jnp.broadcast_to(jnp.stack([jnp.array(True), has_b]), (n, 2))
      return {**data, 'examples': {**data['examples'], 'modality_mask': mask}}

    def seen(batch):
      return {**batch, 'x': batch['x'] * batch['modality_mask'][:, of_feature]}

    return base._replace(
        client_data=client_data, loss=lambda p, b, m: base.loss(p, seen(b), m),
        predict=lambda p, b, m: base.predict(p, seen(b), m),
        eval_stats=lambda p, d: base.eval_stats(p, {**d, 'examples': seen(d['examples'])}))
  return make


def _tiny_runs(algorithm='fedavg', settings=None, rounds=2, values=(None,), **kw):
  """[(server, metrics)] of the tiny federation, one per value of the algorithm's server
  coefficient (`values`: {key: value} set in its server state; None: as built), every
  run on one compiled round (the coefficients are data)."""
  setup = tiny.setup(algorithm=algorithm, algorithm_settings=settings,
                     facts={'modalities': ('a', 'b'), 'devices': ('glasses', 'headset')},
                     **kw)
  fed = setup.federation
  init, round_fn = jax.jit(fed.init), jax.jit(fed.round)
  out = []
  for value in values:
    server, clients, frozen = init(setup.world, setup.key)
    if value is not None:
      server = server.replace(algorithm={**server.algorithm, **{
          k: jnp.float32(v) for k, v in value.items()}})
    metrics = []
    for r in range(rounds):
      server, clients, m = round_fn(server, clients, frozen, setup.world, setup.plan(r)[0])
      metrics.append(m)
    out.append((server, metrics))
  return out


def test_crossmodal_distill_weight_zero_is_fedavg_and_a_poor_client_trains_as_fedavg():
  problem, settings = _two_modality_problem(), {'student_modalities': ('a',)}
  (fedavg, _), = _tiny_runs(problem_fn=problem)
  (zero, _), (distilled, _) = _tiny_runs('crossmodal_distill', settings, problem_fn=problem,
                                         values=({'weight': 0.0}, {'weight': 1.0}))
  assert_trees_equal(fedavg.shared, zero.shared)
  assert not np.allclose(distilled.shared['body']['w'], fedavg.shared['body']['w'])
  # A client sensing only the student's modalities distils nothing (KL(p || p) = 0).
  poor = _two_modality_problem(poor_only=True)
  (plain, _), = _tiny_runs(problem_fn=poor)
  (poor_distilled, _), = _tiny_runs('crossmodal_distill', settings, problem_fn=poor)
  assert_trees_close(plain.shared, poor_distilled.shared, rtol=1e-6, atol=1e-7)


def test_kl_of_the_student_view_by_hand():
  t, s = jnp.array([[2.0, 0.0]]), jnp.array([[0.0, 0.0]])
  p = np.exp([2.0, 0.0]) / np.exp([2.0, 0.0]).sum()
  np.testing.assert_allclose(crossmodal_lib.kl(t, s), [np.sum(p * np.log(p / 0.5))],
                             rtol=1e-6)
  # A regression or detection output: the mean squared difference of the outputs.
  np.testing.assert_allclose(crossmodal_lib.divergence('regression')(
      jnp.array([[1.0, 2.0]]), jnp.array([[0.0, 0.0]])), [2.5])
  assert crossmodal_lib.divergence('classification') is crossmodal_lib.kl
  batch = {'modality_mask': jnp.ones((2, 3), bool)}
  view = crossmodal_lib.student_view(batch, jnp.array([True, False, True]))
  np.testing.assert_array_equal(view['modality_mask'], [[1, 0, 1], [1, 0, 1]])


# -- S2 offload ---------------------------------------------------------------

def test_offload_fraction_zero_is_fedavg_bit_for_bit_and_charges_what_it_sends():
  (fedavg, _), = _tiny_runs()
  settings = {'devices': ('glasses',), 'helper': 'apple_vision_pro'}
  (zero, zero_metrics), (half, metrics) = _tiny_runs(
      'offload', settings, values=({'fraction': 0.0}, {'fraction': 0.5}))
  assert_trees_equal(fedavg.shared, zero.shared)
  assert float(zero_metrics[-1]['algorithm/offload_bits']) == 0.0
  assert not np.allclose(half.shared['body']['w'], fedavg.shared['body']['w'])
  # Every client of the tiny cohort trains; device 0 ('glasses') sends round(n / 2).
  source = tiny.make_source(12, 3)
  sent = np.round(0.5 * source['num_examples'][:8]) * (source['device'][:8] == 0)
  m = metrics[0]
  assert float(m['algorithm/offload_examples']) == sent.sum()
  assert float(m['algorithm/offload_bits']) == 32 * tiny.FEATURES * sent.sum()
  assert float(m['algorithm/helper_steps']) == 3 * np.sum(sent > 0)
  np.testing.assert_allclose(float(m['algorithm/offload_s']),
                             32 * tiny.FEATURES * sent.sum() / 20e6, rtol=1e-6)


def test_offload_views_and_combination_by_hand():
  data = {'examples': {'x': jnp.arange(5.0)[:, None], 'example_mask': jnp.arange(5) < 4},
          'num_examples': jnp.int32(4), 'step_budget': jnp.int32(2)}
  v = offload_lib.view(data, jnp.array([False, True, False, True, False]), 3)
  np.testing.assert_array_equal(v['examples']['x'][:2, 0], [1.0, 3.0])
  np.testing.assert_array_equal(v['examples']['example_mask'], [1, 1, 0, 0, 0])
  assert int(v['num_examples']) == 2 and int(v['step_budget']) == 3
  a, b = {'w': jnp.float32(1.0)}, {'w': jnp.float32(4.0)}
  assert float(offload_lib.combine(a, b, 1.0, 2.0)['w']) == 3.0
  assert float(offload_lib.combine(a, b, 1.0, 0.0)['w']) == 1.0
  assert float(offload_lib.combine(a, b, 0.0, 2.0)['w']) == 4.0


# -- S2 resource_aware --------------------------------------------------------

def test_resource_aware_exits_by_hand():
  policy = resource_aware.Policy(
      resource_aware.Settings(policy='resource', low_battery=0.2, full_battery=0.6),
      depth=3, flops=jnp.array([1e6, 2e6, 3e6]), budgets=jnp.array([50.0, 11.0]),
      hardware=shift.HardwareKnobs(), profile=None, spec=None)
  battery = jnp.array([0.1, 0.4, 0.9])
  # 1e8 FLOP/s: the exits take 10, 20, 30 ms; only the first fits intent's 11 ms.
  np.testing.assert_array_equal(policy.exits(battery, 1e8, jnp.array([True, False])),
                                [1, 2, 3])
  np.testing.assert_array_equal(policy.exits(battery, 1e8, jnp.array([True, True])),
                                [1, 1, 1])
  data = {'examples': {'path': jnp.array([1, 3]), 'example_mask': jnp.array([True, True])},
          'device_profile': {'train_flops': 1e8, 'compute_power_w': 2.0}}
  costs = policy.costs(data, jnp.array([[True, True], [True, False]]))
  np.testing.assert_allclose(costs['path_latency_ms'], 40.0, rtol=1e-6)
  np.testing.assert_allclose(costs['path_energy_j'], 2.0 * 0.04, rtol=1e-6)
  np.testing.assert_array_equal(costs['path_over'], [0, 0])   # 30 ms > 11 ms is unlabelled
  np.testing.assert_array_equal(costs['path_pairs'], [2, 1])
  assert float(costs['path_blocks']) == 4.0
  # What an evaluation reports from them (summed over clients: here one).
  from fedxr_jax.evaluation import evaluator   # pylint: disable=g-import-not-at-top
  assert evaluator.path_metrics('eval', jax.tree.map(np.asarray, costs)) == pytest.approx({
      'eval/path/violation_rate': 0.0, 'eval/path/latency_ms': 20.0,
      'eval/path/energy_mj': 40.0, 'eval/path/blocks': 2.0})
  both = policy.costs(data, jnp.ones((2, 2), bool))   # now the 30 ms path's intent counts
  assert evaluator.path_metrics('eval', jax.tree.map(np.asarray, both))[
      'eval/path/violation_rate'] == 0.25
  # Training takes every exit in turn; the 'full' control evaluates every block.
  five = {'examples': {'example_mask': jnp.ones((5,), bool)}}
  np.testing.assert_array_equal(policy.paths(five, None, 0, 'train', 0), [1, 2, 3, 1, 2])
  full = resource_aware.Policy(resource_aware.Settings(policy='full'), 3, None, None, None,
                               None, None)
  np.testing.assert_array_equal(full.paths(five, None, 0, 'test', 0), [3] * 5)


def test_early_exit_paths_of_the_m3t_model():
  model = m3t.make(SPEC, **SMALL)
  params = jax.jit(model.init)(jax.random.key(0))
  x, mask = _inputs()

  @jax.jit
  def outputs(params, x, mask):
    return (model.apply(params, x, mask)[0],
            model.apply_path(params, x, mask, jnp.full((3,), 2))[0],
            model.apply_path(params, x, mask, 1)[0],    # block 1 only, the rest not run
            model.apply_path(params, x, mask, jnp.array([1, 2, 1]))[0])

  full, full_path, first, mixed = outputs(params, x, mask)
  assert_trees_equal(full, full_path)
  for t in full:
    np.testing.assert_allclose(mixed[t][np.array([0, 2])], first[t][np.array([0, 2])],
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(mixed[t][1], full[t][1], rtol=1e-6, atol=1e-6)
    assert not np.allclose(first[t], full[t])


def test_apply_features_is_apply_and_features_in_one_pass():
  # TAP's pair modules read every token's features beside the outputs: one pass, the
  # same numbers as the two (with experts, the same routing too).
  for extra in ({}, {'num_experts': 2, 'expert_top_k': 1, 'lora_rank': 0}):
    model = m3t.make(SPEC, **{**SMALL, **extra})
    params = jax.jit(model.init)(jax.random.key(0))
    x, mask = _inputs()
    one = jax.jit(model.apply_features)(params, x, mask)
    two = jax.jit(lambda p: (*model.apply(p, x, mask), model.features(p, x, mask)))(params)
    assert one[2].shape == (3, 1 + model.tokens, SMALL['width'])   # CLS and the rest
    assert_trees_close(one, two, rtol=1e-6, atol=1e-6)


# -- S3 module_library --------------------------------------------------------

def test_module_library_is_the_identity_at_init_and_composes_the_selected_modules():
  plain = m3t.make(SPEC, **SMALL)
  model = m3t.make(SPEC, **SMALL, library_size=3, library_dim=4, library_select=1)
  params = jax.jit(model.init)(jax.random.key(0))
  assert {m3t.role_of(('library', 'down')), m3t.role_of(('selection',))} == {
      'library', 'selection'}
  x, mask = _inputs()
  both = jax.jit(lambda p0, p1: (plain.apply(p0, x, mask)[0], model.apply(p1, x, mask)[0]))
  assert_trees_equal(*both(jax.jit(plain.init)(jax.random.key(0)), params))
  np.testing.assert_array_equal(library_lib.composition(jnp.array([0.0, 2.0, 1.0]), 1),
                                [0.0, 1.0, 0.0])
  np.testing.assert_allclose(library_lib.composition(jnp.array([0.0, 2.0, 1.0]), 2),
                             [0.0, 1 / (1 + np.exp(-1.0)), 1 - 1 / (1 + np.exp(-1.0))],
                             rtol=1e-6)
  # With module 1 selected, the output is module 1's residual alone.
  lib = library_lib.ModuleLibrary(3, 4)
  f = jnp.ones((2, 8))
  lp = jax.jit(lib.init)(jax.random.key(1), f, jnp.ones(3) / 3)['params']
  lp = jax.tree.map(lambda v: v + 0.1, lp)
  one = jax.jit(lib.apply)({'params': lp}, f, jnp.array([0.0, 1.0, 0.0]))
  h = jax.nn.gelu(np.asarray(f) @ lp['down'][1] + lp['b_down'][1])
  np.testing.assert_allclose(one, f + h @ lp['up'][1] + lp['b_up'][1], rtol=1e-5)


# -- S3 signature_prompts -----------------------------------------------------

def test_trace_statistics_of_a_constant_trace_by_hand():
  n = 4
  x = {'audio': jnp.full((n, 16, 16), 2.0), 'motion': jnp.ones((n, 16, 6))}
  examples = {'x': x, 'modality_mask': jnp.array([[True, True]] * 3 + [[True, False]]),
              'example_mask': jnp.arange(n) < 4}
  sig = jax.jit(signature_lib.trace_statistics, static_argnums=1)(
      examples, ('audio', 'motion'))
  eps = signature_lib.EPS
  np.testing.assert_allclose(sig, [np.log(2 + eps), np.log(eps), 0.0, 1.0,
                                   np.log(1 + eps), np.log(eps), 0.0, 0.75],
                             rtol=1e-6, atol=1e-6)


def test_every_example_of_either_split_carries_the_signature_of_the_users_train_trace():
  spec = type('Spec', (), {'devices': ('glasses',)})()

  def client_data_fn(source, c, split, r):   # train: 4 examples of value c; test: 2 of -1
    n, value = (4, c + r) if split == 'train' else (2, -1.0)
    return {'device': 0, 'examples': {'x': jnp.full((n, 3), float(value)),
                                      'example_mask': jnp.ones((n,), bool)}}

  trace_mean = lambda ex: jnp.mean(ex['x'], axis=0)[:1]   # a signature of width 1
  fetch = xr_problem.data_fn(spec, (), client_data_fn, trace_mean)
  for split, n in (('train', 4), ('test', 2)):
    sig = fetch(None, 5, split, 2)['examples']['signature']
    np.testing.assert_array_equal(sig, np.full((n, 1), 7.0))
  assert 'signature' not in xr_problem.data_fn(spec, (), client_data_fn)(
      None, 5, 'test', 2)['examples']


def test_signature_prompts_with_a_constant_trace_equal_a_fixed_prompt():
  """A constant signature makes the signature layer one fixed prompt: the model is the
  plain M3T with those tokens as its (first) prompts, and no parameter of its own."""
  model = m3t.make(SPEC, **SMALL, signature_tokens=2)
  fixed = m3t.make(SPEC, **{**SMALL, 'num_prompts': 4})
  params = jax.jit(model.init)(jax.random.key(0))
  x, mask = _inputs()
  sig = jnp.broadcast_to(jnp.linspace(-1.0, 1.0, signature_lib.width(2)), (3, 8))

  @jax.jit
  def outputs(params, sig):
    tokens = signature_lib.SignaturePrompts(2, 8).apply(
        {'params': params['signature']}, sig[0])
    fixed_params = {k: v for k, v in params.items() if k != 'signature'}
    fixed_params['prompts'] = jnp.concatenate([tokens, params['prompts']])
    return (model.apply(params, {**x, 'signature': sig}, mask)[0],
            fixed.apply(fixed_params, x, mask)[0],
            model.apply(params, {**x, 'signature': -sig}, mask)[0])

  out, with_fixed_prompts, other = outputs(params, sig)
  assert_trees_close(out, with_fixed_prompts, rtol=1e-5, atol=1e-6)
  assert not np.allclose(other['gesture'], out['gesture'])


# -- refusals -------------------------------------------------------------------

def test_each_method_refuses_what_it_does_not_support_in_one_line():
  facts = RunFacts(local_steps=2, modalities=('vision', 'audio', 'gaze'),
                   devices=('ray_ban_meta', 'apple_vision_pro'),
                   task_kinds=('classification',))
  with pytest.raises(ConfigError, match='subset of the data'):
    crossmodal_lib.crossmodal_distill(facts, student_modalities=('depth',))
  with pytest.raises(ConfigError, match='student would be the teacher'):
    crossmodal_lib.crossmodal_distill(facts, student_modalities=('vision', 'audio', 'gaze'))
  with pytest.raises(ConfigError, match='not devices of this run'):
    offload_lib.offload(facts, devices=('xreal_air',))
  with pytest.raises(ConfigError, match='privacy.mode=example'):
    offload_lib.offload(RunFacts(local_steps=2, devices=facts.devices, example_dp=True),
                        devices=('ray_ban_meta',))
  with pytest.raises(ConfigError, match='library_select'):
    m3t.make(SPEC, **SMALL, library_size=2, library_select=3)
  flat = Spec({**MODALITIES, 'pulse': ((8,), (8,))}, SPEC.tasks)
  with pytest.raises(ConfigError, match=r"signature_tokens with modalities \['pulse'\]"):
    m3t.make(flat, **SMALL, signature_tokens=2)
  run = pipeline.RunContext(facts, 1, None, mlp.make(
      SPEC, lora_residual=False, dtype='float32'), None, None)
  with pytest.raises(ConfigError, match='no early exits'):
    resource_aware.contribute({'policy': 'resource'}, run)
  with pytest.raises(ConfigError, match='is not one of'):
    resource_aware.contribute({'policy': 'fastest'}, run)


# -- through the run's config (fedxr-train) -------------------------------------

@pytest.mark.slow   # XR builds; the tiny and model-level tests above pin each method
@pytest.mark.parametrize('changes', [
    {'algorithm.name': 'crossmodal_distill'},
    {'algorithm.name': 'offload'},
    {'resource_aware.policy': 'resource'},
    {'model.m3t.library_size': 3},
    {'model.m3t.signature_tokens': 2},
])
def test_each_method_runs_through_the_config(config, changes):
  for key, value in changes.items():
    *parents, leaf = key.split('.')
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  exp = experiment.build(config)
  server, clients, metrics = run_rounds(exp, 2)
  assert np.isfinite(float(metrics[-1]['train/loss']))
  ids = jnp.arange(config.population_size)
  stats = jax.jit(exp.federation.evaluate, static_argnames=('split', 'per_client'))(
      server, clients, jax.jit(exp.federation.init)(exp.world, exp.key)[2], exp.world,
      ids, 'test', per_client=True)
  if 'model.m3t.library_size' in changes:   # the composition stays on each device
    assert 'selection' in exp.federation.plan and exp.federation.plan['selection'] == 'personal'
    chosen, = jax.tree.leaves(clients.personal['selection'])   # [population, K] logits
    chosen = np.asarray(chosen)
    trained = chosen[np.abs(chosen).sum(-1) > 0]   # users that trained have their own
    assert len(trained) >= 2 and not np.allclose(trained[0], trained[1])
  if 'resource_aware.policy' in changes:
    blocks = np.asarray(stats['path_blocks']) / np.asarray(stats['path_examples'])
    assert np.all((blocks >= 1) & (blocks <= config.model.m3t.depth))
