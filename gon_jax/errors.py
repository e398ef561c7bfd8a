"""Errors that are the user's input, not a bug, and how entry points report them:
one line on stderr and a non-zero exit code, never a traceback."""

import difflib
import os
import re
import runpy
import sys
import traceback
from typing import Any, Callable

from absl import flags


class ConfigError(ValueError):
  """A config value that cannot work; str(err) is one line for the user."""


class DataError(ValueError):
  """Bad data input; str(err) is one clear line for the user."""


def check_choice(key: str, value: str, valid) -> None:
  """Raises ConfigError (`unknown KEY 'VALUE'; valid: ...`) unless `value` is in `valid`."""
  if value not in valid:
    raise ConfigError(f'unknown {key} {value!r}; valid: {", ".join(valid)}')


# Caught by the entry points: printed as `error: ...`, exit code 1.
USER_ERRORS = (ConfigError, DataError, FileNotFoundError)


class RunStopped(Exception):
  """Training stopped early on purpose; str(err) is one line, `exit_code` the process status."""

  def __init__(self, message: str, exit_code: int):
    super().__init__(message)
    self.exit_code = exit_code


class Diverged(RunStopped):
  """Training stopped at step `step` on a non-finite loss or gradient (`nonfinite='stop'`)."""

  def __init__(self, message: str, step: int):
    super().__init__(message, 1)
    self.step = step


def run_reporting_errors(fn: Callable[..., Any], *args: Any) -> Any:
  """`fn(*args)`; a user error or a stopped run becomes one line on stderr and an exit."""
  try:
    return fn(*args)
  except USER_ERRORS as err:
    print(f'error: {err}', file=sys.stderr)
    sys.exit(1)
  except RunStopped as err:
    print(f'stopped: {err}', file=sys.stderr)
    sys.exit(err.exit_code)


def parse_flags_or_exit(argv: list[str]) -> list[str]:
  """absl's flag parsing (app.run's flags_parser), with a bad flag (an unknown
  config key, a value of the wrong type, a config file that is missing or
  fails to load) reported as one `error:` line, exit 1."""
  config_files = _config_files(argv)
  # A missing file only fails where the config is first used (ml_collections
  # defers the error), often deep in main: check it first.
  message = next(filter(None, map(_missing_config_file, config_files.values())), None)
  if message is None:
    try:
      return flags.FLAGS(argv)
    except Exception as err:  # pylint: disable=broad-except  # reported below, or raised again
      # Loading the config file runs user code, which can raise anything, and
      # ml_collections rewraps some of it: load it again alone to tell.
      message = next(filter(None, (_load_config(path)[1] for path in config_files.values())),
                     None)
      if message is None and isinstance(err, flags.Error):
        message = ' '.join(str(err).split())
      if message is None:  # ml_collections on an override of a key the config lacks
        message = _unknown_key_message(argv, config_files, err)
      if message is None:
        raise
  print(f'error: {message}', file=sys.stderr)
  sys.exit(1)


def _config_files(argv: list[str]) -> dict[str, str]:
  """`{flag name: path}` of the config-file flags (ml_collections) given in `argv`."""
  found = {}
  args = argv[1:argv.index('--')] if '--' in argv else argv[1:]
  for i, arg in enumerate(args):
    name, equals, value = arg.lstrip('-').partition('=')
    if not arg.startswith('-') or name not in flags.FLAGS:
      continue
    if type(flags.FLAGS[name].parser).__name__ != 'ConfigFileFlagParser':
      continue  # config_flags' parser class is not public API; its name is stable
    if not equals:
      if i + 1 == len(args):
        continue  # absl reports the missing value
      value = args[i + 1]
    found[name] = value
  return found


def _missing_config_file(path: str) -> str | None:
  """Why the config file `path` (`FILE` or `FILE:ARGUMENT`) cannot be read, or None."""
  file = path.split(':', 1)[0]
  if os.path.isfile(file):
    return None
  if not file:
    return 'the config file path is empty'
  state = 'is a folder, not a config file' if os.path.isdir(file) else 'not found'
  folder, names = os.path.dirname(file), []
  if os.path.isdir(folder or '.'):
    names = _config_names(folder)
  if not names and os.path.isdir('configs'):  # e.g. `--config conv_mnist.py` from the repo root
    folder, names = 'configs', _config_names('configs')
  close = difflib.get_close_matches(os.path.basename(file.rstrip('/')), names, n=1)
  hint = f' (did you mean {os.path.join(folder, close[0])}?)' if close else ''
  listing = f'; configs in {folder or "."}/: {", ".join(names)}' if names else ''
  return f'config file {file} {state}{hint}{listing}'


