"""fedxr-pretrain: the public split, orbax save/load, a frozen pretrained base."""
import hashlib
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from fedxr_jax.configs import default as default_config
from fedxr_jax.configs import test as test_config
from fedxr_jax.data import world
from fedxr_jax.errors import CheckpointError, ConfigError
from fedxr_jax.compose import experiment
from fedxr_jax.training import pretrain
from fedxr_jax.compose import pretrained
from fedxr_jax.core import trees
from helpers import assert_trees_equal

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_CONFIG = os.path.join(REPO, 'fedxr_jax', 'configs', 'test.py')
SETTINGS = pretrain.Settings(steps=15, public_clients=4, batch_size=8,
                             users_per_batch=4, learning_rate=1e-2)


@pytest.fixture(scope='module')
def result():
  return pretrain.pretrain(test_config.get_config(), SETTINGS)


@pytest.fixture(scope='module')
def saved(result, tmp_path_factory):
  """A pretrained checkpoint of the test config and its metadata."""
  directory = str(tmp_path_factory.mktemp('pretrain') / 'base')
  meta = pretrain.save(test_config.get_config(), directory, SETTINGS, result)
  return directory, meta


def _config(directory, **model):
  config = test_config.get_config()
  config.model.pretrained = directory
  config.model.update(model)
  return config


def _on_disk(directory, role):
  """A role tree read with plain orbax, independently of pretrained.load."""
  return ocp.StandardCheckpointer().restore(
      os.path.join(directory, pretrained.PARAMS_DIR, role))


def _with_pretrained(config):
  return pretrained.with_pretrained(pretrain.make_setup(config).problem, config)


def test_weights_sha256_covers_every_array_and_nothing_else():
  meta = {'roles': {'base': {'arrays': {'a/kernel': {'sha256': 'x1'}, 'b': {'sha256': 'x2'}}},
                    'heads': {'arrays': {'g': {'sha256': 'x3'}}}},
          'wall_s': 1.0}
  expected = hashlib.sha256('base/a/kernel\0x1\nbase/b\0x2\nheads/g\0x3'.encode()).hexdigest()
  assert pretrained.weights_sha256(meta) == expected
  assert pretrained.weights_sha256({**meta, 'wall_s': 2.0}) == expected   # not the wall time
  moved = {'roles': {'base': {'arrays': {'a/kernel': {'sha256': 'x1'}}},
                     'heads': {'arrays': {'b': {'sha256': 'x2'}, 'g': {'sha256': 'x3'}}}}}
  assert pretrained.weights_sha256(moved) != expected   # an array under another role


# test_pretraining_lowers_the_loss_on_a_fixed_batch and test_a_different_model_is_refused are
# default.
@pytest.mark.slow
def test_metadata_records_the_run(saved):
  _, meta = saved
  assert sorted(meta['roles']) == ['base', 'encoders', 'heads']   # no PEFT trees
  assert meta['steps'] == 15 and meta['model']['m3t']['width'] == 16
  assert np.isfinite(meta['final_loss'])
  for acc in meta['public_accuracy'].values():
    assert 0.0 <= acc <= 1.0


# A pretraining and a federated run; test_pretraining_lowers_the_loss_on_a_fixed_batch is default.
@pytest.mark.slow
def test_federated_run_starts_from_the_saved_base_and_keeps_it_frozen(saved):
  directory, _ = saved
  exp = experiment.build(_config(directory))   # plan: base frozen, encoders shared
  server, clients, frozen = jax.jit(exp.federation.init)(exp.world, exp.key)
  base, encoders = _on_disk(directory, 'base'), _on_disk(directory, 'encoders')
  assert_trees_equal(frozen['base'], base)
  assert_trees_equal(server.shared['encoders'], encoders)
  # The scratch run of the same seed starts from another (random) base.
  scratch = experiment.build(test_config.get_config())
  _, _, scratch_frozen = jax.jit(scratch.federation.init)(scratch.world, scratch.key)
  assert not np.array_equal(scratch_frozen['base']['backbone']['cls'],
                            base['backbone']['cls'])

  plan, _ = exp.plan(0)
  after, after_clients, _ = jax.jit(exp.federation.round, donate_argnums=(0, 1))(
      server, clients, frozen, exp.world, plan)
  assert 'base' not in after.shared and 'base' not in after_clients.personal
  assert_trees_equal(frozen['base'], base)
  # The round trained: the (shared) pretrained encoders moved.
  moved = jax.tree.map(lambda a, b: not np.array_equal(a, b),
                       jax.device_get(after.shared['encoders']), encoders)
  assert any(jax.tree.leaves(moved))


