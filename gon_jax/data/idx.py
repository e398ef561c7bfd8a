"""The 'idx' source: the four IDX files of MNIST-like sets (train-images-idx3-ubyte[.gz], ...),
gzipped or not.
"""

from __future__ import annotations

import gzip
import pathlib

import numpy as np

from gon_jax.data.file_format import SPLITS, _FileFormat, _Request
from gon_jax.errors import DataError

_IDX_PREFIX = {'train': 'train', 'test': 't10k'}
_IDX_MAGIC = {'images': 0x00000803, 'labels': 0x00000801}


def _find_idx(folder: pathlib.Path, split: str, kind: str) -> pathlib.Path | None:
  """Finds e.g. train-images-idx3-ubyte[.gz] (or the dotted train-images.idx3-ubyte) in folder."""
  stem = f"{_IDX_PREFIX[split]}-{kind}"
  dims = 'idx3' if kind == 'images' else 'idx1'
  for name in (f'{stem}-{dims}-ubyte', f'{stem}.{dims}-ubyte'):
    for suffix in ('.gz', ''):
      if (folder / (name + suffix)).is_file():
        return folder / (name + suffix)
  return None


def _idx_file(folder: pathlib.Path, split: str, kind: str, hint: str = '') -> pathlib.Path:
  """_find_idx's file, or a DataError saying what the folder lacks (and `hint`, a way out)."""
  path = _find_idx(folder, split, kind)
  if path is not None:
    return path
  dims = 'idx3' if kind == 'images' else 'idx1'
  expected = ', '.join(f'{p}-{k}-{d}-ubyte[.gz]' for p in ('train', 't10k')
                       for k, d in (('images', 'idx3'), ('labels', 'idx1')))
  state = ('is empty' if not any(folder.iterdir()) else
           f'has no {_IDX_PREFIX[split]}-{kind}-{dims}-ubyte[.gz]')
  raise DataError(f"IDX folder {folder} {state}; put the four IDX files there ({expected}){hint}")


def _read_idx(path: pathlib.Path, kind: str) -> np.ndarray:
  """Parses one IDX file (gzipped or not) into a uint8 array with the header's shape."""
  try:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == '.gz' else path.read_bytes()
  except (OSError, EOFError) as e:  # Unreadable file or corrupt gzip stream.
    raise DataError(f"cannot read IDX file {path} ({e}); re-download it") from None
  magic = int.from_bytes(raw[:4], 'big') if len(raw) >= 4 else None
  if magic != _IDX_MAGIC[kind]:
    found = 'none' if magic is None else hex(magic)
    raise DataError(f"{path} is not an IDX {kind} file (magic number {found}, expected "
                    f"{_IDX_MAGIC[kind]:#010x}); check the file name and content")
  ndim = raw[3]
  header = 4 + 4 * ndim
  shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
  size = int(np.prod(shape))
  if len(raw) < header + size:
    raise DataError(f"IDX file {path} is truncated: header promises {size} bytes of data, "
                    f"found {max(len(raw) - header, 0)}; re-download it")
  return np.frombuffer(raw, np.uint8, count=size, offset=header).reshape(shape)


def _idx_paths(folder: pathlib.Path, split: str, hint: str) -> list[pathlib.Path]:
  return [_idx_file(folder, split, kind, hint) for kind in ('images', 'labels')]


def _read_idx_split(request: _Request) -> tuple[np.ndarray, np.ndarray]:
  images, labels = (_read_idx(p, kind) for p, kind in zip(request.paths, ('images', 'labels')))
  folder, split = request.paths[0].parent, request.split
  if images.ndim != 3 or labels.ndim != 1:
    raise DataError(f"IDX files in {folder} have shapes {images.shape} and {labels.shape}, "
                    "expected [N, height, width] images and [N] labels")
  if len(images) != len(labels):
    raise DataError(f"IDX {split} files in {folder} disagree: {len(images)} images but "
                    f"{len(labels)} labels; re-download them")
  return images[..., None], labels


# How load_split finds and reads this source's files (gon_jax.data.sources._FORMATS).
FORMAT = _FileFormat(
    _idx_paths, _read_idx_split,
    lambda folder: any(_find_idx(folder, split, kind) for split in SPLITS
                       for kind in ('images', 'labels')),
    'IDX', "the four IDX files (e.g. MNIST's train-images-idx3-ubyte.gz)", cached=False)
