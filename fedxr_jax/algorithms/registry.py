"""Algorithms by name (`--config.algorithm.name`)."""
import difflib
import inspect

from fedxr_jax.algorithms.ditto import ditto
from fedxr_jax.algorithms.ewc import ewc
from fedxr_jax.algorithms.fedavg import fedavg
from fedxr_jax.algorithms.fedprox import fedprox
from fedxr_jax.algorithms.fedrep import fedrep
from fedxr_jax.algorithms.local_ft import local_ft
from fedxr_jax.algorithms.scaffold import scaffold
from fedxr_jax.algorithms.tap import tap
from fedxr_jax.errors import ConfigError

# FedOpt (FedAvgM, FedAdam, FedYogi) is fedavg with `server_optimizer` set;
# FedPer is fedavg with plan.heads='personal'.
ALGORITHMS = {'fedavg': fedavg, 'fedprox': fedprox, 'scaffold': scaffold,
              'ditto': ditto, 'fedrep': fedrep, 'local_ft': local_ft, 'tap': tap,
              'ewc': ewc}


def make_algorithm(name: str, config, tasks=None):
  """The algorithm `name`; `tasks` (label order) goes to factories that take it."""
  if name not in ALGORITHMS:
    close = difflib.get_close_matches(name, ALGORITHMS, n=1)
    hint = f' (did you mean {close[0]!r}?)' if close else ''
    raise ConfigError(f'unknown algorithm {name!r}{hint}; known: {sorted(ALGORITHMS)}')
  factory = ALGORITHMS[name]
  if tasks is not None and 'tasks' in inspect.signature(factory).parameters:
    return factory(config, tasks=tuple(tasks))
  return factory(config)
