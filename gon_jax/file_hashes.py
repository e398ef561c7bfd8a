"""SHA-256 records of saved folders: written with a checkpoint step or a bundle, checked
before either is read, so that a damaged or truncated file is an error naming it, never
parameters that load and give wrong numbers or NaN.

A record is `<folder>/sha256.json`: `{relative path: {'bytes': size, 'sha256': hex}}` of
every file the folder held when it was written.
"""

import hashlib
import json
import os
import pathlib

from gon_jax.errors import DamagedFileError

RECORD = 'sha256.json'


def sha256(path: str | os.PathLike) -> str:
  """The hex SHA-256 of a file's bytes."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def _files(folder: pathlib.Path) -> list[str]:
  """Relative paths (with '/') of the files under `folder`, sorted, the record left out."""
  return sorted(path.relative_to(folder).as_posix() for path in folder.rglob('*')
                if path.is_file() and path.name != RECORD)


def write_record(folder: str | os.PathLike) -> dict[str, dict]:
  """Hashes every file under `folder` and writes `<folder>/sha256.json` atomically.

  Returns:
    `{relative path: {'bytes': size, 'sha256': hex digest}}`, what the record holds.
  """
  folder = pathlib.Path(folder)
  record = {name: {'bytes': (folder / name).stat().st_size, 'sha256': sha256(folder / name)}
            for name in _files(folder)}
  temporary = folder / (RECORD + '.tmp')
  temporary.write_text(json.dumps(record, indent=1, sort_keys=True) + '\n', encoding='utf-8')
  os.replace(temporary, folder / RECORD)
  return record


def has_record(folder: str | os.PathLike) -> bool:
  """Whether `folder` has a record (folders written before records were kept have none)."""
  return (pathlib.Path(folder) / RECORD).is_file()


def check_record(folder: str | os.PathLike, what: str) -> None:
  """Raises DamagedFileError unless every file `<folder>/sha256.json` names is there with its
  recorded size and SHA-256.

  Args:
    folder: a folder written with `write_record`.
    what: what the folder is, for the message ('the checkpoint of step 400', 'bundle').

  Raises:
    DamagedFileError: the record is missing or unreadable, or a file is missing, of another
      size or of other bytes; the message names the file.
  """
  folder = pathlib.Path(folder)
  try:
    record = json.loads((folder / RECORD).read_text(encoding='utf-8'))
    entries = [(name, int(entry['bytes']), str(entry['sha256'])) for name, entry in record.items()]
  except FileNotFoundError:
    raise DamagedFileError(f'{what} in {folder} has no {RECORD}: it was not completely '
                           'written') from None
  except (ValueError, KeyError, TypeError, AttributeError) as err:
    raise DamagedFileError(f'{folder / RECORD} of {what} is damaged ({type(err).__name__})'
                           ) from None
  for name, size, digest in entries:
    path = folder / name
    if not path.is_file():
      raise DamagedFileError(f'{what} is damaged: {path} is missing')
    if path.stat().st_size != size:
      raise DamagedFileError(f'{what} is damaged: {path} has {path.stat().st_size:,} bytes, '
                             f'{size:,} when it was written (truncated?)')
    if sha256(path) != digest:
      raise DamagedFileError(f'{what} is damaged: {path} is not the file that was written '
                             f'(its sha256 differs from {RECORD}\'s)')
