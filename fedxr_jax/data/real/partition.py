"""Example indices per client: natural users, or a Dirichlet label partition.

Both return a list (one entry per client) of sorted int64 index arrays that
together cover every example exactly once, and are pure functions of their
arguments (the Dirichlet one through a seeded numpy Generator).
"""
import numpy as np

from fedxr_jax.errors import ConfigError

_MAX_DRAWS = 100


def natural(users: np.ndarray) -> list:
  """One client per distinct user id, in increasing id order."""
  order = np.argsort(users, kind='stable')
  _, starts = np.unique(users[order], return_index=True)
  return [np.sort(part) for part in np.split(order, starts[1:])]


def dirichlet(labels: np.ndarray, num_clients: int, alpha: float, seed: int,
              min_size: int = 2) -> list:
  """Each class split over clients in Dir(alpha) proportions.

  Small alpha gives each client few classes. A draw that leaves a client
  with fewer than `min_size` examples (it needs one to train and one to
  test) is redrawn from the same Generator, so the result stays a function
  of the seed.
  """
  if alpha <= 0:
    raise ConfigError(f'dirichlet alpha must be > 0, got {alpha}')
  if num_clients * min_size > len(labels):
    raise ConfigError(f'{len(labels)} examples cannot give {num_clients} clients '
                      f'{min_size} examples each; use fewer clients')
  rng = np.random.default_rng(seed)
  classes = np.unique(labels)
  for _ in range(_MAX_DRAWS):
    parts = [[] for _ in range(num_clients)]
    for k in classes:
      members = rng.permutation(np.flatnonzero(labels == k))
      share = rng.dirichlet(np.full(num_clients, alpha))
      cuts = np.round(np.cumsum(share)[:-1] * len(members)).astype(int)
      for client, chunk in enumerate(np.split(members, cuts)):
        parts[client].append(chunk)
    parts = [np.sort(np.concatenate(p)) for p in parts]
    if min(len(p) for p in parts) >= min_size:
      return parts
  raise ConfigError(f'no Dirichlet(alpha={alpha}) draw in {_MAX_DRAWS} gave each of '
                    f'{num_clients} clients {min_size} examples; raise alpha or use '
                    'fewer clients')