@pytest.mark.parametrize('change, message', [
    (dict(m3t=dict(width=32)), 'model.m3t.width=16 there, 32 here'),
    # Same shapes (query/key/value kernels are [width, width]), other meaning.
    (dict(m3t=dict(num_heads=4)), 'model.m3t.num_heads=2 there, 4 here'),
])
def test_a_different_model_is_refused(saved, change, message):
  directory, _ = saved
  with pytest.raises(ConfigError, match=message):
    experiment.build(_config(directory, **change))


def test_a_dense_base_upcycles_into_experts_that_compute_the_dense_model(saved):
  # Sparse upcycling: each expert a copy of its block's MLP; top-k weights sum to 1, so
  # the mixture computes the dense model (the other trees taken from the dense run).
  directory, _ = saved
  dense = experiment.build(_config(directory))
  moe = experiment.build(_config(directory, m3t=dict(num_experts=3, expert_top_k=2)))
  key = jax.random.key(0)
  d, m = jax.jit(dense.problem.init_params)(key), jax.jit(moe.problem.init_params)(key)
  disk = _on_disk(directory, 'base')['backbone']
  for block in (b for b in disk if b.startswith('block_')):
    for e in range(3):
      np.testing.assert_array_equal(m['experts']['backbone'][block]['moe']['w_out'][e],
                                    disk[block]['mlp_out']['dense']['kernel'])
  ex = jax.jit(dense.problem.client_data, static_argnums=2)(dense.world, 1, 'train', 0)
  ex = ex['examples']
  merged = lambda p: trees.merge_roles(*p.values())
  out_d, _ = jax.jit(dense.model.apply)(merged(d), ex['x'], ex['modality_mask'])
  m_params = {**m, **{r: d[r] for r in d if r != 'base'}}
  out_m, _ = jax.jit(moe.model.apply)(merged(m_params), ex['x'], ex['modality_mask'])
  for task in out_d:
    np.testing.assert_allclose(out_m[task], out_d[task], rtol=1e-5, atol=1e-5)
  # Another architecture besides the experts still does not fit.
  with pytest.raises(ConfigError, match='model.m3t.width=16 there, 32 here'):
    experiment.build(_config(directory, m3t=dict(num_experts=3, width=32)))


@pytest.mark.slow   # test_pretraining_lowers_the_loss_on_a_fixed_batch is default
def test_base_transfers_to_other_tasks_but_heads_do_not(saved):
  directory, _ = saved
  config = _config(directory, pretrained_roles=('base',))
  config.data.tasks = ('gesture', 'intent')
  params = jax.jit(_with_pretrained(config).init_params)(jax.random.key(1))
  assert_trees_equal(params['base'], _on_disk(directory, 'base'))
  config.model.pretrained_roles = ('base', 'heads')
  with pytest.raises(ConfigError, match='data.tasks'):
    _with_pretrained(config)


@pytest.mark.parametrize('roles, message', [
    ((), 'pretrained_roles is empty'),
    (('base', 'prompts'), r"\['prompts'\] are PEFT trees"),
    (('experts',), r"this model has no \['experts'\]"),   # not a MoE model
])
def test_bad_pretrained_roles(saved, roles, message):
  with pytest.raises(ConfigError, match=message):
    _with_pretrained(_config(saved[0], pretrained_roles=roles))


def test_missing_or_corrupt_checkpoint_is_a_clear_error(saved, tmp_path):
  with pytest.raises(ConfigError, match='does not exist'):
    _with_pretrained(_config(str(tmp_path / 'nowhere')))

  broken = str(tmp_path / 'broken')
  shutil.copytree(saved[0], broken)
  damaged = 0
  for root, _, files in os.walk(os.path.join(broken, pretrained.PARAMS_DIR)):
    for name in files:
      with open(os.path.join(root, name), 'wb') as f:
        f.write(b'\x00garbage')
      damaged += 1
  assert damaged
  with pytest.raises(CheckpointError, match='is corrupt'):
    _with_pretrained(_config(broken))

  with open(os.path.join(broken, pretrained.METADATA_FILE), 'w') as f:
    f.write('{"format": "fedxr-pre')
  with pytest.raises(CheckpointError, match='pretrained.json is corrupt'):
    _with_pretrained(_config(broken))
  os.remove(os.path.join(broken, pretrained.METADATA_FILE))
  with pytest.raises(CheckpointError, match='not a complete fedxr-pretrain output'):
    _with_pretrained(_config(broken))


