"""Errors that are the user's input, not a bug, and how entry points report them:
one line on stderr and a non-zero exit code, never a traceback."""

import sys
from typing import Any, Callable

import numpy as np


class ConfigError(ValueError):
  """A config value that cannot work; str(err) is one line for the user."""


class DataError(ValueError):
  """Bad data input; str(err) is one clear line for the user."""


class DamagedFileError(DataError):
  """A saved file (a checkpoint step's, a bundle's) whose bytes are not those recorded when it
  was written (gon_jax.file_hashes); str(err) names the file."""


def check_choice(key: str, value: str, valid) -> None:
  """Raises ConfigError (`unknown KEY 'VALUE'; valid: ...`) unless `value` is in `valid`."""
  if value not in valid:
    raise ConfigError(f'unknown {key} {value!r}; valid: {", ".join(valid)}')


def check_count(name: str, value: int) -> None:
  """Raises TypeError unless `value` is an integer (not a bool, not a float such as 64.0),
  ValueError unless it is at least 1; the message names `name`."""
  if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
    raise TypeError(f'{name} must be a positive integer, got {value!r} '
                    f'({type(value).__name__})')
  if value < 1:
    raise ValueError(f'{name} must be a positive integer, got {value}')


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
