"""The evaluation protocol: the fixed panel, held-out contexts, per-client metrics, files."""
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedxr_jax.configs import test as test_config
from fedxr_jax.core import evaluate as evaluate_lib
from fedxr_jax.data import catalog
from fedxr_jax.data import synthetic
from fedxr_jax.errors import ConfigError
from fedxr_jax.metrics import clients as clients_lib
from fedxr_jax.metrics import registry
from fedxr_jax.metrics import storage
from fedxr_jax.metrics import tensorboard
from fedxr_jax.privacy import membership
from fedxr_jax.evaluation import client_metrics
from fedxr_jax.evaluation import device_facts
from fedxr_jax.evaluation import protocol as eval_protocol
from fedxr_jax.evaluation import evaluator as evaluator_lib
from fedxr_jax.compose import experiment
from fedxr_jax.training import report

HELD_DEVICE, HELD_ENV = 'hololens_2', 'office'


def _config(**eval_settings):
  config = test_config.evaluated()
  config.eval.holdout_devices = (HELD_DEVICE,)
  config.eval.holdout_environments = (HELD_ENV,)
  config.eval.holdout_clients = 4
  for k, v in eval_settings.items():
    config.eval[k] = v
  return config


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  """Four rounds of the test config with held-out contexts, evaluated at rounds 2 and 4."""
  exp = experiment.build(_config())
  workdir = str(tmp_path_factory.mktemp('protocol'))
  evaluator = evaluator_lib.Evaluator(exp, workdir)
  server, clients, frozen = jax.jit(exp.federation.init)(exp.world, exp.key)
  round_fn = jax.jit(exp.federation.round)
  rows = []
  for r in range(4):
    plan, _ = exp.plan(r)
    server, clients, metrics = round_fn(server, clients, frozen, exp.world, plan)
    row = {'round': r + 1, **{k: float(v) for k, v in jax.device_get(metrics).items()}}
    if (r + 1) % 2 == 0:
      row.update(evaluator(server, clients, frozen, plan.cohort, rows))
    evaluator.log_row(row)
    rows.append(row)
  evaluator.close()
  return exp, evaluator, rows, workdir, (server, clients, frozen)


@pytest.mark.slow   # many evaluations; test_an_evaluated_run_carries_every_table6_metric is default
def test_the_panel_is_the_same_clients_at_every_evaluation(run):
  exp, evaluator, _, workdir, _ = run
  table = clients_lib.read(os.path.join(workdir, clients_lib.FILE))
  panel = {r: sorted(x['client'] for x in table if x['round'] == r and x['group'] == 'panel')
           for r in (2, 4)}
  expected = eval_protocol.panel_ids(exp.config.seed, exp.config.population_size, 8)
  assert panel[2] == panel[4] == expected.tolist()
  assert len(set(panel[2])) == 8 and max(panel[2]) < exp.config.population_size
  # The cohorts of those rounds differ: the panel is not a cohort.
  assert set(exp.plan(1)[0].cohort) != set(exp.plan(3)[0].cohort)
  assert eval_protocol.panel_ids(1, 24, 8).tolist() != expected.tolist()


def _contexts(exp, ids):
  """(device, environment) index of each id (its data's 'device' and 'environment')."""
  fn = jax.jit(jax.vmap(lambda c: synthetic.client_profile(exp.world, c, exp.spec)))
  profile = fn(jnp.asarray(ids, jnp.int32))
  return np.asarray(profile['device']), np.asarray(profile['environment'])


# test_an_evaluated_run_carries_every_table6_metric evaluates the held-out groups by default.
@pytest.mark.slow
def test_a_held_out_device_and_environment_are_never_sampled_for_training(run):
  exp = run[0]
  spec = exp.spec
  dev, env = spec.devices.index(HELD_DEVICE), spec.environment_names.index(HELD_ENV)
  sampled = np.unique(np.concatenate([exp.sample_cohort(r) for r in range(300)]))
  assert sampled.size == exp.config.population_size   # 300 rounds reach every client
  first = spec.holdout_first_id
  assert first == exp.config.population_size + exp.config.eval_unseen_clients
  others = np.arange(first + 2 * spec.holdout_clients, first + 2 * spec.holdout_clients + 600)
  d, e = _contexts(exp, np.concatenate([np.arange(first), others]))
  assert not np.any(d == dev) and not np.any(e == env)
  assert len(set(d)) == len(spec.devices) - 1   # every other device still trains
  d_env, e_env = _contexts(exp, synthetic.holdout_ids(spec, 'holdout_environments'))
  assert np.all(e_env == env) and not np.any(d_env == dev)
  d_dev, e_dev = _contexts(exp, synthetic.holdout_ids(spec, 'holdout_devices'))
  assert np.all(d_dev == dev) and not np.any(e_dev == env)


