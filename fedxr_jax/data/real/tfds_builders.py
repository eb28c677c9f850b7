"""TFDS builders for the real sets and the synthetic federation.

They write `array_record` files, which TFDS writes and reads without
TensorFlow: read them back with `builder.as_data_source()`,
`tfds.data_source(name, data_dir=...)` (registered builders) or
`tfds.builder_from_directory(path).as_data_source()`.

  python -c "from fedxr_jax.data.real import tfds_builders as b; \
             b.Hapt().download_and_prepare()"

Real sets have one split, 'train', of every example with features
  x [*shape] float32, label (ClassLabel), user int32 (-1: unknown),
  group int32 (holdout group, see dataset.Dataset);
clients and test splits are made later (`partition`, `federated`), so one
export serves any partition. The synthetic export holds the per-client
'train' and 'test' examples of `synthetic.client_data` with a client_id.
"""
import hashlib
import json
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from fedxr_jax.data import catalog
from fedxr_jax.data import synthetic
from fedxr_jax.data.real import aeon_sets
from fedxr_jax.data.real import archives
from fedxr_jax.data.real import digits
from fedxr_jax.data.real import hapt

FILE_FORMAT = 'array_record'


def default_data_dir() -> str:
  return str(archives.data_dir() / 'tfds')


def _defaults(kwargs: dict) -> dict:
  kwargs.setdefault('data_dir', default_data_dir())
  kwargs.setdefault('file_format', FILE_FORMAT)
  return kwargs


class _RealBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """One real set; subclasses name it and say how to load it."""
  # TFDS 4.9.10 looks for a checksums file beside the builder's code through
  # `importlib_resources`, which it declares only for Python < 3.9 (and
  # fails without). These builders download nothing through TFDS: no file.
  code_path = None
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First export.'}
  SHAPE: tuple = ()
  CLASS_NAMES: tuple = ()

  def __init__(self, *, archive: Optional[str] = None, dataset=None, **kwargs):
    """archive: a local copy of the pinned archive; dataset: a `Dataset` to
    write instead of loading one (same shape and classes)."""
    self._archive, self._dataset = archive, dataset
    super().__init__(**_defaults(kwargs))

  def _load(self):
    raise NotImplementedError

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=self.__doc__,
        features=tfds.features.FeaturesDict({
            'x': tfds.features.Tensor(shape=tuple(self.SHAPE), dtype=np.float32),
            'label': tfds.features.ClassLabel(names=list(self.CLASS_NAMES)),
            'user': np.int32, 'group': np.int32}),
        supervised_keys=('x', 'label'), disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager   # archives are fetched by fedxr_jax.data.real.archives
    data = self._dataset if self._dataset is not None else self._load()
    return {'train': self._generate_examples(data)}

  def _generate_examples(self, data):
    users = data.users if data.users is not None else np.full(len(data), -1)
    groups = data.groups if data.groups is not None else np.arange(len(data))
    for i in range(len(data)):
      yield i, {'x': data.x[i], 'label': int(data.y[i]), 'user': int(users[i]),
                'group': int(groups[i])}


class Hapt(_RealBuilder):
  """UCI HAPT smartphone IMU windows, 30 users, 12 activities (see real/hapt.py)."""
  name = 'fedxr_hapt'
  SHAPE = (hapt.WINDOW, len(hapt.CHANNELS))
  CLASS_NAMES = hapt.CLASS_NAMES

  def _load(self):
    return hapt.load(self._archive)


class Digits(_RealBuilder):
  """sklearn's 8x8 handwritten digits in [0, 1] (see real/digits.py)."""
  name = 'fedxr_digits'
  SHAPE = (8, 8, 1)
  CLASS_NAMES = tuple(str(d) for d in range(10))

  def _load(self):
    return digits.load(self._archive)


