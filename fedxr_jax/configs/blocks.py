"""Config blocks read from the components' own defaults, without importing them.

Every default is written once, where the component is: a dataclass's field
defaults or a factory's keyword defaults. A config file must load fast and
without jax, so this module reads those defaults from the source files
(`ast`), never by importing the modules (which import jax):

  dataclass_block('fedxr_jax.topology.channel', 'Channel')
  function_block('fedxr_jax.algorithms.fedprox', 'fedprox')
  registry_block('fedxr_jax.algorithms.registry', 'ALGORITHMS')  # {name: its settings}

A registry is a module-level dict literal of name -> factory, the factory
imported (`from m import f`, `import m` + `m.f`) or defined in the registry
module. A default must be a literal (numbers, strings, booleans, None,
tuples) or a dataclass of the same kind (`field: Sub = Sub()`).
tests/test_config_blocks.py checks each block against the imported
components' own defaults.
"""
import ast
import functools
import os
from typing import Optional, Sequence

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # .../fedxr_jax


@functools.lru_cache(maxsize=None)
def _parse(module: str) -> ast.Module:
  parts = module.split('.')
  if parts[0] != 'fedxr_jax':
    raise ValueError(f'{module} is not a fedxr_jax module')
  path = os.path.join(_ROOT, *parts[1:]) + '.py'
  if not os.path.exists(path):
    path = os.path.join(_ROOT, *parts[1:], '__init__.py')
  with open(path) as f:
    return ast.parse(f.read(), path)


def _top(module: str, name: str):
  """The module-level def / class / assignment named `name` (None: none)."""
  for node in _parse(module).body:
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
      return node
    if isinstance(node, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == name for t in node.targets):
      return node
  return None


def _imported(module: str, name: str) -> Optional[tuple]:
  """(module, attribute) that `name` refers to in `module` through its imports."""
  for node in _parse(module).body:
    if isinstance(node, ast.ImportFrom) and node.level == 0:
      for alias in node.names:
        if (alias.asname or alias.name) == name:
          sub = f'{node.module}.{alias.name}'
          return (sub, None) if _is_module(sub) else (node.module, alias.name)
    if isinstance(node, ast.Import):
      for alias in node.names:
        if (alias.asname or alias.name.split('.')[0]) == name:
          return alias.name, None
  return None


def _is_module(name: str) -> bool:
  parts = name.split('.')
  if parts[0] != 'fedxr_jax':
    return False
  base = os.path.join(_ROOT, *parts[1:])
  return os.path.exists(base + '.py') or os.path.exists(os.path.join(base, '__init__.py'))


def _resolve(module: str, expr) -> tuple:
  """(module, name) of the definition `expr` (a Name or module.attr) points at."""
  if isinstance(expr, ast.Name):
    if _top(module, expr.id) is not None:
      return module, expr.id
    target = _imported(module, expr.id)
    if target is None or target[1] is None:
      raise ValueError(f'{module}: cannot resolve {expr.id}')
    return _resolve(target[0], ast.Name(target[1]))
  if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
    target = _imported(module, expr.value.id)
    if target is None:
      raise ValueError(f'{module}: cannot resolve {ast.unparse(expr)}')
    inner = target[0] if target[1] is None else f'{target[0]}.{target[1]}'
    return _resolve(inner, ast.Name(expr.attr))
  raise ValueError(f'{module}: {ast.unparse(expr)} is not a name')


def _value(module: str, node):
  """A default's value: a literal, or a dataclass instance (as its block)."""
  if isinstance(node, ast.Call) and not node.args and not node.keywords:
    where, name = _resolve(module, node.func)
    return dataclass_block(where, name)
  return ast.literal_eval(node)


