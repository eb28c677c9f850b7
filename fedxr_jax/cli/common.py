"""What the absl entry points share: one-line errors for config-file problems."""
import os
import sys

from fedxr_jax.errors import FedXRError

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(__file__)),
                              'configs', 'default.py')


def check_config_file(argv, default: str = DEFAULT_CONFIG) -> None:
  """Fails early, in one line, on a missing or unparsable --config file."""
  path = default
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      path = arg.split('=', 1)[1]
    elif arg == '--config' and i + 1 < len(argv):
      path = argv[i + 1]
  path = path.split(':', 1)[0]  # ml_collections allows FILE:ARG
  if not os.path.isfile(path):
    raise FedXRError(f'config file {path!r} does not exist')
  try:
    with open(path) as f:
      compile(f.read(), path, 'exec')
  except (OSError, SyntaxError, ValueError) as e:
    raise FedXRError(f'config file {path!r} cannot be read: {type(e).__name__}: {e}')


def config_error(e: Exception) -> str:
  """One line for an exception raised while loading or overriding a config."""
  overrides = [a for a in sys.argv[1:] if a.startswith('--config')]
  if isinstance(e, (KeyError, AttributeError)):
    key = str(e).strip('"\'')
    return f'unknown config key {key!r} in {overrides}'
  while e.__cause__ or e.__context__:
    e = e.__cause__ or e.__context__
  detail = ' '.join(str(e).split())
  return f'cannot load the config: {type(e).__name__}: {detail}'


def fail(program: str, message: str, code: int = 2):
  print(f'{program}: error: {message}', file=sys.stderr)
  sys.exit(code)
