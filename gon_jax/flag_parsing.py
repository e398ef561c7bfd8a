"""The scripts' flag parsing (absl, ml_collections' config files): a bad flag, config
file or override is one `error:` line and exit 1; a packaged config is found by its name."""

import difflib
import os
import re
import runpy
import sys
import traceback
from typing import Any

from absl import flags

from gon_jax import saved_config
from gon_jax.errors import ConfigError

PACKAGED_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs')


def parse_flags_or_exit(argv: list[str], workdir_config: bool = False,
                        starts_runs: bool = False) -> list[str]:
  """absl's flag parsing (app.run's flags_parser), with a bad flag (an unknown
  config key, a value of the wrong type, a config file that is missing or
  fails to load) reported as one `error:` line, exit 1.

  A config file flag's value may name a packaged config (`siren_mnist`,
  `configs/siren_mnist.py` from any folder). With `workdir_config`, a missing
  `--config` is the one `--workdir` recorded (gon_jax.saved_config); `starts_runs`
  (train.py): a --workdir that does not exist yet is a new run's, for which --config is
  asked for.
  """
  argv = resolve_config_names(argv)
  if workdir_config:
    argv = _default_to_workdir_config(argv, starts_runs)
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
  _exit_with_error(message)


def packaged_config(file: str) -> str | None:
  """The path of the packaged config that `file` names (`NAME`, `NAME.py` or
  `configs/NAME.py`) when no such file exists here, else None."""
  folder, base = os.path.split(file)
  if os.path.exists(file) or os.path.basename(folder) not in ('', 'configs'):
    return None
  name = base[:-3] if base.endswith('.py') else base
  path = os.path.join(PACKAGED_CONFIGS, f'{name}.py')
  return path if name and name != '__init__' and os.path.isfile(path) else None


def resolve_config_names(argv: list[str]) -> list[str]:
  """`argv` with each config file flag naming a packaged config given its path."""
  argv = list(argv)
  for name, (index, value) in _config_file_args(argv).items():
    file, colon, argument = value.partition(':')
    path = packaged_config(file)
    if path:
      value = path + colon + argument
      argv[index] = f'--{name}={value}' if argv[index].startswith('-') else value
  return argv


def _default_to_workdir_config(argv: list[str], starts_runs: bool) -> list[str]:
  """`argv` with `--config=<gon_jax/saved_config.py>:WORKDIR` when it has a --workdir
  and no --config, and the workdir has a config.json; else `argv` as it is.

  Without --config, a workdir that does not exist, one without config.json, or a config.json
  that does not load is one `error:` line (with the command line's advice, which
  saved_config's messages leave to their callers), exit 1.
  """
  if 'config' in _config_file_args(argv):
    return argv
  args = argv[1:argv.index('--')] if '--' in argv else argv[1:]
  workdir = next((arg.partition('=')[2] or (args[i + 1] if i + 1 < len(args) else '')
                  for i, arg in enumerate(args)
                  if arg.split('=', 1)[0] in ('--workdir', '-workdir')), None)
  if not workdir:
    return argv  # absl reports the missing flags
  if not os.path.isdir(workdir):
    _exit_with_error(f'no --config given, and workdir {workdir} does not exist: give --config '
                     'NAME_OR_FILE to start a run in it' if starts_runs else
                     f'workdir {workdir} does not exist')
  if not os.path.isfile(saved_config.path(workdir)):
    _exit_with_error(f'no --config given, and {saved_config.path(workdir)} does not exist (it '
                     'is written when training starts): give --config NAME_OR_FILE')
  try:
    saved_config.load(workdir)  # ml_collections would wrap its error in its own words
  except ConfigError as err:
    _exit_with_error(f'{err}; give --config NAME_OR_FILE to use another config')
  return [argv[0], f'--config={os.path.abspath(saved_config.__file__)}:{workdir}', *argv[1:]]


def _exit_with_error(message: str) -> None:
  """Prints `error: message` on stderr, exits 1."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(1)


def _config_file_args(argv: list[str]) -> dict[str, tuple[int, str]]:
  """`{flag name: (index in argv of the argument holding the value, value)}` of the
  config-file flags (ml_collections) given in `argv`."""
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
      found[name] = (i + 2, args[i + 1])
    else:
      found[name] = (i + 1, value)
  return found


def _config_files(argv: list[str]) -> dict[str, str]:
  """`{flag name: value}` of the config-file flags given in `argv`."""
  return {name: value for name, (_, value) in _config_file_args(argv).items()}


def _missing_config_file(path: str) -> str | None:
  """Why the config file `path` (`FILE` or `FILE:ARGUMENT`) cannot be read, or None."""
  file = path.split(':', 1)[0]
  if os.path.isfile(file):
    return None
  if not file:
    return 'the config file path is empty'
  state = 'is a folder, not a config file' if os.path.isdir(file) else 'not found'
  folder = os.path.dirname(file)
  names = _config_names(folder) if folder and os.path.isdir(folder) else []
  if names:
    close = difflib.get_close_matches(os.path.basename(file.rstrip('/')), names, n=1)
    hint = f' (did you mean {os.path.join(folder, close[0])}?)' if close else ''
    return f'config file {file} {state}{hint}; configs in {folder}/: {", ".join(names)}'
  names = [name[:-3] for name in _config_names(PACKAGED_CONFIGS)]
  close = difflib.get_close_matches(os.path.basename(file.rstrip('/')).removesuffix('.py'),
                                    names, n=1)
  hint = f' (did you mean {close[0]}?)' if close else ''
  return f'config file {file} {state}{hint}; packaged configs: {", ".join(names)}'


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