@pytest.mark.parametrize('get_config', [test_config.evaluated,
                                        default_config.get_config])
def test_public_split_is_disjoint_from_population_and_unseen_users(get_config):
  config = get_config()
  ids = pretrain.public_client_ids(config, 1000)
  federated = np.arange(config.population_size + config.eval_unseen_clients)
  assert len(np.unique(ids)) == 1000
  assert not np.intersect1d(ids, federated).size
  # A population large enough to reach the public ids is refused.
  config.population_size = pretrain.PUBLIC_FIRST_ID
  with pytest.raises(ConfigError, match='reaches the public pretraining ids'):
    pretrain.public_client_ids(config, 1)


@pytest.mark.parametrize('change, message', [
    (dict(model=dict(pretrained='/some/base')), 'model.pretrained is set'),
    (dict(data=dict(source='digits')), "data.source='digits' has none"),
    (dict(corpus_worlds=2), 'corpus_worlds=2 needs data.source=world'),
    (dict(corpus_worlds=-1), 'corpus_worlds must be >= 0'),
])
def test_pretraining_refuses_configs_it_cannot_serve(change, message):
  config = test_config.get_config()
  settings = SETTINGS._replace(corpus_worlds=change.pop('corpus_worlds', 0))
  for block, values in change.items():
    config[block].update(values)
  with pytest.raises(ConfigError, match=message):
    pretrain.pretrain(config, settings)


def _corpus_setup(worlds: int):
  config = test_config.get_config()
  config.data.source = 'world'
  return config, pretrain.make_setup(config, worlds)


def test_corpus_pretraining_never_sees_the_federations_world():
  _, setup = _corpus_setup(3)
  assert setup.world_seeds == world.corpus_seeds(3)
  corpus_keys = {tuple(k) for k in np.asarray(setup.worlds['key'])}
  assert len(corpus_keys) == 3 and tuple(np.asarray(setup.world['key'])) not in corpus_keys


# The pool's rows are the client data pretraining then samples (default: the loss falls in
# test_pretraining_lowers_the_loss_on_a_fixed_batch).
@pytest.mark.slow
def test_the_corpus_pool_is_world_major():
  config, setup = _corpus_setup(3)
  # Users of world w fill rows [w * P, (w + 1) * P).
  pool = pretrain.make_pool(setup, pretrain.public_client_ids(config, 2))
  one = setup.problem.client_data(jax.tree.map(lambda x: x[1], setup.worlds),
                                  pretrain.PUBLIC_FIRST_ID + 1, 'train')
  row = jax.tree.map(lambda x: x[3], pool)
  assert jax.tree.structure(row) == jax.tree.structure(one)
  # Labels exactly; rendered floats up to XLA's fusion differences between two programs
  # (another user's or world's row differs by O(1)).
  np.testing.assert_array_equal(row['examples']['y'], one['examples']['y'])
  for x, y in zip(jax.tree.leaves(row), jax.tree.leaves(one)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5)


# Pretraining itself is covered by default in test_pretraining_lowers_the_loss_on_a_fixed_batch.
@pytest.mark.slow
def test_a_corpus_checkpoint_keeps_base_and_encoders_and_starts_a_world_run(tmp_path):
  config = test_config.get_config()
  config.data.source = 'world'
  settings = SETTINGS._replace(corpus_worlds=3)
  result = pretrain.pretrain(config, settings)
  assert result.world_seeds == world.corpus_seeds(3)
  assert 'heads' not in result.params   # each corpus world's heads are its own
  meta = pretrain.save(config, str(tmp_path / 'corpus'), settings, result)
  assert meta['corpus_world_seeds'] == list(world.corpus_seeds(3))
  assert set(meta['roles']) == {'base', 'encoders'}
  # A federation of a world outside the corpus starts from it.
  run = _config(str(tmp_path / 'corpus'))
  run.data.source = 'world'
  problem = _with_pretrained(run)
  start = problem.init_params(jax.random.key(0))
  assert_trees_equal(start['base'], result.params['base'])


