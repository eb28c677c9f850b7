"""Local tuning strategies and LoRA aggregation rules on the XR federation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedxr_jax import algorithms
from fedxr_jax.core.algorithm import ClientContext, RunFacts
from fedxr_jax.algorithms import lora_rules
from fedxr_jax.models import lora as lora_math
from fedxr_jax.core import transforms
from fedxr_jax.core import rng
from fedxr_jax.core import trees
from fedxr_jax.errors import ConfigError
from fedxr_jax.compose import experiment
from fedxr_jax.transforms.hetlora import hetlora
from helpers import assert_trees_equal, run_rounds


def _full_cohort(config):
  config.population_size = config.cohort_size = 8
  return config


def _client_weights(exp, ids):
  """Valid training examples of each client: its LoRA aggregation weight."""
  data = jax.vmap(lambda c: exp.problem.client_data(exp.world, c, 'train', 0))(
      jnp.asarray(ids))
  avail = np.asarray(data.get('available', np.ones(len(ids), bool)))
  return np.asarray(data['num_examples'], np.float64) * avail


# The one exact-LoRA test (a large compile): run -m slow before changing algorithms/lora_rules.py.
@pytest.mark.slow
def test_exact_lora_equals_the_average_of_products_and_differs_from_fedit(config):
  config = _full_cohort(config)
  scale = config.model.m3t.lora_alpha / config.model.m3t.lora_rank
  # Per-client factors: the same first round with LoRA kept personal.
  config.plan.lora = 'personal'
  exp = experiment.build(config)
  _, personal, _ = run_rounds(exp, 1)
  weights = _client_weights(exp, np.arange(8))
  p = weights / weights.sum()
  per_client = [lora_math.products(jax.tree.map(lambda x: x[i], personal.personal['lora_a']),
                          jax.tree.map(lambda x: x[i], personal.personal['lora_b']), scale)
                for i in range(8)]
  expected = {k: sum(p[i] * np.asarray(per_client[i][k]) for i in range(8))
              for k in per_client[0]}

  config.plan.lora = 'shared'
  fedit = None
  for rule in ('exact', 'flora'):
    config.lora.rule = rule
    server, _, _ = run_rounds(experiment.build(config), 1)
    averaged = lora_math.products(server.shared['lora_a'], server.shared['lora_b'], scale)
    residual = lora_math.layers(server.shared['lora_residual'])
    for k in expected:
      effective = np.asarray(averaged[k]) + np.asarray(residual[k])
      np.testing.assert_allclose(effective, expected[k], rtol=1e-4, atol=1e-7)
    if rule == 'exact':
      fedit = averaged   # FedEx keeps FedIT's factors
    else:                # FLoRA restarts the adapter: all of it is in the base
      for b in jax.tree.leaves(server.shared['lora_b']):
        np.testing.assert_array_equal(b, 0.0)
  for k in expected:
    gap = np.abs(np.asarray(fedit[k]) - expected[k]).max()
    assert gap > 1e-3 * np.abs(expected[k]).max() > 0   # FedIT's product is inexact


# Experiment-level; the default plan's shared LoRA (fedit) runs in most default tests.
@pytest.mark.slow
def test_ffa_lora_never_changes_a(config):
  config.lora.rule = 'ffa'
  exp = experiment.build(config)
  fed = exp.federation
  server, clients, frozen = jax.jit(fed.init)(exp.world, exp.key)
  init = exp.problem.init_params(rng.stream(jax.random.key(config.seed),
                                                       rng.INIT_STREAM))
  assert 'lora_a' not in server.shared and fed.plan['lora_a'] == 'frozen'
  assert_trees_equal(frozen['lora_a'], init['lora_a'])
  server, _, _ = run_rounds(exp, 2)
  assert np.abs(np.asarray(jax.tree.leaves(server.shared['lora_b'])[0])).max() > 0


# Experiment-level; test_personal_trees_are_never_communicated covers personal trees.
@pytest.mark.slow
def test_fedsa_lora_shares_a_and_keeps_b_personal(config):
  config.lora.rule = 'fedsa'
  exp = experiment.build(config)
  server, clients, _ = run_rounds(exp, 1)
  assert 'lora_b' not in server.shared and 'lora_a' in server.shared
  b = np.asarray(jax.tree.leaves(clients.personal['lora_b'])[0])
  cohort = np.asarray(rng.sample_cohort(jax.random.key(config.seed), 0,
                                        config.population_size, config.cohort_size))
  trained = b[cohort]
  assert not np.allclose(trained[0], trained[1])          # each client its own B
  others = np.setdiff1d(np.arange(config.population_size), cohort)
  np.testing.assert_array_equal(b[others], 0.0)            # untouched: still B = 0


def test_rule_needs_shared_lora_and_exact_needs_a_server(config):
  config.lora.rule = 'fedsa'
  config.plan.lora = 'personal'
  with pytest.raises(ConfigError, match='needs plan.lora=shared'):
    experiment.build(config)
  config.plan.lora = 'shared'
  config.lora.rule = 'exact'
  config.topology.kind = 'semi'
  with pytest.raises(ConfigError, match='not supported yet: lora.rule=exact'):
    experiment.build(config)
  config.topology.kind = 'centralized'
  config.lora.rule = 'exact'
  config.lora.device_ranks = (1,) * len(config.data.devices)
  with pytest.raises(ConfigError, match='heterogeneous'):
    experiment.build(config)
  config.lora.rule = 'fedit'
  config.data.source = 'digits'   # refused before any data is read
  with pytest.raises(ConfigError, match='real datasets have one device class'):
    experiment.build(config)


@pytest.mark.slow   # experiment-level LoRA ranks
def test_heterogeneous_ranks_train_only_each_clients_first_ranks(config):
  assert config.model.m3t.lora_rank == 2
  config.lora.device_ranks = (1,) * len(config.data.devices)
  exp = experiment.build(config)
  _, _, frozen = jax.jit(exp.federation.init)(exp.world, exp.key)
  init = exp.problem.init_params(rng.stream(jax.random.key(config.seed),
                                                       rng.INIT_STREAM))
  server, _, _ = run_rounds(exp, 2)
  for role in ('lora_a', 'lora_b'):
    for new, old in zip(jax.tree.leaves(server.shared[role]), jax.tree.leaves(init[role])):
      np.testing.assert_array_equal(new[1], old[1])   # nobody holds rank slice 1
  assert np.abs(np.asarray(jax.tree.leaves(server.shared['lora_b'])[0][0])).max() > 0
  # Mixed ranks: each rank slice is weighted by the clients that hold it.
  config.lora.device_ranks = (1, 2) + (2,) * (len(config.data.devices) - 2)
  exp = experiment.build(config)
  data = exp.problem.client_data(exp.world, jnp.int32(0), 'train', 0)
  w = exp.problem.module_weights(data, None)['lora_a']
  n = float(jnp.sum(data['examples']['example_mask']))
  rank = int(config.lora.device_ranks[int(data['device'])])
  np.testing.assert_array_equal(w, n * (np.arange(2) < rank))


def test_hetlora_weights_scale_by_the_product_norm():
  a = {'l': {'lora_A': jnp.array([[1.0, 0.0], [0.0, 1.0]])}}
  b = {'l': {'lora_B': jnp.array([[3.0], [4.0]])}}
  trained = {'lora_a': a, 'lora_b': b}
  update = jax.tree.map(jnp.ones_like, trained)
  info = transforms.ClientInfo(client_id=0, start=trained, trained=trained,
                               data={'lora_rank': 1})
  out, _, w, stats = hetlora(scale=2.0).update(
      update, (), jax.random.key(0), {'lora_a': jnp.float32(5.0), 'lora_b': jnp.float32(5.0)},
      info)
  # Rank 1: only A[0] and B[0] count: ||2 * [1, 0]^T [3]||_F = 6.
  np.testing.assert_allclose(w['lora_a'], 30.0)
  np.testing.assert_allclose(w['lora_b'], 30.0)
  assert out is update and not stats   # only the weights change


def test_personal_trees_are_never_communicated(config):
  # Only prompts are shared; heads are personal; everything else frozen.
  for role in ('base', 'encoders', 'lora'):
    config.plan[role] = 'frozen'
  config.plan.heads = 'personal'
  config.plan.prompts = 'shared'
  exp = experiment.build(config)
  server, _, metrics = run_rounds(exp, 1)
  assert set(server.shared) == {'prompts'}
  assert float(metrics[0]['train/participation']) == 1.0
  # Every client uploads its float32 prompts [num_prompts, width], nothing else.
  width, prompts = config.model.m3t.width, config.model.m3t.num_prompts
  np.testing.assert_allclose(metrics[0]['comm/uplink_bits'],
                             config.cohort_size * 8 * 4 * width * prompts)


@pytest.mark.slow   # experiment-level; tests/test_model.py checks top-k routing by default
def test_moe_routed_tokens_sum_to_top_k_times_tokens(config):
  config.model.m3t.num_experts = 4
  config.model.m3t.expert_top_k = 2
  exp = experiment.build(config)
  problem = exp.problem
  server, clients, frozen = jax.jit(exp.federation.init)(exp.world, exp.key)
  data = problem.client_data(exp.world, jnp.int32(3), 'test', 0)
  params = {**frozen, **server.shared,
            **jax.tree.map(lambda x: x[3], clients.personal)}
  stats = problem.eval_stats(params, data)
  ex = data['examples']
  mods = exp.spec.model_modalities()
  per_mod = np.array([np.prod([s // t for s, t in zip(shape, tok)])
                      for shape, tok in mods.values()])
  present = np.asarray(ex['modality_mask'])
  tokens = 1 + config.model.m3t.num_prompts + (present * per_mod + ~present).sum(-1)
  labelled = np.asarray(ex['example_mask'])[:, None] & np.asarray(data['task_mask'])[None]
  for t in range(len(exp.spec.tasks)):
    expected = 2 * float(np.sum(tokens * labelled[:, t]))
    np.testing.assert_allclose(np.asarray(stats['expert_tokens'][t]).sum(-1), expected,
                               rtol=1e-6)


def test_experts_are_averaged_by_routed_tokens():
  stacked = jnp.array([[[1.0], [10.0]], [[4.0], [20.0]]])     # [C=2, E=2, 1]
  routed = jnp.array([[2.0, 0.0], [1.0, 0.0]])                 # expert 1: no tokens
  out = trees.masked_weighted_mean(stacked, routed, jnp.array([[7.0], [7.0]]))
  np.testing.assert_allclose(out, [[(2 * 1 + 4) / 3], [7.0]])


@pytest.mark.slow   # experiment-level local_ft; run -m slow before changing algorithms/local_ft.py
def test_local_finetuning_changes_evaluation_only(config):
  exp = experiment.build(config)
  plain, plain_clients, _ = run_rounds(exp, 1)
  config.algorithm.name = 'local_ft'
  config.algorithm.local_ft.steps = 2
  ft_exp = experiment.build(config)
  ft, ft_clients, _ = run_rounds(ft_exp, 1)
  assert_trees_equal(plain.shared, ft.shared)
  _, _, frozen = jax.jit(exp.federation.init)(exp.world, exp.key)
  ids = jnp.arange(8)
  train_loss = lambda e, s, c: np.asarray(jax.jit(
      e.federation.evaluate, static_argnums=(5,))(s, c, frozen, e.world, ids,
                                                  'train')['loss_sum']).sum()
  # Fine-tuning on a client's own training data lowers its training loss.
  assert train_loss(ft_exp, ft, ft_clients) < train_loss(exp, plain, plain_clients)


def test_tap_swaps_heads_where_the_global_model_wins():
  facts = RunFacts(local_steps=4, plan={'heads': 'shared'}, tasks=('t0', 't1'))
  tap = algorithms.make('tap', dict(margin=0.1, distill_lambda=1.0, finetune_steps=2), facts)
  glob = {'heads': {'heads': {'t0': jnp.float32(1.0), 't1': jnp.float32(1.0)}},
          'lora_b': jnp.float32(1.0)}
  pers = jax.tree.map(lambda x: x * 0.0, glob)
  # Global losses [0.5, 2.0] vs personal [1.0, 1.0]: t0 goes global; the body
  # stays personal (mean 1.25 + 0.1 > 1.0).
  losses = lambda p: jnp.where(p['lora_b'] > 0.5, jnp.array([0.5, 2.0]),
                               jnp.array([1.0, 1.0]))
  data = {'task_mask': jnp.array([True, True]), 'num_examples': jnp.int32(5)}
  ctx = ClientContext(
      start=glob, trained=glob, data=data,
      train=lambda p, **kw: (p, {'steps': jnp.int32(4)}), task_losses=losses,
      example_grads=None, predict=None, loss=None)
  (new, cost) = tap.personalize(ctx, {'personal': pers}, {})
  new = new['personal']
  # Its own model's 4 steps and two forward passes over the 5 examples.
  assert int(cost.train_steps) == 4 and int(cost.forward_examples) == 10
  assert float(new['heads']['heads']['t0']) == 1.0
  assert float(new['heads']['heads']['t1']) == 0.0
  assert float(new['lora_b']) == 0.0
  # A task the client does not hold is never swapped.
  ctx = ctx._replace(data={**data, 'task_mask': jnp.array([False, True])})
  new = tap.personalize(ctx, {'personal': pers}, {})[0]['personal']
  assert float(new['heads']['heads']['t0']) == 0.0
  # compare_examples: the models are compared on the first 3 examples (2 x 3 forward
  # examples); 8 > the client's 5 compares all of them.
  firsts = []
  ctx = ctx._replace(data=data, task_losses=lambda p, first=None: (firsts.append(first),
                                                                    losses(p))[1])
  for n, forwards in ((3, 6), (8, 10)):
    small = algorithms.make('tap', dict(margin=0.1, compare_examples=n), facts)
    (kept, cost) = small.personalize(ctx, {'personal': pers}, {})
    assert int(cost.forward_examples) == forwards and firsts[-2:] == [n, n]
    assert float(kept['personal']['heads']['heads']['t0']) == 1.0
  with pytest.raises(ConfigError, match='compare_examples must be >= 0'):
    algorithms.make('tap', dict(compare_examples=-1), facts)


STRATEGIES = {
    'personal_prompts': dict(plan=dict(prompts='personal')),
    'shared_and_personal_prompts': dict(model=dict(m3t=dict(num_user_prompts=2)),
                                        plan=dict(user_prompts='personal')),
    'adapters': dict(model=dict(m3t=dict(adapter_dim=4, lora_rank=0)),
                     plan=dict(adapters='shared')),
    'moe': dict(model=dict(m3t=dict(num_experts=3, expert_top_k=1, lora_rank=0)),
                plan=dict(experts='shared')),
    'full_tuning': dict(plan=dict(base='shared')),
    'ditto': dict(algorithm=dict(name='ditto')),
    'tap': dict(algorithm=dict(name='tap', tap=dict(finetune_steps=1))),
}


@pytest.mark.slow
@pytest.mark.parametrize('strategy', list(STRATEGIES))   # one failure hides no other
def test_every_strategy_runs_a_round(config, strategy):
  c = config.copy_and_resolve_references()
  for block, values in STRATEGIES[strategy].items():
    c[block].update(values)   # nested blocks: ConfigDict.update merges them
  _, _, metrics = run_rounds(experiment.build(c), 1)
  assert np.isfinite(float(metrics[0]['train/loss']))


@pytest.mark.slow
def test_algorithms_run_on_the_topologies_they_support(config):
  combos = [('ditto', 'hierarchical', {}), ('tap', 'semi', {}),
            ('fedrep', 'tree', {'heads': 'personal'}), ('local_ft', 'decentralized', {}),
            ('fedprox', 'semi', {})]
  for name, kind, plan in combos:
    c = config.copy_and_resolve_references()
    c.algorithm.name, c.topology.kind = name, kind
    c.algorithm.local_ft.steps = c.algorithm.tap.finetune_steps = 1
    c.algorithm.fedrep.head_steps = 1
    c.topology.semi.fallback = 'ring'
    c.plan.update(plan)
    if kind == 'decentralized':
      c.population_size = c.cohort_size
    _, _, metrics = run_rounds(experiment.build(c), 2)
    assert np.isfinite(float(metrics[-1]['train/loss'])), (name, kind)


def test_per_slice_weights_through_semi_representatives():
  # Two clusters of sizes 1 and 3, one representative each; per-slice weights
  # [C, E=2]; gamma = 1 on an edgeless graph leaves each client as it is.
  from fedxr_jax.core.aggregation import ClientUpdate
  from fedxr_jax.core.topology import Uploads
  from fedxr_jax.topology import layout, semi
  facts = RunFacts(cohort_size=2, population_size=2)
  geography = type('G', (), {'area_m': 100.0})
  topology = semi.make(facts=facts, geography=geography, channel=None,
                       d2d=layout.D2D(graph='ring'), gamma=1, num_clusters=2)
  models = {'m': {'w': jnp.array([[10.0], [20.0]])[None].repeat(2, 0)
                  * jnp.array([1.0, 2.0])[:, None, None]}}   # client 0: 10, 20; 1: 20, 40
  weights = {'m': jnp.array([[1.0, 1.0], [1.0, 0.0]])}
  topo = {'senders': jnp.zeros((1,), jnp.int32), 'receivers': jnp.zeros((1,), jnp.int32),
          'edge_mask': jnp.zeros((1,), bool), 'representatives': jnp.array([0, 1]),
          'cluster_live': jnp.array([1.0, 1.0]), 'cluster_size': jnp.array([1, 3])}
  uploads = Uploads(stacked=ClientUpdate(models, models, weights, jnp.arange(2)),
                    upload_bits=jnp.ones(2), download_bits=jnp.ones(2))
  agg = topology.aggregate({'m': {'w': jnp.zeros((2, 1))}}, {}, uploads, topo, 0, None, {},
                           None)
  # Slice 0: (1 * 10 + 3 * 20) / 4; slice 1: only client 0 holds it -> 20.
  np.testing.assert_allclose(agg.target['m']['w'][:, 0], [(10 + 60) / 4, 20.0], rtol=1e-6)
