"""A partitioned real dataset as a federated source for the training core.

The source is a pytree of arrays stacked over clients and padded:
  source[split]['x'][modality]  [C, N_split, *shape] float32
  source[split]['y']            [C, N_split, 1] int32 (one task)
  source[split]['num_examples'] [C] int32, valid examples first
plus the one device profile every client has and a key (client positions
for the topology, `client_position`). `client_data` reads one
client out of it in exactly the format of `synthetic.client_data`, so the
round, the model problem and the topology treat real and synthetic data
alike.

Each client's test split is a fixed fraction of its own examples, chosen by
a seeded Generator, whole holdout groups at a time (overlapping windows of
one bout never straddle train and test).

All clients are one device class, a smartphone (`DEVICE`): a real dataset
says nothing of device mix, and HAPT was recorded on a phone. Every client
gets the full `local_steps` budget.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.data import catalog
from fedxr_jax.data import mobility
from fedxr_jax.data import task_kinds
from fedxr_jax.data.real import dataset as dataset_lib
from fedxr_jax.errors import ConfigError

SPLITS = ('train', 'test')

# A ~2 TFLOP/s fp32 phone GPU (Apple A17 Pro / Snapdragon 8 Gen 3 class) is
# about half an Apple M2: tier 0.5 of the catalog's reference throughput.
# Radio and power as a headset: 23 dBm (3GPP class-3 UE), 8 W.
DEVICE = catalog.Device('smartphone', 'Smartphone', ('Visual', 'Audio', 'Motion'),
                        ('everyday',), 0.5, 'phone SoC (A17 Pro / Snapdragon 8 Gen 3 class)')


@dataclasses.dataclass(frozen=True)
class RealDataSpec:
  """Static description of a real federation; stands in for `XRSpec`."""
  name: str
  modalities: tuple        # modality names, in modality-mask order
  tasks: tuple             # task names, in label order
  num_classes: tuple       # per task
  shapes: tuple            # per modality, one example's input shape
  token_shapes: tuple      # per modality, see models.m3t.tokenize
  num_clients: int
  devices: tuple = (DEVICE.name,)
  area_m: float = 100.0            # users live in a square of this side
  walk_m_per_round: float = 0.0    # mobility (client_position)

  def model_modalities(self) -> dict:
    """{name: (shape, token_shape)} for `models.m3t.M3TModel`."""
    return {m: (tuple(s), tuple(t))
            for m, s, t in zip(self.modalities, self.shapes, self.token_shapes)}

  @property
  def task_defs(self) -> tuple:
    """A recorded dataset's tasks are classifications (`data.task_kinds`)."""
    return tuple(task_kinds.classification(t, k) for t, k in zip(self.tasks, self.num_classes))

  @property
  def head_sizes(self) -> tuple:
    return self.num_classes


def holdout(indices: np.ndarray, groups, fraction: float, rng) -> tuple:
  """(train, test) indices: whole groups, in random order, until `fraction`.

  At least one group goes to test and one stays for training (a client with
  a single group has no test examples).
  """
  g = np.arange(len(indices)) if groups is None else groups[indices]
  ids, sizes = np.unique(g, return_counts=True)
  order = rng.permutation(len(ids))
  target = max(1, int(round(fraction * len(indices))))
  taken = int(np.searchsorted(np.cumsum(sizes[order]), target)) + 1
  test_ids = ids[order[:min(taken, len(ids) - 1)]]
  is_test = np.isin(g, test_ids)
  return indices[~is_test], indices[is_test]


def _stack(dataset: dataset_lib.Dataset, parts: list) -> dict:
  size = max(1, max(len(p) for p in parts))
  x = np.zeros((len(parts), size) + dataset.shape, np.float32)
  y = np.zeros((len(parts), size, 1), np.int32)
  for c, idx in enumerate(parts):
    x[c, :len(idx)] = dataset.x[idx]
    y[c, :len(idx), 0] = dataset.y[idx]
  return {'x': {dataset.modality: x}, 'y': y,
          'num_examples': np.asarray([len(p) for p in parts], np.int32)}


def federate(dataset: dataset_lib.Dataset, clients: list, *, holdout_fraction: float,
             seed: int, local_steps: int, area_m: float = 100.0,
             walk_m_per_round: float = 0.0) -> tuple:
  """(RealDataSpec, source of numpy arrays) for `clients` (index arrays)."""
  if not 0.0 < holdout_fraction < 1.0:
    raise ConfigError(f'holdout fraction must be in (0, 1), got {holdout_fraction}')
  train, test = [], []
  for c, idx in enumerate(clients):
    if len(idx) < 2:
      raise ConfigError(f'{dataset.name}: client {c} has {len(idx)} example(s); '
                        'it needs one to train and one to test')
    rng = np.random.default_rng([seed, 0x401D, c])
    tr, te = holdout(np.asarray(idx), dataset.groups, holdout_fraction, rng)
    train.append(rng.permutation(tr))   # batches mix bouts even without shuffling
    test.append(te)
  spec = RealDataSpec(
      name=dataset.name, modalities=(dataset.modality,), tasks=(dataset.task,),
      num_classes=(dataset.num_classes,), shapes=(dataset.shape,),
      token_shapes=(tuple(dataset.token_shape),), num_clients=len(clients),
      area_m=area_m, walk_m_per_round=walk_m_per_round)
  source = {
      'train': _stack(dataset, train), 'test': _stack(dataset, test),
      'step_budget': np.int32(local_steps),
      'device_profile': {'train_flops': np.float32(DEVICE.train_flops),
                         'half_rate': np.float32(DEVICE.half_rate),
                         'tx_power_dbm': np.float32(DEVICE.tx_power_dbm),
                         'compute_power_w': np.float32(DEVICE.compute_power_w)},
      'key': np.asarray(jax.random.key_data(jax.random.key(seed))),
  }
  return spec, source


def client_data(source: dict, client_id, split: str, round_idx=0) -> dict:
  """One client's `split` examples, in the format of `synthetic.client_data`.

  A recorded dataset does not change between rounds: `round_idx` is unused.
  """
  del round_idx
  part = source[split]
  x = {m: v[client_id] for m, v in part['x'].items()}
  y = part['y'][client_id]
  num = part['num_examples'][client_id]
  size, num_tasks = y.shape
  example_mask = jnp.arange(size) < num
  return {
      'examples': {'x': x, 'y': y,
                   'modality_mask': jnp.broadcast_to(example_mask[:, None],
                                                     (size, len(x))),
                   'example_mask': example_mask},
      'num_examples': num.astype(jnp.int32),
      'step_budget': jnp.asarray(source['step_budget'], jnp.int32),
      'task_mask': jnp.ones((num_tasks,), bool),
      'device': jnp.int32(0),
      'environment': jnp.int32(-1),   # not recorded: no environment group
      'device_profile': dict(source['device_profile']),
  }


def client_position(source: dict, client_id, round_idx, spec: RealDataSpec):
  """Where a client is at a round (`mobility.walk`, seeded by the source's key)."""
  key = jax.random.fold_in(jax.random.wrap_key_data(source['key']), client_id)
  return mobility.walk(key, round_idx, spec.area_m, spec.walk_m_per_round)
