"""The package's imports flow one way: no upward import, no cycle."""
import ast
import os

import networkx as nx

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       'fedxr_jax')
# Lower layers never import higher ones. Within a layer, subpackages may
# import each other as long as the module graph stays acyclic.
LAYERS = [
    ('errors',),
    ('core',),
    ('models', 'data'),
    ('algorithms', 'topology', 'transforms', 'aggregators', 'privacy', 'attacks', 'metrics'),
    ('compose',),
    ('evaluation',),
    ('training',),
    ('configs',),
    ('bench', 'cli'),
]
# models imports nothing of the package but its errors and core's registry helpers.
SELF_CONTAINED = {'models': ('errors', 'core')}


def _layer(subpackage: str) -> int:
  for i, names in enumerate(LAYERS):
    if subpackage in names:
      return i
  raise AssertionError(f'fedxr_jax.{subpackage} is in no layer of tests/test_imports.py')


def module_graph() -> nx.DiGraph:
  """Module -> module edges of every `fedxr_jax` import, at any depth in a file."""
  graph, modules = nx.DiGraph(), _modules()
  for root, _, files in os.walk(PACKAGE):
    for name in files:
      if not name.endswith('.py'):
        continue
      path = os.path.join(root, name)
      rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, '.')
      module = rel[:-len('.__init__')] if rel.endswith('.__init__') else rel
      graph.add_node(module)
      for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
          targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
          # `from pkg import mod` imports pkg.mod; `from mod import name`, mod.
          subs = [f'{node.module}.{a.name}' for a in node.names]
          targets = [t for t in subs if t in modules] or [node.module]
        else:
          continue
        for target in targets:
          if target.startswith('fedxr_jax.'):
            graph.add_edge(module, target)
  return graph.subgraph([n for n in graph if n in modules]).copy()


def _modules() -> set:
  out = set()
  for root, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith('.py'):
        rel = os.path.relpath(os.path.join(root, name), os.path.dirname(PACKAGE))
        mod = rel[:-3].replace(os.sep, '.')
        out.add(mod[:-len('.__init__')] if mod.endswith('.__init__') else mod)
  return out


def _subpackage(module: str) -> str:
  parts = module.split('.')
  return parts[1] if len(parts) > 1 else ''


def test_no_upward_imports():
  bad = []
  for a, b in module_graph().edges:
    sa, sb = _subpackage(a), _subpackage(b)
    if not sa or sa == sb:
      continue   # the package root re-exports; a subpackage may import itself
    if not sb:
      bad.append(f'{a} -> {b} (the package root)')
    elif sa in SELF_CONTAINED and sb not in SELF_CONTAINED[sa]:
      bad.append(f'{a} -> {b} ({sa} imports only {SELF_CONTAINED[sa]} of the package)')
    elif _layer(sb) > _layer(sa):
      bad.append(f'{a} -> {b}')
  assert not bad, 'upward imports:\n' + '\n'.join(bad)


def test_no_import_cycles():
  graph = module_graph()
  graph.remove_nodes_from([n for n in list(graph) if n == 'fedxr_jax'])
  cycles = list(nx.simple_cycles(graph))
  assert not cycles, f'import cycles: {cycles[:5]}'


def test_subpackage_graph_is_acyclic():
  """Between subpackages too (core <-> topology was one)."""
  sub = nx.DiGraph()
  for a, b in module_graph().edges:
    sa, sb = _subpackage(a), _subpackage(b)
    if sa and sb and sa != sb:
      sub.add_edge(sa, sb)
  assert nx.is_directed_acyclic_graph(sub), list(nx.simple_cycles(sub))


def layer_table() -> str:
  """The subpackage import graph, for BUILD_NOTES.md."""
  sub = {}
  for a, b in module_graph().edges:
    sa, sb = _subpackage(a), _subpackage(b)
    if sa and sb and sa != sb:
      sub.setdefault(sa, set()).add(sb)
  return '\n'.join(f'{k} -> {", ".join(sorted(v))}' for k, v in sorted(sub.items()))


if __name__ == '__main__':
  print(layer_table())
