"""load_split, the one entry to the sources: picks the source data.source names, finds (or
downloads) a file source's folder, reads the split through the decoded cache, and keeps each
loaded split for the rest of the process.
"""

from __future__ import annotations

import functools
import pathlib
from typing import Any

import numpy as np

from gon_jax import download
from gon_jax.data import celeba, cifar, idx, image_folder
from gon_jax.data.decoded_cache import _cached_split, _split_key
from gon_jax.data.decoding import _resize
from gon_jax.data.file_format import SPLITS, _FileFormat, _Request
from gon_jax.data.tfds_source import DATASETS, _load_tfds
from gon_jax.errors import ConfigError, DataError
from gon_jax.settings import DataSettings

SOURCES = ('idx', 'cifar', 'celeba', 'folder', 'tfds')
# Loaded splits by cache key (_split_key): a process that loads a split again (eval.py's
# grids, superres, tests) gets the same read-only arrays without reading a file.
_files_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
# data.source -> how the sources that read files find and read a split.
_FORMATS: dict[str, _FileFormat] = {'idx': idx.FORMAT, 'cifar': cifar.FORMAT,
                                    'celeba': celeba.FORMAT, 'folder': image_folder.FORMAT}


def _files_folder(data_config: Any) -> tuple[pathlib.Path, str]:
  """The folder of `data_config`'s files, with a known set's downloaded into it if it has none.

    Returns:
      (the folder, a hint for messages about missing files: how to let them download, or '').
    """
  name, source = data_config.name, data_config.source
  if not _FORMATS[source].named:  # data.name is only a name: the folder is the data set.
    if not data_config.dir:
      raise DataError(f'the {source} source reads the images in data.dir: '
                      '--config.data.dir=/path/to/your/images')
    return pathlib.Path(data_config.dir).expanduser(), ''
  known = download.KNOWN.get(name)
  if known is not None and known.source != source:
    raise DataError(f"data set {name!r} is read by the {known.source} source, not {source}: "
                    f"--config.data.source={known.source}")
  downloadable = [n for n, k in download.KNOWN.items() if k.source == source]
  if data_config.dir:  # The user's folder: used as it is when it holds the files.
    folder = pathlib.Path(data_config.dir).expanduser()
  elif known:
    folder = download.cache_dir(name)
  else:
    raise DataError(
        f"the {source} source needs a folder for data set {name!r} (only "
        f"{', '.join(downloadable)} download by themselves): "
        f"--config.data.dir=/path/to/folder-with-{_FORMATS[source].title}-files")
  if not known:
    return folder, ''
  if not getattr(data_config, 'download', True):
    return folder, f', or set --config.data.download=True to download {name}'
  # Download only into a folder holding none of the set's files: a partial set is the user's
  # (a download is all or nothing), and mixing in another set's files would be silent garbage.
  if not (folder.is_dir() and _FORMATS[source].holds_any(folder)):
    mirror = getattr(data_config, 'mirror', '')
    download.download_files(folder, name, mirrors=[mirror] if mirror else ())
  return folder, f', or empty the folder: {name} then downloads by itself'


def _load_files(data_config: Any, split: str, image_size: int | None, channels: int | None):
  """load_split for the sources that read files ('idx', 'cifar', 'celeba', 'folder')."""
  source = data_config.source
  file_format = _FORMATS[source]
  folder, hint = _files_folder(data_config)
  if not folder.is_dir():
    raise DataError(f"{file_format.title} folder {folder} does not exist; set "
                    f"--config.data.dir to the folder holding {file_format.example}{hint}")
  request = _Request(folder, file_format.paths(folder, split, hint), split, image_size,
                     channels if file_format.uses_channels else None,
                     file_format.classes(folder) if file_format.classes else [])
  key = _split_key(source, request)
  if key not in _files_cache:  # Parsing + resizing 60k images once per process is enough.
    if file_format.cached and getattr(data_config, 'cache', True):
      _files_cache[key] = _cached_split(source, request, key,
                                         functools.partial(_read_split, file_format))
    else:
      _files_cache[key] = _read_split(file_format, request)
  return _files_cache[key]