def test_no_holdouts_leave_the_spec_and_world_as_they_were():
  config = test_config.get_config()
  spec = synthetic.spec_from_config(config.data, config.local_steps)
  assert synthetic.with_holdouts(spec, config.eval, 32) is spec
  assert 'holdout_probs' not in synthetic.make_world(jax.random.key(0), spec)


@pytest.mark.parametrize('settings, message', [
    (dict(holdout_devices=('magic_leap_2',)), r"eval.holdout_devices: \['magic_leap_2'\] not"),
    (dict(holdout_environments=tuple(catalog.ENVIRONMENTS), holdout_devices=()),
     'leave no .* for training'),
    # Vision Pro and Quest 3 are deployed only at home and in offices.
    (dict(holdout_devices=('apple_vision_pro', 'meta_quest_3'),
          holdout_environments=('home', 'office')), 'for holdout devices'),
    (dict(holdout_clients=0), 'eval.holdout_clients must be >= 1'),
    (dict(panel_size=-1), 'eval.panel_size must be >= 0'),
    (dict(latency_precision='int4'), 'eval.latency_precision'),
    (dict(latency_classes=('digits:fast',)), "'task:class'"),
])
def test_bad_protocol_settings_are_one_line_config_errors(settings, message):
  with pytest.raises(ConfigError, match=message):
    config = _config(**settings)
    experiment.build(config)
    eval_protocol.from_config(config)


def test_holdouts_need_the_synthetic_source():
  with pytest.raises(ConfigError, match="data.source='digits'"):
    synthetic.refuse_holdouts(_config().eval, 'digits')
  synthetic.refuse_holdouts(test_config.get_config().eval, 'digits')   # none: fine


def test_an_evaluated_run_carries_every_table6_metric(run):
  rows = run[2]
  last = rows[-1]
  for metric in registry.metrics():
    logged = [k for k, v in last.items() if v is not None and registry.lookup(k)
              and registry.lookup(k)[0] is metric]
    assert logged, metric.name
  for group in ('unseen_users', 'holdout_environments', 'holdout_devices'):
    assert last[f'generalization/{group}/gap'] is not None
  assert 0.0 <= last['privacy/mia_auc'] <= 1.0
  assert 'eval/accuracy' not in rows[0] and 'panel/accuracy' in rows[1]


def test_without_personalization_the_global_model_is_the_evaluated_one(run):
  last = run[2][-1]
  assert last['personalization/effectiveness'] == 0.0   # FedAvg, no personal trees
  for t in run[0].spec.tasks:
    assert last[f'personalization/{t}/effectiveness'] == 0.0


@pytest.mark.slow   # experiment-level personal heads
def test_the_global_model_of_personal_heads_is_the_initial_heads():
  config = test_config.get_config()
  config.plan.heads = 'personal'
  exp = experiment.build(config)
  server, clients, frozen = jax.jit(exp.federation.init)(exp.world, exp.key)
  ev = jax.jit(exp.federation.evaluate, static_argnames=(
      'split', 'per_client', 'compare_global'))
  ids = jnp.arange(8)
  fresh = ev(server, clients, frozen, exp.world, ids, 'test', per_client=True,
             compare_global=True)
  trained = dataclasses.replace(clients,
                                personal=jax.tree.map(lambda x: x + 0.5, clients.personal))
  per = ev(server, trained, frozen, exp.world, ids, 'test', per_client=True,
           compare_global=True)
  for k in ('correct', 'count', 'loss_sum'):   # global: the initial heads, as new users get
    np.testing.assert_array_equal(per['global'][k], fresh['global'][k])   # trained ones ignored
  for k in ('correct', 'count'):
    np.testing.assert_array_equal(fresh['global'][k], fresh[k])
  # The same sums on two paths of one program: bit-equal at XLA's -O2, 1.7e-7 apart at the
  # tests' -O0 (conftest.py), which fuses the paths differently.
  np.testing.assert_allclose(fresh['global']['loss_sum'], fresh['loss_sum'], rtol=1e-6)
  assert not np.array_equal(per['loss_sum'], per['global']['loss_sum'])


def test_per_example_losses_are_membership_example_losses(run):
  exp, _, _, _, (server, _, frozen) = run
  params = {**frozen, **server.shared}
  data = _random_data(exp, np.random.default_rng(0), [True, False, True])
  ours = jax.jit(lambda p, d: evaluate_lib.per_example_losses(exp.problem, p, d))
  theirs = jax.jit(lambda p, d: membership.example_losses(exp.problem, p, d))
  np.testing.assert_array_equal(ours(params, data), theirs(params, data))


