"""Pretrained directories carry a sha256 per array, checked before a run uses it.

Flipping 64 bytes of the file that holds one array must be refused in one line
naming the role and the array, never trained on ("diverges at round 1").
"""
import glob
import hashlib
import json
import os
import shutil

import jax
import numpy as np
import pytest
from flax import traverse_util

from fedxr_jax.compose import experiment
from fedxr_jax.compose import pretrained
from fedxr_jax.configs import test as test_config
from fedxr_jax.core import trees
from fedxr_jax.data import synthetic
from fedxr_jax.errors import CheckpointError
from helpers import assert_trees_equal

ARRAY = 'backbone/block_0/attn/query/dense/kernel'
ROLES = ('base', 'encoders', 'heads')


def _model(config):
  spec = synthetic.spec_from_config(config.data, config.local_steps)
  return experiment.make_model(config, spec)


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
  """A pretrained directory of the test config's model (as fedxr-pretrain writes one)."""
  config = test_config.get_config()
  model = _model(config)
  params = jax.device_get(trees.split_by_role(model.init(jax.random.key(3)), model.role_of))
  kept = {r: params[r] for r in ROLES}
  directory = str(tmp_path_factory.mktemp('digests') / 'base')
  pretrained.save(directory, kept, {'roles': pretrained.describe_roles(config, kept)})
  abstract = jax.eval_shape(lambda: params)
  return directory, config, kept, abstract


def _load(directory, config, abstract, roles=ROLES):
  return pretrained.load(directory, config, abstract, roles)


def _copy(saved, tmp_path):
  directory = str(tmp_path / 'copy')
  shutil.copytree(saved[0], directory)
  return directory


def test_array_digest_known_answer():
  x = np.array([1.0, -2.0], np.float32)
  assert pretrained.array_digest(x) == hashlib.sha256(
      b'float32[2]' + b'\x00\x00\x80\x3f\x00\x00\x00\xc0').hexdigest()
  # The same bytes as another shape or dtype are another array.
  y = np.arange(4, dtype=np.float32)
  assert pretrained.array_digest(y) != pretrained.array_digest(y.reshape(2, 2))
  assert pretrained.array_digest(y) != pretrained.array_digest(y.view(np.int32))


def test_every_array_is_recorded_and_loads_back_exactly(saved):
  directory, config, kept, abstract = saved
  meta = pretrained.read_metadata(directory)
  assert meta['format'] == 'fedxr-pretrained/2'
  for role in ROLES:
    arrays = meta['roles'][role]['arrays']
    flat = {'/'.join(p): x for p, x in
            traverse_util.flatten_dict(kept[role]).items()}
    assert sorted(arrays) == sorted(flat)
    for path, x in flat.items():
      x = np.ascontiguousarray(x)
      assert arrays[path] == {'shape': list(x.shape), 'dtype': 'float32', 'sha256': hashlib.sha256(
          f'float32{list(x.shape)}'.encode() + x.tobytes()).hexdigest()}
  loaded = _load(directory, config, abstract)
  for role in ROLES:
    assert_trees_equal(loaded[role], kept[role])


def _array_file(directory, role, path):
  """The file that holds one array (one zarr chunk per array at these sizes)."""
  files = glob.glob(os.path.join(directory, pretrained.PARAMS_DIR, role,
                                 path.replace('/', '.'), '[!.]*'))
  assert len(files) == 1, files
  return files[0]


def _flip(path, offset):
  with open(path, 'r+b') as f:
    data = bytearray(f.read())
    start = offset if offset >= 0 else len(data) // 2 - 32
    for i in range(start, start + 64):
      data[i] ^= 0xFF
    f.seek(0)
    f.write(data)


# The middle of the chunk is its (incompressible, stored) payload: zstd decodes
# the flipped bytes without complaint, only the digest sees them. The start is
# zstd's frame header: the array cannot be read at all.
@pytest.mark.parametrize('offset, why', [(-1, 'does not match its sha256 digest'),
                                         (0, 'cannot be read')])
def test_flipped_bytes_are_refused_naming_the_array(saved, tmp_path, offset, why):
  directory = _copy(saved, tmp_path)
  _flip(_array_file(directory, 'base', ARRAY), offset)
  with pytest.raises(CheckpointError) as info:
    _load(directory, saved[1], saved[3])
  message = str(info.value)
  assert '\n' not in message and f'is corrupt: its base array {ARRAY} ' in message
  assert why in message, message


def test_a_run_refuses_a_damaged_base(saved, tmp_path):
  """The new user's case: a run from a damaged base stops before training, in one line."""
  directory = _copy(saved, tmp_path)
  _flip(_array_file(directory, 'encoders', 'encoders/vision/embed/kernel'), -1)
  config = test_config.get_config()
  config.model.pretrained = directory
  with pytest.raises(CheckpointError, match='its encoders array encoders/vision/embed/kernel '
                     'does not match its sha256 digest'):
    experiment.build(config)


def _edit_metadata(directory, edit):
  path = os.path.join(directory, pretrained.METADATA_FILE)
  with open(path) as f:
    meta = json.load(f)
  edit(meta)
  with open(path, 'w') as f:
    json.dump(meta, f)


def test_directories_without_digests_are_refused(saved, tmp_path):
  directory = _copy(saved, tmp_path)
  _edit_metadata(directory, lambda m: m['roles']['heads']['arrays'].pop('heads/gesture/bias'))
  with pytest.raises(CheckpointError, match='has no digest for its heads array '
                     'heads/gesture/bias'):
    _load(directory, saved[1], saved[3])
  # A directory from before the digests: re-create it, in one line.
  _edit_metadata(directory, lambda m: m.update(format='fedxr-pretrained/1'))
  with pytest.raises(CheckpointError) as info:
    _load(directory, saved[1], saved[3])
  assert str(info.value) == (
      f'{directory} is a fedxr-pretrained/1 checkpoint: it carries no per-array sha256 '
      'digests, so damage on disk cannot be told from weights; re-create it '
      '(fedxr-pretrain, or fedxr-models import)')


def test_a_changed_digest_is_refused(saved, tmp_path):
  directory = _copy(saved, tmp_path)
  _edit_metadata(directory, lambda m: m['roles']['base']['arrays'][ARRAY].update(
      sha256='0' * 64))
  with pytest.raises(CheckpointError, match=f'its base array {ARRAY} does not match'):
    _load(directory, saved[1], saved[3], ('base',))
  # Only the roles a run loads are read and checked.
  assert sorted(_load(directory, saved[1], saved[3], ('encoders',))) == ['encoders']
