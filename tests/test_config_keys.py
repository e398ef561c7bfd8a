"""Every config key the code reads has a default, and every packaged config loads,
validates and round-trips through the workdir's config.json."""

import ast
import pathlib

import ml_collections
import pytest

from gon_jax import models, saved_config
from gon_jax.config import base_config, to_settings, validate
from gon_jax.errors import ConfigError
from gon_jax.flag_parsing import PACKAGED_CONFIGS, packaged_config

from testing_utils import REPO

CONFIG_NAMES = sorted(p.stem for p in pathlib.Path(PACKAGED_CONFIGS).glob('*.py')
                      if p.stem != '__init__')
# Code that reads configs: the package, the scripts and the benchmarks.
SOURCES = sorted([*(REPO / 'gon_jax').rglob('*.py'), *(REPO / 'benchmarks').glob('*.py'),
                  *(REPO / 'scripts').glob('*.py'), REPO / 'train.py', REPO / 'eval.py'])
_METHODS = set(dir(ml_collections.ConfigDict()))  # get, items, to_dict, ...


def _config_reads(tree: ast.AST) -> set[tuple[str, ...]]:
  """Key paths read as `config.a.b` (or `self.config.a.b`): ('a', 'b')."""
  reads = set()
  for node in ast.walk(tree):
    if (not isinstance(node, ast.Attribute) or isinstance(node.ctx, ast.Store)
        or isinstance(getattr(node, 'parent', None), ast.Attribute)):
      continue  # a read is the whole chain: its outermost attribute, not being set
    chain, inner = [], node
    while isinstance(inner, ast.Attribute):
      chain.append(inner.attr)
      inner = inner.value
    chain.reverse()
    if isinstance(inner, ast.Name) and inner.id == 'config':
      path = chain
    elif isinstance(inner, ast.Name) and inner.id == 'self' and chain[:1] == ['config']:
      path = chain[1:]
    else:
      continue
    if path:
      reads.add(tuple(path))
  return reads


def _parse_with_parents(path: pathlib.Path) -> ast.AST:
  tree = ast.parse(path.read_text())
  for node in ast.walk(tree):
    for child in ast.iter_child_nodes(node):
      child.parent = node
  return tree


def _has_default(path: tuple[str, ...], defaults: list[ml_collections.ConfigDict]) -> bool:
  """Whether `path` is a key of one of `defaults` (a value's own attributes may follow)."""
  for node in defaults:
    for key in path:
      if not isinstance(node, ml_collections.ConfigDict):
        return True  # an attribute of a value (a str's .split): the key exists
      if key in _METHODS:
        return True
      if key not in node:
        break
      node = node[key]
    else:
      return True
  return False


def test_every_key_the_code_reads_has_a_default():
  defaults = [base_config(name) for name in models.MODELS]
  missing = [f'{path.relative_to(REPO)}: config.{".".join(key)}'
             for path in SOURCES for key in sorted(_config_reads(_parse_with_parents(path)))
             if not _has_default(key, defaults)]
  assert not missing, missing


def test_the_key_scan_finds_reads_and_would_see_a_missing_default():
  tree = _parse_with_parents(REPO / 'gon_jax' / 'config.py')  # to_settings reads them
  reads = _config_reads(tree)
  assert ('elbo_samples',) in reads and ('model', 'name') in reads
  assert not _has_default(('elbo_sample',), [base_config('vgon')])


@pytest.mark.parametrize('name', CONFIG_NAMES)
def test_packaged_config_sets_only_default_keys_validates_and_round_trips(name, tmp_path):
  config = ml_collections.ConfigDict(
      __import__(f'gon_jax.configs.{name}', fromlist=['get_config']).get_config())
  defaults = base_config(config.model.name)

  def keys(node, prefix=''):
    return {k for key, value in node.items() for k in (
        keys(value, f'{prefix}{key}.') if isinstance(value, ml_collections.ConfigDict)
        else [prefix + key])}

  assert keys(config) <= keys(defaults), keys(config) - keys(defaults)
  validate(config)
  saved_config.save(config, str(tmp_path))
  loaded = saved_config.load(str(tmp_path))
  assert loaded.to_dict() == config.to_dict()
  assert type(loaded.model.get('widths', ())) is type(config.model.get('widths', ()))


def test_a_config_json_of_another_version_is_refused(tmp_path):
  config = base_config('conv')
  saved_config.save(config, str(tmp_path))
  text = (tmp_path / 'config.json').read_text().replace('"num_steps"', '"num_stepz"', 1)
  (tmp_path / 'config.json').write_text(text)
  with pytest.raises(ValueError, match='has key gon.num_stepz, which this version of gon_jax'):
    saved_config.load(str(tmp_path))
  (tmp_path / 'config.json').write_text('{"model": ')
  with pytest.raises(ValueError, match='is not a saved gon_jax config'):
    saved_config.load(str(tmp_path))


def test_a_name_is_a_packaged_config_only_where_no_such_file_exists(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  for name in CONFIG_NAMES:
    assert packaged_config(name) == packaged_config(f'configs/{name}.py') == str(
        pathlib.Path(PACKAGED_CONFIGS) / f'{name}.py')
  assert packaged_config('elsewhere/siren_mnist.py') is None  # another folder: not ours
  assert packaged_config('siren_mnsit') is None and packaged_config('__init__') is None
  (tmp_path / 'siren_mnist.py').write_text('')
  assert packaged_config('siren_mnist.py') is None  # the user's own file wins


def test_settings_mirror_the_config_key_for_key():
  config = base_config('vgon')
  settings = to_settings(config)
  assert settings.gon.num_steps == config.gon.num_steps and settings.model_name == 'vgon'
  assert dict(settings.model) == {k: v for k, v in config.model.items() if k != 'name'}
  assert hash(settings) == hash(to_settings(base_config('vgon')))  # by value
  config.gon.extra = 1
  with pytest.raises(ConfigError, match='unknown config key gon.extra'):
    to_settings(config)
  config = base_config('conv')
  del config.data['cache']
  with pytest.raises(ConfigError, match='config key data.cache missing'):
    to_settings(config)
