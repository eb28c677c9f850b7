"""Data poisoning: wrappers over a `FederatedProblem` that change what attackers train on.

Both wrap a problem marked by `attacks.malicious.mark`: its client data
says whether the client attacks (`data['malicious']`). Only the 'train'
split of malicious clients changes (their held-out data
and every honest client's data stay true), and only valid examples
(`example_mask`). The XR layout: examples['x'][modality] [N, ...],
examples['y'] [N, T] labels, examples['example_mask'] [N],
examples['modality_mask'] [N, M].

label_flip  y_t -> K_t - 1 - y_t, or a fixed permutation per task.
backdoor    a `fraction` of an attacker's examples that have the trigger's
            modality get a square patch stamped on it and the target label
            of one task (Bagdasaryan et al. 2020; Gu et al. 2017). The
            poisoned examples are drawn once per client from `source[KEY]` (a
            client's dataset is fixed, so are its poisoned examples). Its
            eval_stats add 'attack/backdoor_hits' and 'attack/backdoor_count'
            sums on the triggered held-out data; `success_rate` of the summed
            stats is the share of triggered examples, whose true label is not
            the target, classified as the target (only examples that have the
            modality and whose client has the task count).
"""
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

from fedxr_jax.core.problem import FederatedProblem, client_meta
from fedxr_jax.errors import ConfigError

KEY = 'attack/backdoor_key'   # source key: uint32 key data of the poisoned-example draws


def _with(data, **examples):
  return {**data, 'examples': {**data['examples'], **examples}}


def flip_table(num_classes: Sequence[int],
               permutations: Optional[Sequence[Sequence[int]]] = None) -> jax.Array:
  """[T, max K] int32: row t maps a label of task t to its flipped label."""
  if not num_classes or min(num_classes) < 2:
    raise ConfigError(f'label flipping needs >= 2 classes per task, got {list(num_classes)}')
  if permutations is None:
    permutations = [list(range(k - 1, -1, -1)) for k in num_classes]
  if len(permutations) != len(num_classes):
    raise ConfigError(f'attack.label_flip.permutations has {len(permutations)} rows for '
                      f'{len(num_classes)} tasks')
  width = max(num_classes)
  rows = []
  for t, (k, perm) in enumerate(zip(num_classes, permutations)):
    if sorted(perm) != list(range(k)):
      raise ConfigError(f'attack.label_flip.permutations[{t}] must be a permutation of '
                        f'0..{k - 1}, got {list(perm)}')
    rows.append(list(perm) + list(range(k, width)))
  return jnp.asarray(rows, jnp.int32)


def label_flip(problem: FederatedProblem, num_classes: Sequence[int],
               permutations: Optional[Sequence[Sequence[int]]] = None) -> FederatedProblem:
  """Attackers train on flipped labels; num_classes: K of each task, in label order."""
  table = flip_table(num_classes, permutations)

  def client_data(source, client_id, split, round_idx=0):
    data = problem.client_data(source, client_id, split, round_idx)
    if split != 'train':
      return data
    ex = data['examples']
    y = ex['y']
    if y.shape[1] != table.shape[0]:
      raise ConfigError(f'label flipping got num_classes for {table.shape[0]} tasks, '
                        f'the data has {y.shape[1]}')
    flipped = table[jnp.arange(y.shape[1])[None, :], y]
    poison = data['malicious'] & ex['example_mask'][:, None]
    return _with(data, y=jnp.where(poison, flipped, y).astype(y.dtype))

  return problem._replace(client_data=client_data)


class Trigger(NamedTuple):
  """A backdoor: a patch on one modality and the label it should produce."""
  modality: str
  modality_index: int   # its column in examples['modality_mask']
  task: str
  task_index: int       # its column in examples['y']
  target: int
  size: int             # side of the square patch (the last `size` rows and columns)
  value: float          # what the patch's entries are set to
  fraction: float       # share of an attacker's eligible examples poisoned