def _config_names(folder: str) -> list[str]:
  """The .py files in `folder` that define get_config(), sorted."""
  names = []
  for name in sorted(os.listdir(folder or '.')):
    path = os.path.join(folder, name)
    if name.endswith('.py') and os.path.isfile(path):
      with open(path, encoding='utf-8', errors='replace') as f:
        if 'def get_config(' in f.read():
          names.append(name)
  return names


def _load_config(path: str) -> tuple[Any, str | None]:
  """`(config, None)` from the config file `path` (`FILE` or `FILE:ARGUMENT`) as
  ml_collections loads it, or `(None, one line saying why it fails)`."""
  file, *argument = path.split(':', 1)
  try:
    get_config = runpy.run_path(file).get('get_config')
    if get_config is None:
      return None, f'config file {file} defines no get_config()'
    return get_config(*argument), None
  except Exception as err:  # pylint: disable=broad-except  # user code: any error is the user's
    # Where: the innermost line in the config's folder (the file, or a module it imports).
    folder = os.path.dirname(os.path.abspath(file))
    if isinstance(err, SyntaxError):
      lines = [(err.filename, err.lineno)] if err.filename and err.lineno else []
      reason = f'SyntaxError: {err.msg}'  # str(err) would add the full path
    else:
      lines = [(frame.filename, frame.lineno) for frame in traceback.extract_tb(err.__traceback__)
               if os.path.dirname(os.path.abspath(frame.filename)) == folder]
      reason = f'{type(err).__name__}: {err}'
    if lines:
      filename, lineno = lines[-1]
      named = '' if os.path.abspath(filename) == os.path.abspath(file) else (
          f'{os.path.basename(filename)} ')
      reason += f' ({named}line {lineno})'
    return None, ' '.join(f'config file {file} failed to load: {reason}'.split())


# Keys that moved to config.performance (gon_jax.config) with the redesign of 2026-11.
_MOVED_KEYS = {
    'scan_chunk': 'performance.scan_chunk',
    'remat': 'performance.remat',
    'cpu_ynn_fusions': 'performance.cpu_ynn_fusions',
    'gon.shared_origin': 'performance.shared_origin',
    'model.conv_method': 'performance.conv_method',
    'model.factorised': 'performance.factorised',
    'model.fast_sine': 'performance.fast_sine',
}


def _unknown_key_message(argv: list[str], config_files: dict[str, str],
                         err: Exception) -> str | None:
  """Names the override with an unknown key, a close key, and the keys valid in its
  place; None if `err` is not about an unknown key."""
  configs = {}
  for arg in argv[1:]:
    name = arg.lstrip('-').split('=', 1)[0]
    root, *path = name.split('.')
    if not arg.startswith('-') or not path or root not in config_files:
      continue
    if root not in configs:
      configs[root] = _load_config(config_files[root])[0]
    node = configs[root]
    for depth, key in enumerate(path):
      if node is None:
        break  # the config did not load again: ml_collections' message below
      if not hasattr(node, 'keys'):
        return (f'unknown config key {key!r} in --{name}: '
                f'{".".join([root, *path[:depth]])} is a value, not a group of keys')
      if key not in node.keys():
        moved = _MOVED_KEYS.get('.'.join(path[:depth + 1]))
        if moved:
          return (f'config key {".".join(path[:depth + 1])} has moved: use '
                  f'--{root}.{moved} (speed switches live in the performance section)')
        keys = sorted(node.keys())
        close = difflib.get_close_matches(key, keys, n=1)
        hint = f' (did you mean --{".".join([root, *path[:depth], close[0]])}?)' if close else ''
        return f'unknown config key {key!r} in --{name}{hint}; valid there: {", ".join(keys)}'
      node = node[key]
  if not isinstance(err, (AttributeError, KeyError)):
    return None
  # ml_collections' message is a repr, e.g. '\'num_step\'\nDid you mean ...': its first word.
  key = re.search(r'[\w.]+', str(err))
  return f'unknown config key {key.group() if key else str(err)!r}'