# m3t-tiny-codes loads by the same path (a world problem build, 7 s): slow.
@pytest.mark.parametrize('name', ['m3t-tiny', pytest.param('m3t-tiny-codes',
                                                           marks=pytest.mark.slow)])
def test_the_shipped_checkpoint_starts_a_world_run_and_an_unknown_one_is_refused(name):
  # builtin:m3t-tiny: the public-corpus checkpoint the v2 tracks start from;
  # m3t-tiny-codes: the one pretrained with code targets (issue 20's transfer). Each is
  # checked (fingerprint, every array's sha256) and loaded into the default model's base.
  assert pretrained.builtin_names() == ('m3t-tiny', 'm3t-tiny-codes')
  config = default_config.get_config()
  config.data.source = 'world'
  config.model.pretrained = f'builtin:{name}'
  directory = pretrained.resolve(config.model.pretrained)
  meta = pretrained.read_metadata(directory)
  assert meta['corpus_world_seeds'] == list(world.corpus_seeds(meta['corpus_worlds']))
  problem = _with_pretrained(config)
  start = problem.init_params(jax.random.key(0))
  assert {p: d['sha256'] for p, d in pretrained.digests(start['base']).items()} == {
      p: d['sha256'] for p, d in meta['roles']['base']['arrays'].items()}
  config.model.pretrained = 'builtin:m3t-huge'
  with pytest.raises(ConfigError, match=r"no such shipped checkpoint; shipped: .*"
                                        r"builtin:m3t-tiny"):
    pretrained.resolve(config.model.pretrained)


def test_pretraining_lowers_the_loss_on_a_fixed_batch(result):
  config = test_config.get_config()
  setup = pretrain.make_setup(config)
  pool = pretrain.make_pool(setup, pretrain.public_client_ids(config, 4))
  batch, _ = pretrain.sample_batch(pool, jax.random.key(123), users=4,
                                   examples_per_user=8)
  loss = jax.jit(lambda params: pretrain.batch_loss(setup.problem, params, batch))
  before, after = loss(result.initial_params), loss(result.params)
  assert float(after) < float(before)
  # Only non-PEFT trees were trained: prompts (and LoRA) are still at init.
  assert_trees_equal(result.params['prompts'], result.initial_params['prompts'])


def test_cross_modal_nce_known_answer():
  # Orthonormal features, each view equal, temperature 1: every row scores 1 for itself
  # and 0 for the other valid rows, so each direction's loss is log(1 + (n - 1) / e).
  a = jax.numpy.eye(4)
  valid = jax.numpy.array([True, True, True, False])   # the last row takes no part
  want = np.log(1 + 2 * np.exp(-1.0))
  np.testing.assert_allclose(pretrain.cross_modal_nce(a, a, valid, temperature=1.0), want,
                             rtol=1e-6)
  # Swapped positives cost more than matched ones.
  swapped = a[jax.numpy.array([1, 0, 2, 3])]
  assert float(pretrain.cross_modal_nce(a, swapped, valid)) > 5.0
  np.testing.assert_array_equal(pretrain.view_split(4), [True, True, False, False])
  with pytest.raises(ConfigError, match='>= 2 modalities'):
    pretrain.view_split(1)
  with pytest.raises(ConfigError, match='contrastive must be >= 0'):
    SETTINGS._replace(contrastive=-1.0).check()


def test_the_contrastive_term_adds_to_the_supervised_loss(result):
  config = test_config.get_config()
  setup = pretrain.make_setup(config)
  pool = pretrain.make_pool(setup, pretrain.public_client_ids(config, 4))
  batch, _ = pretrain.sample_batch(pool, jax.random.key(7), users=4, examples_per_user=8)

  @jax.jit   # one program (eagerly, each op dispatches alone: 7 s)
  def losses(params, batch):
    plain = pretrain.batch_loss(setup.problem, params, batch)
    both = pretrain.batch_loss(setup.problem, params, batch, contrastive=1.0)
    # Weight 0 (the default): the mean over users of the federated loss, as computed here.
    meta = jax.vmap(lambda d: pretrain.problem_lib.client_meta(d))(batch)
    by_hand = jax.numpy.mean(jax.vmap(lambda ex, m: setup.problem.loss(
        params, ex, m)[0])(batch['examples'], meta))
    return plain, both, by_hand

  plain, both, by_hand = losses(result.params, batch)
  assert float(plain) == float(by_hand)
  assert float(both) > float(plain)   # InfoNCE over 32 examples is > 0