def trigger(modalities: Sequence[str], tasks: Sequence[str], num_classes: Sequence[int], *,
            modality: str = 'vision', task: Optional[str] = None, target: int = 0,
            size: int = 4, value: float = 4.0, fraction: float = 0.5) -> Trigger:
  """A checked `Trigger`; task defaults to the first of `tasks` (num_classes per task)."""
  task = tasks[0] if task is None else task
  if len(num_classes) != len(tasks):
    raise ConfigError(f'attack.backdoor needs num_classes for each of the {len(tasks)} tasks, '
                      f'got {list(num_classes)}')
  if modality not in modalities:
    raise ConfigError(f'attack.backdoor.modality={modality!r} is not one of {list(modalities)}')
  if task not in tasks:
    raise ConfigError(f'attack.backdoor.task={task!r} is not one of {list(tasks)}')
  k = num_classes[list(tasks).index(task)]
  if not 0 <= target < k:
    raise ConfigError(f'attack.backdoor.target must be in [0, {k}) for task {task!r}, '
                      f'got {target}')
  if size < 1:
    raise ConfigError(f'attack.backdoor.size must be >= 1, got {size}')
  if not 0.0 < fraction <= 1.0:
    raise ConfigError(f'attack.backdoor.fraction must be in (0, 1], got {fraction}')
  return Trigger(modality, list(modalities).index(modality), task, list(tasks).index(task),
                 target, size, value, fraction)


def stamp(x, trig: Trigger):
  """x [N, ...] with the patch set on the last `size` entries of its first two axes."""
  if x.ndim < 2 or min(x.shape[1:3]) < trig.size:
    raise ConfigError(f'attack.backdoor.size={trig.size} does not fit the '
                      f'{trig.modality} input of shape {x.shape[1:]}')
  patch = jnp.ones(x.shape[1:], bool)
  for axis in range(min(2, x.ndim - 1)):
    idx = jax.lax.broadcasted_iota(jnp.int32, x.shape[1:], axis)
    patch = patch & (idx >= x.shape[1 + axis] - trig.size)
  return jnp.where(patch[None], jnp.asarray(trig.value, x.dtype), x)


def _stamped(data, where, trig: Trigger):
  """`data` with the trigger stamped on the examples where `where` [N] is True."""
  ex = data['examples']
  x = ex['x'][trig.modality]
  hit = where.reshape(where.shape + (1,) * (x.ndim - 1))
  return _with(data, x={**ex['x'], trig.modality: jnp.where(hit, stamp(x, trig), x)})


def triggered(data: dict, trig: Trigger) -> dict:
  """Held-out data with the trigger on every example (labels kept true)."""
  ex = data['examples']
  return _stamped(data, jnp.ones(ex['example_mask'].shape, bool), trig)


def success_counts(predict: Callable, params: dict, data: dict, trig: Trigger) -> dict:
  """Sums: triggered eligible examples classified as the target, and their number."""
  ex = data['examples']
  logits = predict(params, triggered(data, trig)['examples'], client_meta(data))[trig.task]
  has_task = data['task_mask'][trig.task_index] if 'task_mask' in data else True
  eligible = (ex['example_mask'] & ex['modality_mask'][:, trig.modality_index] & has_task
              & (ex['y'][:, trig.task_index] != trig.target))
  hits = eligible & (jnp.argmax(logits, axis=-1) == trig.target)
  return {'attack/backdoor_hits': jnp.sum(hits).astype(jnp.float32),
          'attack/backdoor_count': jnp.sum(eligible).astype(jnp.float32)}


def success_rate(stats: dict) -> jax.Array:
  """attack/success_rate from summed eval stats."""
  return stats['attack/backdoor_hits'] / jnp.maximum(stats['attack/backdoor_count'], 1.0)


def backdoor(problem: FederatedProblem, trig: Trigger) -> FederatedProblem:
  """Attackers train on triggered, relabelled examples; eval_stats measure the backdoor.

  Which examples carry the trigger: draws from the source's key data
  (`source[KEY]`, from the run's seed: data, not a constant of the round).
  """
  if problem.predict is None:
    raise ConfigError('attack.name=backdoor needs a problem with predict (to measure success)')

  def client_data(source, client_id, split, round_idx=0):
    data = problem.client_data(source, client_id, split, round_idx)
    if split != 'train':
      return data
    ex = data['examples']
    key = jax.random.wrap_key_data(source[KEY])
    draw = jax.random.uniform(jax.random.fold_in(key, client_id), ex['example_mask'].shape)
    poison = (data['malicious'] & ex['example_mask']
              & ex['modality_mask'][:, trig.modality_index] & (draw < trig.fraction))
    data = _stamped(data, poison, trig)
    y = ex['y']
    return _with(data, y=y.at[:, trig.task_index].set(
        jnp.where(poison, trig.target, y[:, trig.task_index]).astype(y.dtype)))

  def eval_stats(params, data):
    return {**problem.eval_stats(params, data),
            **success_counts(problem.predict, params, data, trig)}

  return problem._replace(client_data=client_data, eval_stats=eval_stats)
