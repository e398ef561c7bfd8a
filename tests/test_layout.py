"""The package's layout, read from its source: the import graph has no circle, the command
line sits on top, the config is read at the entry points only, and no file grows past what a
reader takes in at once."""

import ast
import pathlib

from testing_utils import REPO

PACKAGE = REPO / 'gon_jax'
MAX_LINES = 450
# The modules that run a command line through gon_jax.cli (each has a `main`); the library
# below them never imports it.
CLI_USERS = {'gon_jax.encode', 'gon_jax.experiments.superres'}
# The modules that may hold an ml_collections config: the config itself and its files
# (config.py, configs/, flag parsing, config.json as saved in a workdir or a bundle), the
# command line, and the entry points, which unpack it into gon_jax.settings for the modules
# below them (models, objectives, data, parallel, state, checkpoints, generate, ...).
CONFIG_READERS = {
    'gon_jax.config', 'gon_jax.flag_parsing', 'gon_jax.saved_config', 'gon_jax.bundles',
    'gon_jax.cli', 'gon_jax.train', 'gon_jax.evaluate', 'gon_jax.model', 'gon_jax.encode',
    'gon_jax.export', 'gon_jax.demo', 'gon_jax.sample_quality', 'gon_jax.experiments.compare',
    'gon_jax.experiments.methods', 'gon_jax.experiments.superres'}


def _module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(REPO).with_suffix('').parts)
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob('*.py'))}


def imports_of(name: str) -> set[str]:
  """The gon_jax modules that module `name` imports anywhere in its file (at the top or
  inside a function): `from gon_jax.pkg import sub` counts as importing the module `sub`
  when it is one, else `gon_jax.pkg`."""
  path = MODULES[name]
  package = name if path.name == '__init__.py' else name.rpartition('.')[0]
  found = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:  # relative: up from this module's package
        parent = package.split('.')[:len(package.split('.')) - node.level + 1]
        base = '.'.join(parent + ([base] if base else []))
      found.update(f'{base}.{alias.name}' if f'{base}.{alias.name}' in MODULES else base
                   for alias in node.names)
  return {module for module in found if module in MODULES and module != name}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components of more than one module (Tarjan): each holds a
  circle of imports."""
  index, low, stack, found = {}, {}, [], []

  def visit(module):
    index[module] = low[module] = len(index)
    stack.append(module)
    for other in sorted(graph[module]):
      if other not in index:
        visit(other)
        low[module] = min(low[module], low[other])
      elif other in stack:
        low[module] = min(low[module], index[other])
    if low[module] == index[module]:
      component = stack[stack.index(module):]
      del stack[stack.index(module):]
      if len(component) > 1:
        found.append(sorted(component))

  for module in sorted(graph):
    if module not in index:
      visit(module)
  return found


def test_the_circle_finder_finds_a_circle_and_passes_a_tree():
  assert circles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
  assert circles({'a': {'b', 'c'}, 'b': {'c'}, 'c': set()}) == []


def test_no_module_of_gon_jax_imports_itself_round_a_circle():
  graph = {name: imports_of(name) for name in MODULES}
  assert graph['gon_jax.cli'] >= {'gon_jax.train', 'gon_jax.evaluate'}  # the graph is read
  assert circles(graph) == []


def test_the_command_line_sits_on_top():
  importers = {name for name in MODULES if 'gon_jax.cli' in imports_of(name)}
  assert importers == CLI_USERS


def _imports_ml_collections(path: pathlib.Path) -> bool:
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
             [node.module or ''] if isinstance(node, ast.ImportFrom) else [])
    if any(name.split('.')[0] == 'ml_collections' for name in names):
      return True
  return False


def test_only_the_config_layer_and_the_entry_points_import_ml_collections():
  importers = {name for name, path in MODULES.items() if _imports_ml_collections(path)}
  configs = {name for name in importers if name.startswith('gon_jax.configs.')}
  assert configs and importers - configs <= CONFIG_READERS, sorted(importers - configs
                                                                    - CONFIG_READERS)
  for below in ('gon_jax.models', 'gon_jax.objectives', 'gon_jax.data', 'gon_jax.parallel',
                'gon_jax.state', 'gon_jax.checkpoints', 'gon_jax.generate'):
    assert not {name for name in importers if name.split('.')[:2] == below.split('.')}


def test_no_file_of_gon_jax_is_longer_than_a_reader_takes_in():
  lengths = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
  assert max(lengths.values()) > 100  # the files were read
  assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}
