"""Components built from their own config block: keyword factories by name.

A factory's keyword arguments with defaults are its settings; the
defaults are written once, in the factory, and the config's block for it
is made from them (`settings`), so `make` can pass exactly that block and
refuse a key the factory does not take in one line.
"""
import difflib
import inspect
from typing import Callable, Mapping

from fedxr_jax.errors import ConfigError


def settings(factory: Callable) -> dict:
  """{key: default} of a factory's keyword arguments that have defaults."""
  params = inspect.signature(factory).parameters.values()
  return {p.name: p.default for p in params
          if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is not p.empty}


def pick(registry: Mapping[str, Callable], name: str, where: str) -> Callable:
  """The factory `name`, or one line naming the closest known one."""
  if name not in registry:
    close = difflib.get_close_matches(name, list(registry), n=1)
    hint = f' (did you mean {close[0]!r}?)' if close else ''
    raise ConfigError(f'{where}={name!r} is not one of {sorted(registry)}{hint}')
  return registry[name]


def make(factory: Callable, block, where: str, *args, **context):
  """factory(*args, **context, **block), refusing keys the factory has no setting for."""
  own = dict(block or {})
  unknown = sorted(set(own) - set(settings(factory)))
  if unknown:
    raise ConfigError(f'{where} has no setting(s) {unknown}; known: '
                      f'{sorted(settings(factory))}')
  return factory(*args, **context, **own)