def _random_data(exp, rng, task_mask):
  """Hand-made test data of the experiment's shapes (no generator to compile)."""
  ex = jax.eval_shape(lambda: exp.problem.client_data(exp.world, jnp.int32(0), 'test',
                                                      0))['examples']
  n = ex['y'].shape[0]
  return {'examples': {'x': {m: rng.normal(size=v.shape).astype(np.float32)
                             for m, v in ex['x'].items()},
                       'y': rng.integers(0, 4, ex['y'].shape).astype(np.int32),
                       'modality_mask': rng.random(ex['modality_mask'].shape) < 0.8,
                       'example_mask': np.arange(n) < n - 2},
          'num_examples': np.int32(n - 2), 'task_mask': np.asarray(task_mask)}


def test_accuracy_before_a_task_arrives(run):
  exp, _, _, _, (server, _, frozen) = run
  params = {**frozen, **server.shared}
  data = _random_data(exp, np.random.default_rng(1), [True, False, True])
  data['eventual_task_mask'] = np.array([True, True, False])   # intent arrives later
  stats = jax.jit(exp.problem.eval_stats)(params, data)
  logits = jax.jit(exp.problem.predict)(params, data['examples'], {})
  valid = data['examples']['example_mask']
  hits = np.asarray(jnp.argmax(logits['intent'], -1)) == data['examples']['y'][:, 1]
  np.testing.assert_array_equal(stats['count_before_arrival'], [0, valid.sum(), 0])
  np.testing.assert_array_equal(stats['correct_before_arrival'], [0, (hits & valid).sum(), 0])
  out = client_metrics.before_arrival_metrics(
      {'correct_before_arrival': np.array([0., 3., 0.]),
       'count_before_arrival': np.array([0., 12., 0.])}, exp.spec.tasks)
  assert out == {'generalization/before_arrival/intent/accuracy': 0.25}
  # The generator says which tasks are still to come only when some arrive late.
  config = test_config.get_config()
  config.data.functional.arrival_rounds = (0, 5, 0)
  spec = synthetic.spec_from_config(config.data, config.local_steps)
  later = jax.eval_shape(lambda: synthetic.client_data(exp.world, 0, 'test', spec, 1))
  assert 'eventual_task_mask' in later and 'eventual_task_mask' not in jax.eval_shape(
      lambda: exp.problem.client_data(exp.world, jnp.int32(0), 'test', 0))


def test_membership_auc_of_constructed_losses():
  per = {'train_losses': np.array([[0.1, 0.2, 9.0], [0.3, 0.1, 0.2]]),
         'train_valid': np.array([[True, True, False], [True, True, True]]),
         'test_losses': np.array([[1.0, 2.0], [0.5, 0.0]]),
         'test_valid': np.array([[True, True], [True, False]])}
  # Members: both clients; lower loss = member, so members (<= 0.3) beat 0.5, 1, 2.
  assert client_metrics.membership_metrics(per, [True, True]) == {'privacy/mia_auc': 1.0}
  # Client 1 alone: members 0.3, 0.1, 0.2 vs non-member 0.5.
  assert client_metrics.membership_metrics(per, [False, True]) == {'privacy/mia_auc': 1.0}
  swapped = {'train_losses': per['test_losses'], 'train_valid': per['test_valid'],
             'test_losses': per['train_losses'], 'test_valid': per['train_valid']}
  assert client_metrics.membership_metrics(swapped, [True, True]) == {'privacy/mia_auc': 0.0}
  assert client_metrics.membership_metrics(per, [False, False]) == {}


def test_client_latency_follows_device_and_straggler_slowdown(run):
  facts = run[1].facts
  quest = facts.devices.index(catalog.DEVICES['meta_quest_3'])
  nominal = facts.devices[quest].train_flops
  lat = client_metrics.client_latency_ms(facts, 'fp32', [quest, quest],
                                         [nominal, nominal / 4])
  expected = facts.scale * facts.flops_per_example / nominal * 1e3
  np.testing.assert_allclose(lat, [expected, 4 * expected], rtol=1e-12)


def test_storage_holds_only_sensed_encoders_and_their_heads(run):
  exp, evaluator = run[0], run[1]
  shapes = jax.eval_shape(lambda: exp.problem.init_params(jax.random.key(0)))
  total = sum(storage.leaf_bytes(v, 'float32') for v in storage.leaves(shapes).values())
  lacking = storage.module_bytes(shapes, ['encoders/encoders/motion', 'encoders/encoders/gaze'],
                                 'float32')
  # Ray-Ban Meta: camera and microphone; all three tasks read vision or audio.
  row = run[2][-1]
  assert row['storage/ray_ban_meta/bytes_float32'] == total - lacking
  assert row['storage/apple_vision_pro/bytes_float32'] == total   # every sensor
  assert row['storage/max_bytes_float32'] == total
  assert evaluator.storage['storage/ray_ban_meta/bytes_int8'] < total / 3


