"""The 'cifar' source: the python version of CIFAR-10, its archive cifar-10-python.tar.gz or
the extracted folder cifar-10-batches-py, unpickled without running any code.
"""

from __future__ import annotations

import io
import pathlib
import pickle
import tarfile

import numpy as np

from gon_jax.data.file_format import _FileFormat
from gon_jax.errors import DataError

_CIFAR_ARCHIVE, _CIFAR_FOLDER = 'cifar-10-python.tar.gz', 'cifar-10-batches-py'
_CIFAR_BATCHES = {'train': tuple(f'data_batch_{i}' for i in range(1, 6)), 'test': ('test_batch',)}


def _find_cifar(folder: pathlib.Path) -> pathlib.Path | None:
  """CIFAR-10's extracted folder cifar-10-batches-py in (or as) `folder`, else its archive."""
  for path in (folder / _CIFAR_FOLDER, folder):
    if (path / 'test_batch').is_file():
      return path
  return folder / _CIFAR_ARCHIVE if (folder / _CIFAR_ARCHIVE).is_file() else None


class _NumpyOnlyUnpickler(pickle.Unpickler):
  """Unpickles CIFAR's batches (dicts of bytes, lists and numpy arrays) and nothing that runs code."""
  # Python 3 pickles of bytes (protocol 2) call _codecs.encode; numpy 2 moved numpy.core.
  _ALLOWED = {('numpy', 'ndarray'), ('numpy', 'dtype'), ('numpy.core.multiarray', '_reconstruct'),
              ('numpy._core.multiarray', '_reconstruct'), ('_codecs', 'encode')}

  def find_class(self, module: str, name: str):
    if (module, name) not in self._ALLOWED:
      raise pickle.UnpicklingError(f'{module}.{name} is not part of a CIFAR batch')
    return super().find_class(module, name)


def _read_cifar(path: pathlib.Path, split: str) -> tuple[np.ndarray, np.ndarray]:
  """Parses CIFAR-10's python batches of `split` from its archive or its extracted folder.

  Each batch is a pickled dict: b'data' uint8 [n, 3072], a row the red, green then blue
  32x32 planes in row-major order; b'labels' n ints.

  Returns:
    (uint8 images [N, 32, 32, 3], labels [N]).
  """
  def batches():
    if path.is_dir():
      for name in _CIFAR_BATCHES[split]:
        yield name, (path / name).read_bytes()
      return
    wanted, found = {f'{_CIFAR_FOLDER}/{n}' for n in _CIFAR_BATCHES[split]}, set()
    with tarfile.open(path, 'r:gz') as archive:
      for member in archive:  # One pass: the archive's members are in no particular order.
        if member.name in wanted and member.isfile():
          found.add(member.name)
          yield member.name, archive.extractfile(member).read()
    if found != wanted:
      raise KeyError(', '.join(sorted(wanted - found)))

  images, labels = {}, {}
  try:
    for name, raw in batches():
      batch = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding='bytes').load()
      images[name] = np.asarray(batch[b'data'], np.uint8).reshape(-1, 3, 32, 32)
      labels[name] = np.asarray(batch[b'labels'])
  except (OSError, EOFError, KeyError, ValueError, TypeError, tarfile.TarError,
          pickle.UnpicklingError) as e:  # A missing, cut or foreign batch; a corrupt archive.
    raise DataError(f"cannot read CIFAR-10's {split} batches from {path} ({type(e).__name__}: "
                    f"{e}); it must hold {', '.join(_CIFAR_BATCHES[split])} as in "
                    f"{_CIFAR_ARCHIVE}; re-download it") from None
  order = sorted(images)  # data_batch_1 to data_batch_5, whatever the archive's order
  return (np.concatenate([images[n] for n in order]).transpose(0, 2, 3, 1),
          np.concatenate([labels[n] for n in order]))


def _cifar_paths(folder: pathlib.Path, split: str, hint: str) -> list[pathlib.Path]:
  path = _find_cifar(folder)
  if path is None:
    raise DataError(f"folder {folder} holds neither {_CIFAR_ARCHIVE} nor its extracted "
                    f"{_CIFAR_FOLDER}/ (CIFAR-10's python version){hint}")
  return [path]


# How load_split finds and reads this source's files (gon_jax.data.sources._FORMATS).
FORMAT = _FileFormat(
    _cifar_paths, lambda request: _read_cifar(request.paths[0], request.split),
    lambda folder: _find_cifar(folder) is not None,
    'CIFAR-10', f'{_CIFAR_ARCHIVE} or its extracted {_CIFAR_FOLDER}/')
