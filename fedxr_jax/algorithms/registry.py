"""Algorithms by name (`--config.algorithm.name`)."""
import difflib

from fedxr_jax.algorithms.fedavg import fedavg
from fedxr_jax.algorithms.fedprox import fedprox
from fedxr_jax.algorithms.scaffold import scaffold
from fedxr_jax.errors import ConfigError

ALGORITHMS = {'fedavg': fedavg, 'fedprox': fedprox, 'scaffold': scaffold}


def make_algorithm(name: str, config):
  if name not in ALGORITHMS:
    close = difflib.get_close_matches(name, ALGORITHMS, n=1)
    hint = f' (did you mean {close[0]!r}?)' if close else ''
    raise ConfigError(f'unknown algorithm {name!r}{hint}; known: {sorted(ALGORITHMS)} '
                      '(others of the algorithms issue are not supported yet)')
  return ALGORITHMS[name](config)
