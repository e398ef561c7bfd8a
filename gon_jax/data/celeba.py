"""The 'celeba' source: CelebA's aligned JPEGs (img_align_celeba.zip or its extracted folder)
and its split file list_eval_partition.txt, each image cropped to its centred square.
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import threading
import zipfile

import numpy as np
from PIL import Image

from gon_jax.data.decoding import _decode_all, _square
from gon_jax.data.file_format import _FileFormat, _Request
from gon_jax.errors import DataError

_CELEBA_ZIP, _CELEBA_FOLDER = 'img_align_celeba.zip', 'img_align_celeba'
_CELEBA_PARTITION = 'list_eval_partition.txt'
_CELEBA_SPLITS = {'train': '0', 'test': '2'}  # list_eval_partition.txt's codes; '1': validation


def _find_celeba_images(folder: pathlib.Path) -> pathlib.Path | None:
  """CelebA's extracted img_align_celeba/ in `folder`, else its zip, else None."""
  for path in (folder / _CELEBA_FOLDER, folder / _CELEBA_ZIP):
    if path.exists():
      return path
  return None


def _celeba_paths(folder: pathlib.Path, split: str, hint: str) -> list[pathlib.Path]:
  del split
  images = _find_celeba_images(folder)
  missing = [name for name, there in ((_CELEBA_PARTITION, (folder / _CELEBA_PARTITION).is_file()),
                                      (_CELEBA_ZIP, images is not None)) if not there]
  if missing:
    raise DataError(f"folder {folder} has no {' or '.join(missing)} (CelebA's "
                    f"{_CELEBA_PARTITION} and {_CELEBA_ZIP} or its extracted {_CELEBA_FOLDER}/)"
                    f"{hint}")
  return [folder / _CELEBA_PARTITION, images]


def _read_celeba(request: _Request) -> tuple[np.ndarray, np.ndarray]:
  """CelebA's images of the split (list_eval_partition.txt: 0 train, 2 test), each cropped to
  its centred square and resized to the image size as it is decoded (the whole set at full size
  would not fit in memory), read from img_align_celeba.zip or its extracted folder.

  Returns:
    (uint8 images [N, S, S, 3], zero labels [N]: CelebA has no classes).
  """
  (partition, images), split = request.paths, request.split
  try:
    lines = partition.read_text(encoding='ascii').split('\n')
    names = [name for name, code in (line.split() for line in lines if line.strip())
             if code == _CELEBA_SPLITS[split]]
  except (OSError, UnicodeDecodeError, ValueError) as e:
    raise DataError(f'cannot read {partition} ({e}); each line must be "<image>.jpg <0|1|2>" as '
                    f'in CelebA\'s {_CELEBA_PARTITION}; re-download it') from None
  if not names:
    raise DataError(f'{partition} names no {split} image (code {_CELEBA_SPLITS[split]}); '
                    're-download it')
  try:
    with (zipfile.ZipFile(images) if images.is_file() else contextlib.nullcontext()) as archive:
      if archive is None:
        read = lambda name: (images / name).read_bytes()
      else:  # The zip's entries are img_align_celeba/<name>; reads are serialised by a lock.
        lock = threading.Lock()

        def read(name):
          with lock:
            return archive.read(f'{_CELEBA_FOLDER}/{name}')

      decoded = _decode_all(
          names, lambda name: _square(Image.open(io.BytesIO(read(name))), request.image_size),
          request.allocate, f'decoding CelebA {split} images')
  except DataError:
    raise
  except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:  # PIL: OSError/ValueError
    raise DataError(f"cannot read CelebA's {split} images from {images} ({type(e).__name__}: "
                    f"{e}); it must hold every JPEG {_CELEBA_PARTITION} names, as "
                    f"{_CELEBA_ZIP}; re-download it") from None
  return decoded, np.zeros(len(decoded), np.int32)


# How load_split finds and reads this source's files (gon_jax.data.sources._FORMATS).
FORMAT = _FileFormat(
    _celeba_paths, _read_celeba,
    lambda folder: (folder / _CELEBA_PARTITION).exists() or bool(_find_celeba_images(folder)),
    'CelebA', f'{_CELEBA_PARTITION} and {_CELEBA_ZIP} (or its extracted {_CELEBA_FOLDER}/)')