def test_param_counts_cover_the_model_once():
  config = test_config.get_config()
  config.model.m3t.num_experts = 4
  exp = experiment.build(config)
  shapes = jax.eval_shape(lambda: exp.problem.init_params(jax.random.key(0)))
  counts = device_facts.param_counts(shapes, exp.spec, config.model.m3t.lora_rank)
  total = sum(int(np.prod(v.shape)) for v in storage.leaves(shapes).values())
  slots = config.model.m3t.depth * config.model.m3t.num_experts
  assert (sum(v for k, v in counts.items() if k.startswith(('encoder/', 'head/')))
          + counts['rest'] + counts['expert'] * slots
          + counts['lora_rank'] * config.model.m3t.lora_rank) == total
  # One expert: w_in, b_in, w_out, b_out of one layer (width 16, mlp_width 16).
  assert counts['expert'] == 16 * 16 * 2 + 16 + 16


def test_client_table_resumes_and_reports_distributions(tmp_path):
  path = str(tmp_path / clients_lib.FILE)
  table = clients_lib.ClientTable(path, 0)
  recs = [{'group': 'panel', 'client': i, 'device': 'quest' if i < 6 else 'glasses',
           'accuracy': a} for i, a in enumerate([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2,
                                                 0.1, 0.0, 1.0])]
  assert table.append(2, recs) and table.append(4, recs[:3])
  assert not table.append(2, recs)   # already there
  table = clients_lib.ClientTable(path, 2)   # resumed at round 2: round 4 is dropped
  rows = clients_lib.read(path)
  assert {r['round'] for r in rows} == {2} and len(rows) == 11
  dist = clients_lib.distribution(rows)
  assert dist['clients/worst10_accuracy'] == pytest.approx(0.05)   # ceil(1.1) = 2 worst
  assert dist['clients/median_accuracy'] == pytest.approx(0.5)
  assert dist['clients/quest/accuracy'] == pytest.approx(0.65)
  assert dist['clients/glasses/accuracy'] == pytest.approx(0.32)


def test_evaluation_files(run):
  _, _, rows, workdir, _ = run
  scalars = tensorboard.read_scalars(os.path.join(workdir, tensorboard.SUBDIR))
  assert [s for s, _ in scalars['train/loss']] == [1, 2, 3, 4]
  assert scalars['panel/accuracy'] == [   # TensorBoard keeps float32
      (r, float(np.float32(rows[r - 1]['panel/accuracy']))) for r in (2, 4)]
  table = clients_lib.read(os.path.join(workdir, clients_lib.FILE))
  groups = {(r['round'], r['group']) for r in table}
  assert groups == {(r, g) for r in (2, 4)
                    for g in ('panel', 'holdout_environments', 'holdout_devices')}
  panel = [r for r in table if r['round'] == 4 and r['group'] == 'panel']
  correct = sum(r[f'{t}/accuracy'] * r[f'{t}/count'] for r in panel for t in ('gesture',)
                if r['gesture/count'])
  count = sum(r['gesture/count'] for r in panel)
  assert correct / count == pytest.approx(rows[3]['panel/gesture/accuracy'])
  assert all(r['device'] == HELD_DEVICE for r in table if r['group'] == 'holdout_devices')
  assert all(r['environment'] == HELD_ENV for r in table
             if r['group'] == 'holdout_environments')


def test_evaluation_is_deterministic(run):
  exp, _, rows, _, state = run
  again = evaluator_lib.Evaluator(exp)(*state, exp.plan(3)[0].cohort, rows[:3])
  assert again == {k: v for k, v in rows[3].items() if k in again}


def test_curves_keep_a_task_in_one_colour_with_its_chance_level(tmp_path):
  rows = [{'round': 5, 'train/loss': 1.0, 'eval/accuracy': 0.5, 'eval/gesture/accuracy': 0.5,
           'eval_unseen/gesture/accuracy': 0.4, 'eval/intent/accuracy': 0.6}]
  fig = report.curves_figure(rows, ('gesture', 'intent'))
  lines = {l.get_label(): l for l in fig.axes[1].lines}
  gesture = {lines[f'gesture ({k})'].get_color() for k in ('participating', 'unseen',
                                                            'chance')}
  assert len(gesture) == 1 and lines['intent (participating)'].get_color() not in gesture
  assert lines['gesture (chance)'].get_ydata()[0] == pytest.approx(1 / 6)
  assert len(lines['gesture (participating)'].get_xdata()) == 1   # a single point shows
  assert lines['gesture (participating)'].get_marker() == 'o'
  assert os.path.isfile(report.plot_curves(rows, ('gesture', 'intent'),
                                           str(tmp_path / 'c.png')))


def test_summary_prints_the_table6_headlines(run, capsys):
  report.print_summary(run[2], run[0].spec.tasks)
  out = capsys.readouterr().out
  assert 'Table 6 metrics' in out and 'privacy/mia_auc' in out
  assert 'Model Storage Footprint' in out
