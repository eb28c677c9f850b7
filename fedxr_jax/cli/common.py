"""What the absl entry points share: --help, and one-line errors for config problems."""
import os
import re
import sys
import textwrap

from absl import app
from absl import flags
from absl import logging

from fedxr_jax.errors import FedXRError

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(__file__)),
                              'configs', 'default.py')
HELP_FLAGS = ('--help', '-h', '-?', '--helpshort', '--helpfull')

CONFIG_HELP = """\
  --config: the run's config file (ml_collections; default: {default}).
    Other configs: fedxr_jax/configs/test.py (seconds on a CPU),
    fedxr_jax/configs/real/*.py (real datasets), fedxr_jax/configs/scenarios/*.py.
  --config.KEY=VALUE: overrides one key of that config; nested blocks are
    dotted, e.g. --config.num_rounds=100 --config.topology.kind=semi
    --config.client_optimizer.learning_rate=0.05 --config.data.tasks="('gesture',)".
    Every key, its default and what it means is in the config file above; an
    unknown key is an error (with the closest known key)."""


def quiet_logs() -> None:
  """Silences absl logging unless --verbosity is given.

  JAX (backend probing), orbax (every save, its view of a damaged file) log
  through absl; our errors are one line on stderr. --verbosity=0 shows them.
  """
  if not any(a.startswith(('--verbosity', '-v')) for a in sys.argv[1:]):
    logging.set_verbosity(logging.FATAL)


def wants_help(argv) -> bool:
  return any(a in HELP_FLAGS for a in argv)


def print_help(program: str, doc: str, module_name: str, config: bool = True) -> None:
  """The module's docstring, its flags, and (`config`) how --config overrides work."""
  print(doc.strip())
  print(f'\n{program} flags:')
  for flag in sorted(flags.FLAGS.get_flags_for_module(sys.modules[module_name]),
                     key=lambda f: f.name):
    print(textwrap.fill(f'--{flag.name}: {flag.help} (default: {flag.default_as_str})',
                        width=88, initial_indent='  ', subsequent_indent='    '))
  if config:
    print(CONFIG_HELP.format(default=DEFAULT_CONFIG))


def check_config_file(argv, default: str = DEFAULT_CONFIG) -> None:
  """Fails early, in one line, on a missing or unparsable --config file."""
  path = _config_file(argv) if any(a.startswith('--config') and not a.startswith('--config.')
                                   for a in argv) else default
  if not os.path.isfile(path):
    raise FedXRError(f'config file {path!r} does not exist')
  try:
    with open(path) as f:
      compile(f.read(), path, 'exec')
  except (OSError, SyntaxError, ValueError) as e:
    raise FedXRError(f'config file {path!r} cannot be read: {type(e).__name__}: {e}')


def _innermost(e: BaseException) -> BaseException:
  while e.__cause__ or e.__context__:
    e = e.__cause__ or e.__context__
  return e


def _unknown_key(e: BaseException):
  """(key, suggestion or None) of ml_collections' unknown-key errors, else None."""
  for x in (e, _innermost(e)):
    if isinstance(x, AttributeError) and x.args and isinstance(x.args[0], KeyError):
      x = x.args[0]   # ml_collections wraps its KeyError in an AttributeError
    if isinstance(x, KeyError) and x.args and isinstance(x.args[0], str):
      first, *rest = x.args[0].splitlines()
      close = re.search(r'Did you mean "([^"]+)"', ' '.join(rest))
      return first.strip('"\' '), close.group(1) if close else None
  return None


def config_error(e: BaseException) -> str:
  """One line for an exception raised while loading or overriding a config."""
  overrides = [a for a in sys.argv[1:] if a.startswith('--config.')]
  unknown = _unknown_key(e)
  if unknown is not None:
    key, close = unknown
    given = [a.split('=', 1)[0] for a in overrides if re.search(rf'\b{re.escape(key)}\b', a)]
    where = f' in {given[0]}' if given else ''
    moved = moved_key(given[0][len('--config.'):]) if given else None
    close = moved or close
    hint = f" (did you mean {close!r}?)" if close else ''
    return f'unknown config key {key!r}{where}{hint}; see --help or --list_config'
  inner = _innermost(e)
  detail = ' '.join(str(inner).split())
  where = _config_frame(inner)
  return f'cannot load the config{where}: {type(inner).__name__}: {detail}'


