"""The decoded cache: the decoded splits of the file sources kept on disk as .npy files, which
later runs memory-map instead of decoding again (decoded_cache_dir; data.cache=False skips it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import socket
import stat
import sys
from typing import Callable

import numpy as np

from gon_jax import download
from gon_jax.data.file_format import _Request
from gon_jax.errors import DataError

# The decoded cache: one folder per split, image size and channels, named
# <source>-<split>-<size>-<where>-<key>, holding images.npy (uint8 [N, S, S, C], memory-mapped
# when read) and labels.npy (int32 [N]). <key> hashes what the arrays are made of
# (_split_key); <where> the folder, split, size and channels alone, so that a new entry
# replaces the stale one. Raise _CACHE_VERSION when the decoding changes: every entry is then
# stale.
_CACHE_VERSION = 1


def decoded_cache_dir() -> pathlib.Path:
  """The folder of the decoded cache: $XDG_CACHE_HOME/gon_jax/decoded, else
  ~/.cache/gon_jax/decoded (beside the downloaded sets; delete it to clear the cache)."""
  return download.cache_dir('decoded')


def _key_files(paths: list[pathlib.Path]) -> list[list]:
  """[absolute path, size, mtime in ns] of each file, a folder standing for the files below it."""
  files = []
  for path in paths:
    info = os.stat(path)
    if stat.S_ISDIR(info.st_mode):
      files += _key_files(sorted(pathlib.Path(top, name) for top, _, names in os.walk(path)
                                 for name in names))
    else:
      files.append([os.path.abspath(path), info.st_size, info.st_mtime_ns])
  return files


def _split_key(source: str, request: _Request) -> str:
  """The hash of what a split is made of: its files (paths, sizes, modification times) in the
  split's order (the order of the entry's rows: another order of the same files, as the folder
  source's round robin across classes, is another entry), the source, the split, the image
  size, the channels, the class names and _CACHE_VERSION."""
  made_of = dict(version=_CACHE_VERSION, source=source, split=request.split,
                 image_size=request.image_size, channels=request.channels,
                 classes=request.classes, files=_key_files(request.paths))
  return hashlib.sha256(json.dumps(made_of).encode('utf-8')).hexdigest()


class _CacheUnwritable(Exception):
  """The decoded cache cannot be written (full disk, read-only folder): read without it."""


def _cached_split(source: str, request: _Request, key: str,
                  read: Callable[[_Request], tuple[np.ndarray, np.ndarray]]
                  ) -> tuple[np.ndarray, np.ndarray]:
  """`read(request)` through the decoded cache: its memory-mapped entry, written first if missing.

  `read` is the source's read of the split (gon_jax.data.sources._read_split of its format):
  (uint8 images [N, S, S, C], int32 labels [N]), read-only; `key` is _split_key's.

  An entry is decoded straight into a temporary folder's file, then renamed into place: a
  reader sees a whole entry or none. A cache that cannot be written is warned about and skipped.
  """
  root = decoded_cache_dir()
  where = hashlib.sha256(json.dumps([os.path.abspath(request.folder), request.split,
                                     request.image_size, request.channels]).encode()).hexdigest()
  prefix = f"{source}-{request.split}-{request.image_size or 'full'}-{where[:8]}"
  entry = root / f'{prefix}-{key[:16]}'
  found = _open_entry(entry)
  if found is not None:
    return found
  temporary = root / f'.{entry.name}.{socket.gethostname()}.{os.getpid()}.tmp'

  def allocate(shape: tuple[int, ...]) -> np.ndarray:
    try:
      array = np.lib.format.open_memmap(temporary / 'images.npy', 'w+', np.uint8, shape)
      with open(temporary / 'images.npy', 'r+b') as f:  # Blocks now: a full disk is an
        os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)  # error, not SIGBUS.
    except OSError as e:
      raise _CacheUnwritable(e) from None
    return array

  try:
    try:
      root.mkdir(parents=True, exist_ok=True)
      _remove_dead_temporaries(root)
      shutil.rmtree(temporary, ignore_errors=True)
      temporary.mkdir()
    except OSError as e:
      raise _CacheUnwritable(e) from None
    images, labels = read(dataclasses.replace(request, allocate=allocate))
    try:
      if not (isinstance(images, np.memmap) and images.filename and
              os.path.abspath(images.filename) == os.path.abspath(temporary / 'images.npy')):
        np.save(temporary / 'images.npy', images)  # Read in memory (resized, or not decoded).
      else:
        images.flush()
      np.save(temporary / 'labels.npy', labels)
      del images
      try:
        os.rename(temporary, entry)
      except OSError:  # Another process wrote the entry first: its entry is as good.
        if not entry.is_dir():
          raise
    except OSError as e:
      raise _CacheUnwritable(e) from None
  except _CacheUnwritable as e:
    print(f'warning: cannot write the decoded cache in {root} ({e}); reading without it '
          '(--config.data.cache=False skips it)', file=sys.stderr, flush=True)
    shutil.rmtree(temporary, ignore_errors=True)
    return read(request)
  finally:
    shutil.rmtree(temporary, ignore_errors=True)  # Only left after an error or a lost race.
  for stale in root.glob(f'{prefix}-*'):  # The same split of the same folder, made of old files.
    if stale != entry:
      shutil.rmtree(stale, ignore_errors=True)
  found = _open_entry(entry)
  if found is None:
    raise DataError(f'the decoded cache entry {entry} just written cannot be read; delete '
                    f'{root} or set --config.data.cache=False')
  return found


def _open_entry(entry: pathlib.Path) -> tuple[np.ndarray, np.ndarray] | None:
  """A decoded cache entry's (images memory-mapped, labels in memory: 4 bytes an example, read
  whole by check_labels anyway), read-only; None if missing or damaged."""
  try:
    images = np.load(entry / 'images.npy', mmap_mode='r')
    labels = np.load(entry / 'labels.npy')
    labels.flags.writeable = False
  except FileNotFoundError:
    return None
  except (OSError, ValueError):  # Damaged: decoded again.
    shutil.rmtree(entry, ignore_errors=True)
    return None
  if images.dtype != np.uint8 or images.ndim != 4 or labels.shape != images.shape[:1]:
    shutil.rmtree(entry, ignore_errors=True)
    return None
  return images, labels


def _remove_dead_temporaries(root: pathlib.Path) -> None:
  """Deletes the temporary entries of this machine's processes that died writing them."""
  host = socket.gethostname()
  for path in root.glob(f'.*.{host}.*.tmp'):
    try:
      os.kill(int(path.name.rsplit('.', 2)[1]), 0)
    except ProcessLookupError:
      shutil.rmtree(path, ignore_errors=True)
    except (ValueError, OSError):  # Not ours to judge: another user's process, a foreign name.
      continue