def _cli(*args):
  return subprocess.run(
      [sys.executable, '-m', 'fedxr_jax.cli.pretrain', f'--config={TEST_CONFIG}',
       '--progress=false', *args],
      capture_output=True, text=True, cwd=REPO, timeout=600)


# test_pretraining_lowers_the_loss_on_a_fixed_batch and test_a_different_model_is_refused are
# default.
@pytest.mark.slow
def test_cli_pretrains_saves_and_refuses_a_taken_output_dir(tmp_path):
  out = str(tmp_path / 'out')
  flags = ['--steps=2', '--public_clients=4', '--batch_size=8', '--users_per_batch=4']
  ok = _cli(f'--output_dir={out}', *flags)
  assert ok.returncode == 0, ok.stderr
  assert 'public test accuracy' in ok.stdout
  assert pretrained.read_metadata(out)['steps'] == 2
  # The same command again: the same weights (their sha256 printed), another wall time.
  again = _cli(f'--output_dir={tmp_path / "again"}', *flags)
  printed = [l for l in (ok.stdout + again.stdout).splitlines() if 'weights sha256' in l]
  assert len(printed) == 2 and printed[0] == printed[1]
  assert printed[0].endswith(pretrained.weights_sha256(pretrained.read_metadata(out)))
  for args, message in (([f'--output_dir={out}', *flags], 'is not empty'),
                        ([f'--output_dir={tmp_path / "b"}', '--batch_size=10',
                          '--users_per_batch=4'], 'not a multiple')):
    bad = _cli(*args)
    assert bad.returncode != 0
    lines = [l for l in bad.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and message in lines[0], bad.stderr


def test_code_targets_add_every_blocks_code_once_and_only_on_the_world():
  config = default_config.get_config()
  config.data.source = 'world'
  with_codes = pretrain.with_code_targets(config)
  codes = tuple(t.name for t in world.tasks.CODE_TASKS)
  assert with_codes.data.world.tasks == tuple(config.data.world.tasks) + codes
  assert pretrain.with_code_targets(with_codes).data.world.tasks == \
      with_codes.data.world.tasks
  assert config.data.world.tasks == ('gesture', 'intent', 'emotion', 'gaze_point',
                                     'object_box')   # the caller's config is left alone
  config.data.source = 'synthetic'
  with pytest.raises(ConfigError, match='add --config.data.source=world'):
    pretrain.with_code_targets(config)
  # Shared target heads are one head across corpus worlds: nothing to share without them.
  with pytest.raises(ConfigError, match='need --corpus_worlds > 0'):
    pretrain.Settings(steps=1, public_clients=1, batch_size=16, corpus_worlds=0,
                      shared_target_heads=True).check()


def test_world_heads_give_a_shared_task_slot_zeros_head_in_every_world():
  # Settings.shared_target_heads: a regression head is one head for every corpus world.
  stacked = {'heads': {'gesture': {'kernel': np.arange(3.0)[:, None] * np.ones((3, 2))},
                       'gaze_point': {'kernel': np.arange(3.0)[:, None] * np.ones((3, 2))}}}
  for w in range(3):
    picked = pretrain.world_heads(stacked, w, shared=('gaze_point',))
    np.testing.assert_array_equal(picked['heads']['gesture']['kernel'], [w, w])
    np.testing.assert_array_equal(picked['heads']['gaze_point']['kernel'], [0.0, 0.0])
  np.testing.assert_array_equal(
      pretrain.world_heads(stacked, 2)['heads']['gaze_point']['kernel'], [2.0, 2.0])
  # The MLP names its heads heads_TASK.
  flat = {f'heads_{t}': v for t, v in stacked['heads'].items()}
  picked = pretrain.world_heads(flat, 2, shared=('gaze_point',))
  np.testing.assert_array_equal(picked['heads_gesture']['kernel'], [2.0, 2.0])
  np.testing.assert_array_equal(picked['heads_gaze_point']['kernel'], [0.0, 0.0])