def _config_file(argv) -> str:
  path = DEFAULT_CONFIG
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      path = arg.split('=', 1)[1]
    elif arg == '--config' and i + 1 < len(argv):
      path = argv[i + 1]
  return path.split(':', 1)[0]   # ml_collections allows FILE:ARG


def _config_frame(e: BaseException) -> str:
  """' (FILE:LINE)' of the config file's frame where `e` was raised ('' if none)."""
  path = os.path.abspath(_config_file(sys.argv[1:]))
  line = None
  tb = e.__traceback__
  while tb is not None:
    if os.path.abspath(tb.tb_frame.f_code.co_filename) == path:
      line = tb.tb_lineno
    tb = tb.tb_next
  return f' ({path}:{line})' if line is not None else ''


def flat_keys(config) -> list:
  """The dotted keys of a (nested) config."""
  out = []
  for key, value in config.items():
    if hasattr(value, 'items'):
      out += [f'{key}.{k}' for k in flat_keys(value)]
    else:
      out.append(key)
  return out


def moved_key(dotted: str):
  """The key of the default config with the same last part (a block moved it): the one
  sharing the most leading parts, e.g. topology.gamma -> topology.semi.gamma."""
  from fedxr_jax.configs import default   # pylint: disable=import-outside-toplevel
  leaf, parts = dotted.split('.')[-1], dotted.split('.')
  same = [k for k in flat_keys(default.get_config()) if k.split('.')[-1] == leaf]
  if not same:
    return None
  shared = lambda k: next((i for i, (a, b) in enumerate(zip(k.split('.'), parts)) if a != b),
                          min(len(parts), len(k.split('.'))))
  return max(same, key=lambda k: (shared(k), -len(k)))


def list_config(config, config_file: str) -> None:
  """Every key of `config` with its value, block by block, with what documents it."""
  from fedxr_jax.configs import blocks   # pylint: disable=import-outside-toplevel
  described = blocks.describe()
  print(f'# {config_file}: every key, its value (with overrides), and where its default lives')
  for key in config.keys():
    comment, sources = described.get(key, ('', []))
    value = config[key]
    if hasattr(value, 'items'):
      print(f'\n[{key}]' + (f'  # {comment}' if comment else ''))
      for source in sources:
        print(f'  # defaults: {source}')
      for sub in flat_keys(value):
        leaf = value
        for part in sub.split('.'):
          leaf = leaf[part]
        print(f'{key}.{sub} = {leaf!r}')
    else:
      print(f'{key} = {value!r}' + (f'  # {comment}' if comment else ''))


def fail(program: str, message: str, code: int = 2):
  print(f'{program}: error: {" ".join(str(message).split())}', file=sys.stderr)
  sys.exit(code)


def fail_now(program: str, message: str, code: int = 2):
  """`fail` from any thread, when the main one cannot unwind (blocked in a runtime)."""
  print(f'{program}: error: {" ".join(str(message).split())}', file=sys.stderr, flush=True)
  os._exit(code)


def entry(program: str, doc: str, module_name: str, main) -> None:
  """The entry point of a CLI without --config: --help (exit 0), flag errors in one line."""
  if wants_help(sys.argv[1:]):
    print_help(program, doc, module_name, config=False)
    sys.exit(0)
  try:
    remaining = flags.FLAGS(sys.argv)
  except flags.Error as e:
    fail(program, str(e))
  app.run(main, flags_parser=lambda _: remaining)


def config_entry(program: str, doc: str, module_name: str, define_config_flag, main) -> None:
  """The entry point of a CLI with a --config flag: --help, then flags parsed into one line.

  Flags are parsed here, not in app.run, so flag and config errors (an unknown
  key, a bad value, a missing or broken config file) become one line.
  """
  if wants_help(sys.argv[1:]):
    print_help(program, doc, module_name)
    sys.exit(0)
  try:
    check_config_file(sys.argv[1:])
    define_config_flag()
    remaining = flags.FLAGS(sys.argv)
  except (FedXRError, flags.Error) as e:
    fail(program, str(e))
  except Exception as e:  # pylint: disable=broad-except
    fail(program, config_error(e))
  app.run(main, flags_parser=lambda _: remaining)
