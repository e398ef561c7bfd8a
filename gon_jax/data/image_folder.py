"""The 'folder' source: a folder of one's own images (docs/data_own_images.md), in train/ and
test/ subfolders or split by name, in class folders or not; each image's centred square.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import pathlib

import numpy as np
from PIL import Image, ImageOps

from gon_jax.data.decoding import _decode_all, _square
from gon_jax.data.file_format import SPLITS, _FileFormat, _Request
from gon_jax.errors import DataError

# Extensions of the folder source's images (any case): what PIL reads.
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.webp', '.tif', '.tiff')
# A folder without train/ and test/: an image is a test image when the sha256 of its path
# relative to the folder ('cats/001.png'), read as a big-endian integer, is 0 modulo this.
TEST_ONE_IN = 10
_FOLDER_MODES = {1: 'L', 3: 'RGB'}  # model.channels -> the PIL mode images are read in


def _is_test_name(relative: str) -> bool:
  """The folder source's split of a folder without train/ and test/ (TEST_ONE_IN)."""
  return int.from_bytes(hashlib.sha256(relative.encode('utf-8')).digest()[:8],
                        'big') % TEST_ONE_IN == 0


def _images_below(root: pathlib.Path) -> list[str]:
  """The relative paths ('cats/001.png') of every image file (IMAGE_EXTENSIONS) below `root`,
  hidden names skipped, sorted by their parts."""
  found = []
  for top, folders, files in os.walk(root, followlinks=True):
    folders[:] = [name for name in folders if not name.startswith('.')]
    relative = os.path.relpath(top, root)
    prefix = '' if relative == '.' else relative.replace(os.sep, '/') + '/'
    found += [prefix + name for name in files if not name.startswith('.')
              and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS]
  return sorted(found, key=lambda path: path.split('/'))  # Strings: 200k paths in a second.


def _round_robin(paths: list[str]) -> list[str]:
  """A split's relative paths (sorted by their parts, so class by class) taken one class folder
  at a time: the first image of each class (in class order), then the second of each, ...; a
  class with fewer images drops out when it runs out. Images outside class folders are one
  class: their order is kept.

  Every prefix of a split then shows every class (the grids' first grid_size**2 test images,
  train_eval_examples' test subset): sorted, CIFAR-10's first 64 test images are airplanes.
  """
  by_class: dict[str, list[str]] = {}
  for path in paths:
    by_class.setdefault(path.split('/')[0] if '/' in path else '', []).append(path)
  return [path for turn in itertools.zip_longest(*by_class.values()) for path in turn
          if path is not None]


def _folder_splits(folder: pathlib.Path) -> dict[str, tuple[pathlib.Path, list[str]]]:
  """The folder source's splits: split -> (the folder its class folders are in, its images'
  paths relative to that folder, in _round_robin's order: the split's order).

  train/ and test/ subfolders are the splits; without them every image below `folder` is one,
  split by name (_is_test_name). Raises a DataError for a folder without images, a split
  without images, or a split that mixes loose images with class folders.
  """
  wanted = ', '.join(IMAGE_EXTENSIONS)
  present = [split for split in SPLITS if (folder / split).is_dir()]
  if present and len(present) < len(SPLITS):
    (missing,) = set(SPLITS) - set(present)
    raise DataError(f'folder {folder} has {present[0]}/ but no {missing}/: give it both, or '
                    f'neither (then 1 image in {TEST_ONE_IN}, chosen by name, is a test image)')
  if present:
    splits = {split: (folder / split, _images_below(folder / split)) for split in SPLITS}
    for split, (root, paths) in splits.items():
      if not paths:
        raise DataError(f'folder {root} holds no images ({wanted}); put the {split} images in '
                        'it, in class folders or not')
  else:
    paths = _images_below(folder)
    if not paths:
      state = 'is empty' if not any(folder.iterdir()) else 'holds no images'
      raise DataError(f'folder {folder} {state}; put images ({wanted}) in it, or in '
                      'train/ and test/ subfolders of it')
    test = [_is_test_name(path) for path in paths]
    splits = {'train': (folder, [p for p, t in zip(paths, test) if not t]),
              'test': (folder, [p for p, t in zip(paths, test) if t])}
    for split, (_, chosen) in splits.items():
      if not chosen:
        raise DataError(f'folder {folder} has {len(paths)} images and its split by name puts '
                        f'none in {split} (1 in {TEST_ONE_IN} go there); add images, or give '
                        'it train/ and test/ subfolders')
  for root, paths in splits.values():
    loose = [path for path in paths if '/' not in path]
    if loose and len(loose) < len(paths):
      nested = next(path for path in paths if '/' in path).split('/')[0]
      raise DataError(f'folder {root} mixes images ({loose[0]}) with class folders '
                      f'({nested}/); put every image in a class folder, or none')
  return {split: (root, _round_robin(paths)) for split, (root, paths) in splits.items()}


def _folder_paths(folder: pathlib.Path, split: str, hint: str) -> list[pathlib.Path]:
  del hint  # Nothing downloads into a folder of one's own images.
  root, paths = _folder_splits(folder)[split]
  return [root / path for path in paths]


def _folder_classes(folder: pathlib.Path) -> list[str]:
  """The class folders' names, sorted: class i is label i (torchvision ImageFolder's numbering),
  the same in both splits (their names together); none: every label is 0."""
  return sorted({path.split('/')[0] for _, paths in _folder_splits(folder).values()
                 for path in paths if '/' in path})


def _read_folder(request: _Request) -> tuple[np.ndarray, np.ndarray]:
  """The folder source's split: each image's centred square, resized, in model.channels' mode.

  Returns:
    (uint8 images [N, S, S, channels], labels [N]: the class folder's index, or 0).
  """
  channels = 3 if request.channels is None else request.channels
  if channels not in _FOLDER_MODES:
    raise DataError(f'the folder source reads grey (model.channels=1) or RGB (3) images, not '
                    f'{channels} channels')
  paths, split_root = request.paths, request.folder / request.split
  root = split_root if split_root.is_dir() else request.folder  # As _folder_splits chose.
  index = {name: i for i, name in enumerate(request.classes)}
  parts = [os.path.relpath(path, root).split(os.sep) for path in paths]
  labels = np.array([index[part[0]] if len(part) > 1 else 0 for part in parts], np.int32)

  def decode(path: pathlib.Path) -> np.ndarray:
    try:
      with Image.open(path) as image:
        # As image viewers show it: a phone's photo is stored sideways with an EXIF rotation.
        return _square(ImageOps.exif_transpose(image), request.image_size,
                       _FOLDER_MODES[channels])
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
      reason = ' '.join(str(e).split()) or type(e).__name__
      raise DataError(f'cannot read image {path} ({reason}); replace or remove it') from None

  images = _decode_all(paths, decode, request.allocate,
                       f'decoding {len(paths)} {request.split} images')
  return images, labels


# How load_split finds and reads this source's files (gon_jax.data.sources._FORMATS).
FORMAT = _FileFormat(
    _folder_paths, _read_folder, lambda folder: bool(_images_below(folder)), 'image',
    'your images (.png, .jpg, ...), in train/ and test/ subfolders or not', named=False,
    uses_channels=True, classes=_folder_classes)