def dataclass_block(module: str, name: str, exclude: Sequence[str] = ()) -> dict:
  """{field: default} of a dataclass (fields without a default are left out).

  `exclude`: fields that are not settings (filled by the code); 'a.b' names a
  field of the nested block 'a'.
  """
  node = _top(module, name)
  if not isinstance(node, ast.ClassDef):
    raise ValueError(f'{module}.{name} is not a class')
  out = {}
  for item in node.body:
    if (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
        and item.value is not None and item.target.id not in exclude
        and not item.target.id.startswith('_')):
      out[item.target.id] = _value(module, item.value)
  for dotted in exclude:
    block, _, field = dotted.partition('.')
    if field and isinstance(out.get(block), dict):
      out[block].pop(field, None)
  return out


def function_block(module: str, name: str) -> dict:
  """{keyword: default} of a function's arguments that have defaults."""
  node = _top(module, name)
  if not isinstance(node, ast.FunctionDef):
    raise ValueError(f'{module}.{name} is not a function')
  args = node.args
  out = {}
  positional = args.posonlyargs + args.args
  for arg, default in zip(positional[len(positional) - len(args.defaults):], args.defaults):
    out[arg.arg] = _value(module, default)
  for arg, default in zip(args.kwonlyargs, args.kw_defaults):
    if default is not None:
      out[arg.arg] = _value(module, default)
  return out


def registry_names(module: str, table: str) -> tuple:
  """The names of a registry dict literal, in order."""
  node = _top(module, table)
  if node is None or not isinstance(node.value, ast.Dict):
    raise ValueError(f'{module}.{table} is not a dict literal')
  return tuple(ast.literal_eval(k) for k in node.value.keys)


def registry_block(module: str, table: str) -> dict:
  """{name: that factory's settings} of a registry dict literal (name -> factory)."""
  node = _top(module, table)
  if node is None or not isinstance(node.value, ast.Dict):
    raise ValueError(f'{module}.{table} is not a dict literal')
  out = {}
  for key, value in zip(node.value.keys, node.value.values):
    where, name = _resolve(module, value)
    kind = _top(where, name)
    out[ast.literal_eval(key)] = (dataclass_block(where, name) if isinstance(kind, ast.ClassDef)
                                  else function_block(where, name))
  return out


def optimizer_block(role: str, name: str, learning_rate: float) -> dict:
  """A `<role>_optimizer` block: the chosen name and rate, and every entry's settings."""
  table = registry_block('fedxr_jax.compose.optimizers', 'OPTIMIZERS')
  block = {'name': name, 'learning_rate': learning_rate,
           **{n: settings for (r, n), settings in table.items() if r == role}}
  if role == 'client':   # the rate over the rounds (core/lr_schedule.py; rounds 0: num_rounds)
    block['schedule'] = dataclass_block('fedxr_jax.core.lr_schedule', 'Schedule')
  return block


def describe(config_module: str = 'fedxr_jax.configs.default') -> dict:
  """{top-level key: (comment above its assignment, [where its defaults come from])}.

  Read from the config file's source: the comment lines just above
  `config.KEY = ...` and the components its `*_block(...)` calls name.
  """
  tree = _parse(config_module)
  parts = config_module.split('.')
  with open(os.path.join(_ROOT, *parts[1:]) + '.py') as f:
    lines = f.read().splitlines()
  out = {}
  for node in ast.walk(tree):
    if not (isinstance(node, ast.Assign) and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Attribute)
            and isinstance(node.targets[0].value, ast.Name)
            and node.targets[0].value.id == 'config'):
      continue
    comment, i = [], node.lineno - 2
    while i >= 0 and lines[i].strip().startswith('#'):
      comment.insert(0, lines[i].strip().lstrip('#').strip())
      i -= 1
    sources = []
    for call in ast.walk(node.value):
      if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
          and call.func.attr.endswith('_block') and len(call.args) >= 2
          and all(isinstance(a, ast.Constant) for a in call.args[:2])):
        sources.append(f'{call.args[0].value}.{call.args[1].value}')
      elif (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
            and call.func.id == '_with_name' and len(call.args) == 3):
        sources.append(f'{call.args[1].value}.{call.args[2].value}')
    out[node.targets[0].attr] = (' '.join(comment), sources)
  return out
