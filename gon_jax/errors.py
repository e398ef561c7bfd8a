"""Errors that are the user's input, not a bug, and how entry points report them:
one line on stderr and a non-zero exit code, never a traceback."""

import sys
from typing import Any, Callable

from absl import flags


class ConfigError(ValueError):
  """A config value that cannot work; str(err) is one line for the user."""


class DataError(ValueError):
  """Bad data input; str(err) is one clear line for the user."""


# Caught by the entry points: printed as `error: ...`, exit code 1.
USER_ERRORS = (ConfigError, DataError, FileNotFoundError)


class RunStopped(Exception):
  """Training stopped early on purpose; str(err) is one line, `exit_code` the process status."""

  def __init__(self, message: str, exit_code: int):
    super().__init__(message)
    self.exit_code = exit_code


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
  config key, a value of the wrong type) reported as one `error:` line, exit 1."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as err:
    message = ' '.join(str(err).split())
  except (AttributeError, KeyError) as err:  # config_flags on a key the config lacks
    message = _unknown_key_message(argv, str(err).strip('"\''))
  print(f'error: {message}', file=sys.stderr)
  sys.exit(1)


def _unknown_key_message(argv: list[str], key: str) -> str:
  """Names the override with the unknown key and the keys valid in its place."""
  for arg in argv:
    path = arg.lstrip('-').split('=', 1)[0].split('.')
    if len(path) > 1 and key in path[1:]:
      node = _config_from_argv(argv, path[0])
      for part in path[1:path.index(key, 1)]:
        node = node.get(part) if hasattr(node, 'get') else None
      valid = f'; valid there: {", ".join(sorted(node.keys()))}' if hasattr(node, 'keys') else ''
      return f'unknown config key {key!r} in {arg.split("=", 1)[0]}{valid}'
  return f'unknown config key {key!r}'


def _config_from_argv(argv: list[str], name: str) -> Any:
  """The config that `--name FILE` or `--name=FILE` loads, or None."""
  import runpy  # pylint: disable=import-outside-toplevel
  for i, arg in enumerate(argv):
    if arg in (f'--{name}', f'-{name}') and i + 1 < len(argv):
      path = argv[i + 1]
    elif arg.startswith((f'--{name}=', f'-{name}=')):
      path = arg.split('=', 1)[1]
    else:
      continue
    try:
      return runpy.run_path(path.split(':')[0])['get_config']()
    except Exception:  # pylint: disable=broad-except  # only for a better message
      return None
  return None