def _read_split(file_format: _FileFormat, request: _Request) -> tuple[np.ndarray, np.ndarray]:
  """The format's split, resized: (uint8 images [N, S, S, C], int32 labels [N]), read-only."""
  images, labels = file_format.read(request)
  result = (_resize(images, request.image_size), np.asarray(labels).astype(np.int32))
  for array in result:
    array.flags.writeable = False  # Shared by every caller: keep it read-only.
  return result


def load_split(data_config: DataSettings, split: str, image_size: int | None,
               channels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Loads a whole split onto the host as uint8, resized: `to_float` converts its batches.

    Args:
      data_config: the data settings (gon_jax.settings.DataSettings), or any object with their
        attributes: `source` (one of SOURCES), `name` (data set name;
        the folder source ignores it), `dir` (idx, cifar, celeba: the folder with the files,
        None or '' for the cache folder of a set that downloads, download.cache_dir(name);
        folder: the folder of images; tfds: data_dir, None or '' for the default), and
        optionally `download` (default True: the file sources download the sets in
        download.KNOWN into a folder without their files; tfds may download and prepare the
        set), `mirror` (the file sources: a base URL to download from instead of the set's
        usual addresses; '' for those) and `cache` (default True: cifar, celeba and folder keep
        the decoded split in decoded_cache_dir() and memory-map it from there).
      split: 'train' or 'test'.
      image_size: if set and different from the stored size, images are resized once to
        image_size x image_size with PIL's bilinear interpolation and rounded to uint8 (what
        torchvision's Resize does to PIL images); CelebA's and the folder source's are first
        cropped to their centred square.
      channels: the folder source: 1 reads images as grey, 3 (or None) as RGB
        (model.channels); the other sources keep their own.

    Returns:
      (images uint8 [num_examples, height, width, channels], read-only (a memory-mapped file for
      a cached split), labels int32 [num_examples]). In the files' order; the folder source's
      class folders take turns (image_folder._round_robin), so that every prefix holds every class.
    """
  source, name = data_config.source, data_config.name
  if split not in SPLITS:
    raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
  if source in _FORMATS:
    images, labels = _load_files(data_config, split, image_size, channels)
  elif source == 'tfds':
    if name not in DATASETS:
      raise DataError(f"unknown data set {name!r}; use one of {', '.join(sorted(DATASETS))}")
    images, labels = _load_tfds(name, split, data_config.dir or None, image_size,
                                bool(getattr(data_config, 'download', True)))
  else:
    raise DataError(f"unknown data source {source!r}; use one of {', '.join(SOURCES)}")
  if not len(images):  # training, evaluation and encoding all need at least one image
    where = f' in {data_config.dir}' if data_config.dir else ''
    raise DataError(f'the {split} split of {name}{where} holds no images: give a data set '
                    'with at least one image in each split')
  return images, labels


def load_data(data_config: DataSettings, channels: int, num_classes: int = 0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """`(train images, train labels, test images, test labels)` of `data_config` at its image
  size, uint8 (`load_split`; `channels`, the model's, for the folder source), the labels
  checked against a classifier's `num_classes` (`check_labels`; 0: no classifier)."""
  size = data_config.image_size
  train_images, train_labels = load_split(data_config, 'train', size, channels)
  test_images, test_labels = load_split(data_config, 'test', size, channels)
  check_labels(num_classes, data_config.name, train_labels, test_labels)
  return train_images, train_labels, test_images, test_labels


def check_labels(num_classes: int, name: str, *labels: np.ndarray) -> None:
  """Raises ConfigError if a classifier's `num_classes` (0: none) does not cover the labels of
  the data set `name`.

  A label outside [0, num_classes) makes the cross-entropy NaN at the first
  step, which looks like a learning rate problem; this says what it is.
  """
  top = max((int(np.max(split)) for split in labels if len(split)), default=-1)
  if num_classes and top >= num_classes:
    raise ConfigError(f'labels of {name} go up to {top} but classifier.num_classes '
                      f'is {num_classes}; set --config.classifier.num_classes={top + 1}')
