"""Errors that are the user's input, not a bug: entry points print them as one line."""


class ConfigError(ValueError):
  """A config value that cannot work; str(err) is one line for the user."""


class DataError(ValueError):
  """Bad data input; str(err) is one clear line for the user."""


# Caught by the entry points: printed as `error: ...`, exit code 1.
USER_ERRORS = (ConfigError, DataError, FileNotFoundError)
