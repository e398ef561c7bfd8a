"""The config a workdir was trained with: `<workdir>/config.json`, written as training starts.

train.py and eval.py read it when no --config is given. They load it as they load
any config file, `--config=<this file>:WORKDIR` (ml_collections calls
`get_config(WORKDIR)`), so `--config.KEY=VALUE` overrides apply to it too.
"""

import json
import os

import ml_collections

from gon_jax.config import base_config
from gon_jax.errors import ConfigError

FILENAME = 'config.json'


def path(workdir: str) -> str:
  return os.path.join(workdir, FILENAME)


def save(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes `config` as `<workdir>/config.json`, atomically (a reader never sees half of it)."""
  os.makedirs(workdir, exist_ok=True)
  temporary = path(workdir) + '.tmp'
  with open(temporary, 'w', encoding='utf-8') as f:
    f.write(config.to_json(indent=2, sort_keys=True) + '\n')
  os.replace(temporary, path(workdir))


def load(workdir: str) -> ml_collections.ConfigDict:
  """The config saved in `workdir`, on `base_config` of its model (so every key keeps its type).

  Raises:
    ConfigError: no config.json, or one that is not a saved gon_jax config.
  """
  file = path(workdir)
  if not os.path.isfile(file):
    raise ConfigError(f'{file} not found: give --config (training writes config.json to the '
                      'workdir as it starts)')
  try:
    with open(file, encoding='utf-8') as f:
      saved = json.load(f)
    config = base_config(saved['model']['name'])
  except (ValueError, KeyError, TypeError) as err:
    raise ConfigError(f'{file} is not a saved gon_jax config ({type(err).__name__}: {err}); '
                      'give --config') from None
  _update(config, saved, file, '')
  return config


def _update(config: ml_collections.ConfigDict, saved: dict, file: str, prefix: str) -> None:
  """Sets `config`'s values from `saved`; JSON's lists become the tuples the defaults hold."""
  for key, value in saved.items():
    if key not in config:
      raise ConfigError(f'{file} has key {prefix}{key}, which this version of gon_jax does '
                        'not know; give --config')
    if isinstance(config[key], ml_collections.ConfigDict):
      _update(config[key], value, file, f'{prefix}{key}.')
    else:
      config[key] = tuple(value) if isinstance(config[key], tuple) else value


def describe(workdir: str) -> str:
  """'<workdir>/config.json (model conv)' if the workdir has a saved config, else ''."""
  try:
    return f'{path(workdir)} (model {load(workdir).model.name!r})'
  except ConfigError:
    return ''


def get_config(workdir: str) -> ml_collections.ConfigDict:
  """ml_collections' entry point: `--config=<this file>:WORKDIR`."""
  return load(workdir)