def _aeon_builder(key: str, class_name: str, class_names: tuple):
  s = aeon_sets.SETS[key]

  def _load(self):
    return aeon_sets.load(key, self._archive)

  return type(class_name, (_RealBuilder,), {
      '__doc__': f'aeon {s.problem}, resampled to {s.length} steps (see real/aeon_sets.py).',
      '__module__': __name__, 'name': f'fedxr_{key}',
      'SHAPE': (s.length, s.token_shape[-1]), 'CLASS_NAMES': class_names,
      '_load': _load})


BasicMotions = _aeon_builder('basic_motions', 'BasicMotions',
                             ('Standing', 'Running', 'Walking', 'Badminton'))
PickupGestureWiimoteZ = _aeon_builder('pickup_gesture', 'PickupGestureWiimoteZ',
                                      tuple(str(k) for k in range(1, 11)))
JapaneseVowels = _aeon_builder('japanese_vowels', 'JapaneseVowels',
                               tuple(str(k) for k in range(1, 10)))

BUILDERS = {'hapt': Hapt, 'digits': Digits, 'basic_motions': BasicMotions,
            'pickup_gesture': PickupGestureWiimoteZ, 'japanese_vowels': JapaneseVowels}


class SyntheticFederation(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """The synthetic XR federation (data/synthetic.py), one example per record."""
  name = 'fedxr_synthetic'
  code_path = None   # see _RealBuilder
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First export.'}
  CHUNK = 64   # clients generated per jitted call

  def __init__(self, *, data_config, num_clients: int, seed: int = 0,
               local_steps: int = 8, **kwargs):
    """data_config: the `data` block of a run config."""
    self._spec = synthetic.spec_from_config(data_config, local_steps)
    self._num_clients, self._seed = num_clients, seed
    # The settings name the config, so two exports never share a directory.
    settings = json.dumps([repr(self._spec), num_clients, seed], sort_keys=True)
    digest = hashlib.sha256(settings.encode()).hexdigest()[:12]
    kwargs['config'] = tfds.core.BuilderConfig(
        name=f'clients{num_clients}_seed{seed}_{digest}', description=settings)
    super().__init__(**_defaults(kwargs))

  def _info(self) -> tfds.core.DatasetInfo:
    spec = self._spec
    return tfds.core.DatasetInfo(
        builder=self, description=self.__doc__,
        features=tfds.features.FeaturesDict({
            'x': tfds.features.FeaturesDict({
                m: tfds.features.Tensor(shape=catalog.MODALITIES[m].shape,
                                        dtype=np.float32) for m in spec.modalities}),
            'y': tfds.features.Tensor(shape=(len(spec.tasks),), dtype=np.int32),
            'modality_mask': tfds.features.Tensor(shape=(len(spec.modalities),),
                                                  dtype=np.bool_),
            'task_mask': tfds.features.Tensor(shape=(len(spec.tasks),), dtype=np.bool_),
            'client_id': np.int32, 'device': np.int32, 'step_budget': np.int32}),
        metadata=tfds.core.MetadataDict(modalities=list(spec.modalities),
                                        tasks=list(spec.tasks)),
        disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split) for split in synthetic.SPLITS}

  def _generate_examples(self, split):
    spec = self._spec
    world = synthetic.make_world(jax.random.fold_in(jax.random.key(self._seed), 7), spec)
    chunk_fn = jax.jit(jax.vmap(lambda c: synthetic.client_data(world, c, split, spec)))
    for start in range(0, self._num_clients, self.CHUNK):
      ids = np.arange(start, min(start + self.CHUNK, self._num_clients), dtype=np.int32)
      data = jax.tree.map(np.asarray, chunk_fn(jnp.asarray(ids)))
      ex = data['examples']
      for j, c in enumerate(ids):
        for i in np.flatnonzero(ex['example_mask'][j]):
          yield f'{c:08d}_{i:05d}', {
              'x': {m: v[j, i] for m, v in ex['x'].items()},
              'y': ex['y'][j, i], 'modality_mask': ex['modality_mask'][j, i],
              'task_mask': data['task_mask'][j], 'client_id': int(c),
              'device': int(data['device'][j]),
              'step_budget': int(data['step_budget'][j])}
