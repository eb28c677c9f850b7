"""FedMultimodal's robustness protocol (Feng et al., KDD 2023) for any source.

Three corruptions of a client's training data, seeded per client, so runs
compare with that benchmark's tables:
  missing modality  each modality is absent from the whole client with
                    probability `missing_modality` (FedMultimodal draws one
                    flag per client and modality); `per_example` draws it
                    per (example, modality) instead;
  missing label     each (example, task) label is withheld with probability
                    `missing_label` (`examples['label_mask']`);
  label noise       each label is corrupted with probability `label_noise`:
                    a classification label moves to another class, uniform
                    over the classes the client's transition matrix allows
                    (`noise_sparsity` of the off-diagonal entries removed per
                    client and task; FedMultimodal uses 0.4, 0 is uniform); a
                    regression or detection target gets N(0, target_noise_std^2)
                    noise in every dimension.
`apply` works on the client-data layout every source shares
(`synthetic.client_data`, `world.client_data`, `real.federated.client_data`),
touches only the train split, and is a pure function of (data, key).
"""
import dataclasses

import jax
import jax.numpy as jnp

from fedxr_jax.core import rng
from fedxr_jax.core.contribution import Contribution
from fedxr_jax.errors import ConfigError

STREAM = 0xFED4   # fold_in stream of a client's robustness key


@dataclasses.dataclass(frozen=True)
class Robustness:
  missing_modality: float = 0.0
  per_example: bool = False
  missing_label: float = 0.0
  label_noise: float = 0.0
  noise_sparsity: float = 0.0
  target_noise_std: float = 0.1

  def check(self, where='data.robustness'):
    for k in ('missing_modality', 'missing_label', 'label_noise'):
      v = getattr(self, k)
      if not 0.0 <= v <= 1.0:
        raise ConfigError(f'{where}.{k} must be a rate in [0, 1], got {v}')
    if not 0.0 <= self.noise_sparsity < 1.0:
      raise ConfigError(f'{where}.noise_sparsity must be in [0, 1), got '
                        f'{self.noise_sparsity}')
    if self.target_noise_std < 0:
      raise ConfigError(f'{where}.target_noise_std must be >= 0, got '
                        f'{self.target_noise_std}')

  @property
  def active(self) -> bool:
    return self.missing_modality > 0 or self.missing_label > 0 or self.label_noise > 0


def client_key(key, client_id):
  """A client's robustness key from a source key: the same every round."""
  return jax.random.fold_in(jax.random.fold_in(key, STREAM), client_id)


def apply(data: dict, key, protocol: Robustness, num_classes: tuple, modalities: tuple,
          split: str = 'train') -> dict:
  """`data` with the protocol's corruptions (train split only).

  num_classes: classes of each column of examples['y'] (0: not a
  classification task, left alone); modalities: the names of the columns of
  examples['modality_mask'] (a pytree's dict keys come back sorted, so x's
  order says nothing). Adds examples['label_mask'] [N, T].
  """
  if split != 'train' or not protocol.active:
    return data
  ex = dict(data['examples'])
  n, m = ex['modality_mask'].shape
  t = ex['y'].shape[1]
  if len(num_classes) != t or sorted(modalities) != sorted(ex['x']) or len(modalities) != m:
    raise ConfigError(f'robustness: need one class count per task ({t}) and the {m} '
                      f'modality names, got {num_classes}, {modalities}')
  k_max = max(max(num_classes), 2)
  targets = dict(ex.get('targets', {}))
  names = sorted(targets)
  sizes = [n * m if protocol.per_example else m, n * t, n * t, n * t, t * k_max * k_max,
           n * len(names)]
  k_u, k_z = jax.random.split(key)
  u = jax.random.uniform(k_u, (sum(sizes),))
  parts, start = [], 0
  for s in sizes:
    parts.append(u[start:start + s])
    start += s
  u_mod, u_miss, u_flip, u_pick, u_sparse, u_target = parts

  lost = (u_mod < protocol.missing_modality).reshape((n, m) if protocol.per_example
                                                      else (1, m))
  ex['modality_mask'] = ex['modality_mask'] & ~lost
  x = ex['x']
  ex['x'] = {name: jnp.where(ex['modality_mask'][:, i].reshape((n,) + (1,) * (x[name].ndim - 1)),
                             x[name], 0.0) for i, name in enumerate(modalities)}
  base = ex.get('label_mask', jnp.broadcast_to(ex['example_mask'][:, None], (n, t)))
  ex['label_mask'] = base & ~(u_miss.reshape(n, t) < protocol.missing_label)

  flip = u_flip.reshape(n, t) < protocol.label_noise
  ex['y'] = _noisy_labels(ex['y'], flip, u_pick.reshape(n, t),
                          u_sparse.reshape(t, k_max, k_max), num_classes, protocol)
  if names:
    flips = u_target.reshape(n, len(names)) < protocol.label_noise
    dims = [targets[k].shape[-1] for k in names]
    z = jax.random.normal(k_z, (n, sum(dims)))
    start = 0
    for j, (name, d) in enumerate(zip(names, dims)):
      noise = protocol.target_noise_std * z[:, start:start + d]
      targets[name] = targets[name] + jnp.where(flips[:, j:j + 1], noise, 0.0)
      start += d
    ex['targets'] = targets
  return {**data, 'examples': ex}


def _noisy_labels(y, flip, u_pick, u_sparse, num_classes, protocol):
  """Each flipped label -> another class its client's transition row allows."""
  cols = []
  for t, k in enumerate(num_classes):
    if k < 2:
      cols.append(y[:, t])
      continue
    classes = jnp.arange(k)
    other = classes[None, :] != classes[:, None]                        # [K, K]
    allowed = other & (u_sparse[t, :k, :k] >= protocol.noise_sparsity)
    allowed = jnp.where(jnp.any(allowed, -1, keepdims=True), allowed, other)
    row = allowed[jnp.clip(y[:, t], 0, k - 1)]                          # [N, K]
    count = jnp.sum(row, -1)
    pick = jnp.floor(u_pick[:, t] * count).astype(jnp.int32)            # j-th allowed
    new = jnp.argmax(jnp.cumsum(row, -1) > pick[:, None], -1)
    cols.append(jnp.where(flip[:, t], new, y[:, t]).astype(y.dtype))
  return jnp.stack(cols, 1)


KEY = 'robustness/key'   # source key: uint32 key data of the clients' corruption draws


def contribute(protocol, run):
  """The protocol on a v1 or recorded source (`data.robustness`): a problem wrapper
  drawing each client's corruptions from the seed's key in the run's source."""
  protocol = protocol if isinstance(protocol, Robustness) else Robustness(**dict(protocol))
  protocol.check()
  if not protocol.active:
    return Contribution('robustness')
  if getattr(run.spec, 'robustness', None) is not None:
    raise ConfigError('data.robustness with data.source=world: the primitives world applies '
                      'its own protocol, set data.world.robustness instead')
  spec = run.spec

  def wrap(problem):
    def client_data(source, client_id, split, round_idx=0):
      data = problem.client_data(source, client_id, split, round_idx)
      key = client_key(jax.random.wrap_key_data(source[KEY]), client_id)
      return apply(data, key, protocol, tuple(spec.num_classes), tuple(spec.modalities),
                   split)
    return problem._replace(client_data=client_data)

  def arrays(seed: int) -> dict:
    key = rng.stream(jax.random.key(seed), STREAM)
    return {KEY: jax.device_get(jax.random.key_data(key))}

  return Contribution('robustness', wrap_problem=wrap, source_arrays=arrays)
