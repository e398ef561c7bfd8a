"""Data: whole data sets held on the host as uint8 (in memory, or memory-mapped from the decoded
cache), deterministic, resumable training batches converted to float32 one batch at a time
(`to_float`), and fixed-size batches of any array through a function (`in_batches`).

Five sources. Three read a data set's files as their publishers ship them, without TensorFlow,
downloading the sets gon_jax knows into a cache folder the first time (gon_jax.download): 'idx'
reads the four IDX files of MNIST-like sets (MNIST and Fashion-MNIST download), 'cifar' the
python version of CIFAR-10 (its archive or the extracted folder), 'celeba' CelebA's aligned
JPEGs (their zip or its extracted folder) and its split file. 'folder' reads a folder of one's
own images (docs/data_own_images.md). 'tfds' reads a prepared TFDS data set through
`tfds.data_source` (array_record, no TensorFlow).
Images come back as uint8 [num_examples, height, width, channels], already resized; the
decoded splits of 'cifar', 'celeba' and 'folder' are kept in an on-disk cache
(`decoded_cache_dir`) that later runs memory-map instead of decoding again.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import gzip
import hashlib
import io
import itertools
import json
import os
import pathlib
import pickle
import queue
import shutil
import socket
import stat
import sys
import tarfile
import threading
import urllib.error
import zipfile
from typing import Any, Callable, Iterator

import jax
import numpy as np
from PIL import Image, ImageOps
import tqdm

from gon_jax import download
from gon_jax.errors import DataError, check_count


# Data set names accepted by the tfds source -> TFDS builder name.
DATASETS: dict[str, str] = {
    'mnist': 'mnist',
    'fashion_mnist': 'fashion_mnist',
    'cifar10': 'cifar10',
    'svhn': 'svhn_cropped',
    'svhn_cropped': 'svhn_cropped',
    'celeb_a': 'celeb_a',
    'coil100': 'coil100',  # TFDS has COIL-100, not the paper's COIL-20.
    'smallnorb': 'smallnorb',
}
SOURCES = ('idx', 'cifar', 'celeba', 'folder', 'tfds')
SPLITS = ('train', 'test')

_IDX_PREFIX = {'train': 'train', 'test': 't10k'}
_IDX_MAGIC = {'images': 0x00000803, 'labels': 0x00000801}
_LABEL_KEYS = ('label', 'label_category')  # 'label_category' is smallnorb's class.
_CHUNK = 4096  # Examples per tfds read: bounds the temporary memory.
# Loaded splits by cache key (_split_key): a process that loads a split again (eval.py's
# grids, superres, tests) gets the same read-only arrays without reading a file.
_files_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}


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


_UINT8_LEVELS = np.arange(256, dtype=np.float32) / 255.0  # to_float's k -> k / 255


def to_float(images: np.ndarray) -> np.ndarray:
  """Images as models take them: float32 in [0, 1], converted one batch at a time.

  The one conversion of the host's uint8 images (load_split's) for a model, a metric or a
  figure: k -> k / 255, the same numbers as ToTensor's.

  Args:
    images: uint8 [..., height, width, channels], or floats already in [0, 1] (returned as
      they are: reconstructions, images that did not come from load_split). A jax array
      (inside a jitted function too) stays one: the same conversion on the device.

  Returns:
    float32 [..., height, width, channels] in [0, 1] for uint8 input (a new array).
  """
  on_device = isinstance(images, jax.Array)
  if not on_device:
    images = np.asarray(images)  # A memmap's rows: a plain ndarray.
  if images.dtype == np.uint8 and on_device:
    # A table of the host's 256 levels, not a division: XLA turns x / 255 into a product with
    # its reciprocal, which rounds differently; looked up, device and host agree bit for bit.
    return jax.numpy.asarray(_UINT8_LEVELS)[images]
  if images.dtype == np.uint8:
    return images.astype(np.float32) / 255.0  # (7x faster than the table lookup on a CPU)
  if not np.issubdtype(images.dtype, np.floating):
    raise TypeError(f'images must be uint8 or float in [0, 1], not {images.dtype}')
  return images


def _resize(images: np.ndarray, image_size: int | None) -> np.ndarray:
  """uint8 [N, H, W, C] -> uint8 [N, S, S, C], bilinear as PIL (antialiased when shrinking).

  What torchvision's Resize does to the PIL images of the official scripts: PIL's two passes,
  each rounded to uint8. Each channel is resized on its own, as PIL does an RGB image's.
  """
  n, h, w, c = images.shape
  if image_size is None or (h, w) == (image_size, image_size):
    return images
  out = np.empty((n, image_size, image_size, c), np.uint8)

  def resize_rows(start: int) -> None:
    for i in range(start, min(start + 256, n)):
      for k in range(c):
        out[i, :, :, k] = np.asarray(Image.fromarray(images[i, :, :, k]).resize(
            (image_size, image_size), Image.Resampling.BILINEAR))

  # PIL resizes without holding the GIL: one thread per core, 256 images a task.
  with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
    list(pool.map(resize_rows, range(0, n, 256)))
  return out


def _decode_all(items: list, decode: Callable[[Any], np.ndarray],
                allocate: Callable[[tuple[int, ...]], np.ndarray], desc: str) -> np.ndarray:
  """`decode(item)` of every item into one uint8 array [len(items), *shape] from `allocate`.

  Decoded on one thread per core (PIL decodes and resizes without holding the GIL), straight
  into the array: no list of images beside it. Every image must have the first one's shape.
  """
  first = decode(items[0])
  out = allocate((len(items), *first.shape))
  out[0] = first
  bar = tqdm.tqdm(total=len(items), initial=1, desc=desc, unit='image', dynamic_ncols=True)

  def put(i: int) -> None:
    image = decode(items[i])
    if image.shape != first.shape:
      raise DataError(f'{items[i]} is {image.shape[1]}x{image.shape[0]} after its centred '
                      f'square crop but {items[0]} is {first.shape[1]}x{first.shape[0]}; set '
                      '--config.data.image_size to resize them all')
    out[i] = image
    bar.update()

  pool = concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1)
  try:
    futures = [pool.submit(put, i) for i in range(1, len(items))]
    for future in concurrent.futures.as_completed(futures):
      future.result()  # The first image that failed raises here.
  except BaseException:
    pool.shutdown(cancel_futures=True)  # A bad image: the rest need not be decoded.
    raise
  finally:
    pool.shutdown()
    bar.close()
  return out


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


def _square(image: Image.Image, size: int | None, mode: str = 'RGB') -> np.ndarray:
  """The centred square crop of an image in PIL `mode` ('RGB' or 'L'), resized to size x size
  (bilinear, antialiased as PIL shrinks; None: kept), as uint8 [size, size, channels]."""
  width, height = image.size
  side = min(width, height)
  left, top = (width - side) // 2, (height - side) // 2
  image = image.convert(mode).crop((left, top, left + side, top + side))
  if size is not None and size != side:
    image = image.resize((size, size), Image.Resampling.BILINEAR)
  square = np.asarray(image, np.uint8)
  return square[..., None] if square.ndim == 2 else square


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


@dataclasses.dataclass(frozen=True)
class _Request:
  """One split of a file source, as a _FileFormat's `read` reads it."""
  folder: pathlib.Path  # The data folder: data.dir, or a known set's download folder.
  paths: list[pathlib.Path]  # The files holding the split: the format's `paths`.
  split: str
  image_size: int | None  # Resized to image_size x image_size; None: as stored.
  channels: int | None  # model.channels, for formats that read in its mode ('folder').
  classes: list[str]  # Class folder names, label i named classes[i] ('folder'); else [].
  # (shape) -> the writable uint8 array a decoder decodes into: memory, or the decoded cache's
  # file (_cached_split).
  allocate: Callable[[tuple[int, ...]], np.ndarray] = functools.partial(np.empty, dtype=np.uint8)


@dataclasses.dataclass(frozen=True)
class _FileFormat:
  """How a source that reads files finds and parses a split in a folder."""
  # (folder, split, hint) -> the files holding the split; raises a DataError naming what is
  # missing (and `hint`, a way out).
  paths: Callable[[pathlib.Path, str, str], list[pathlib.Path]]
  # _Request -> (uint8 images [N, H, W, C], integer labels [N]); a format may resize as it
  # reads (or leave it to _resize).
  read: Callable[[_Request], tuple[np.ndarray, np.ndarray]]
  holds_any: Callable[[pathlib.Path], bool]  # Whether a folder holds any of the set's files.
  title: str  # The format's name, for messages: 'IDX'.
  example: str  # What the folder should hold, for messages.
  # Whether decoded splits go to the on-disk cache (decoded_cache_dir): IDX parses in a second.
  cached: bool = True
  # Whether data.name names the set (download.KNOWN's download); False: data.dir is all.
  named: bool = True
  uses_channels: bool = False  # Whether images are read in model.channels' mode.
  # (folder) -> the class folder names that number the labels, or None: the files' labels.
  classes: Callable[[pathlib.Path], list[str]] | None = None


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


def _cifar_paths(folder: pathlib.Path, split: str, hint: str) -> list[pathlib.Path]:
  path = _find_cifar(folder)
  if path is None:
    raise DataError(f"folder {folder} holds neither {_CIFAR_ARCHIVE} nor its extracted "
                    f"{_CIFAR_FOLDER}/ (CIFAR-10's python version){hint}")
  return [path]


_FORMATS = {
    'idx': _FileFormat(
        _idx_paths, _read_idx_split,
        lambda folder: any(_find_idx(folder, split, kind) for split in SPLITS
                           for kind in ('images', 'labels')),
        'IDX', "the four IDX files (e.g. MNIST's train-images-idx3-ubyte.gz)", cached=False),
    'cifar': _FileFormat(
        _cifar_paths, lambda request: _read_cifar(request.paths[0], request.split),
        lambda folder: _find_cifar(folder) is not None,
        'CIFAR-10', f'{_CIFAR_ARCHIVE} or its extracted {_CIFAR_FOLDER}/'),
    'celeba': _FileFormat(
        _celeba_paths, _read_celeba,
        lambda folder: (folder / _CELEBA_PARTITION).exists() or bool(_find_celeba_images(folder)),
        'CelebA', f'{_CELEBA_PARTITION} and {_CELEBA_ZIP} (or its extracted {_CELEBA_FOLDER}/)'),
    'folder': _FileFormat(
        _folder_paths, _read_folder, lambda folder: bool(_images_below(folder)), 'image',
        'your images (.png, .jpg, ...), in train/ and test/ subfolders or not', named=False,
        uses_channels=True, classes=_folder_classes),
}


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
      _files_cache[key] = _cached_split(source, file_format, request, key)
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


def _cached_split(source: str, file_format: _FileFormat, request: _Request,
                  key: str) -> tuple[np.ndarray, np.ndarray]:
  """_read_split through the decoded cache: its memory-mapped entry, written first if missing.

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
    images, labels = _read_split(file_format, dataclasses.replace(request, allocate=allocate))
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
    return _read_split(file_format, request)
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


def _load_tfds(name: str, split: str, data_dir: str | None, image_size: int | None,
               may_download: bool):
  import tensorflow_datasets as tfds  # Imported lazily: heavy, and unneeded for idx.

  try:
    source = tfds.data_source(DATASETS[name], split=split, data_dir=data_dir, download=may_download)
    num = len(source)
    images, labels = [], []
    for start in range(0, num, _CHUNK):
      records = source.__getitems__(list(range(start, min(start + _CHUNK, num))))
      chunk = np.stack([r['image'] for r in records])
      images.append(_resize(chunk if chunk.ndim == 4 else chunk[..., None], image_size))
      key = next((k for k in _LABEL_KEYS if k in records[0]), None)
      labels.append(np.array([r[key] if key else 0 for r in records], np.int32))
  # tfds raises unrelated types (ImportError, OSError, NotImplementedError, TensorFlow's own):
  # each becomes one DataError line with the way out.
  except Exception as e:  # pylint: disable=broad-except
    text = ' '.join(str(e).split())  # One line, whatever tfds put in it.
    reason = _shorten(f"{type(e).__name__}: {text}" if text else type(e).__name__, 160)
    known = download.KNOWN.get(name)
    if known:
      way_out = (f"the {known.source} source reads {name} without tfds and downloads it by "
                 f"itself: --config.data.source={known.source}")
    elif _is_network_error(e):
      way_out = ("no network? prepare it with tfds on a machine online, or for MNIST-like sets "
                 "use the idx source: --config.data.source=idx "
                 "--config.data.dir=/path/to/folder-with-IDX-files")
    else:
      way_out = ("for MNIST-like sets use the idx source instead: --config.data.source=idx "
                 "--config.data.dir=/path/to/folder-with-IDX-files")
    raise DataError(f"tfds could not load {name!r} split {split!r} ({reason}); {way_out}") from None
  if not images:
    raise DataError(f"tfds data set {name!r} split {split!r} is empty")
  return np.concatenate(images), np.concatenate(labels)


def _shorten(text: str, limit: int) -> str:
  """`text` cut to at most `limit` characters at a word boundary, with '...' if cut."""
  if len(text) <= limit:
    return text
  cut = text[:limit - 3].rsplit(' ', 1)[0] if ' ' in text[:limit - 3] else text[:limit - 3]
  return cut.rstrip(' ,;:') + '...'


def _is_network_error(error: BaseException) -> bool:
  """Whether `error`, or an error it was raised from, is a failed network access."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, (ConnectionError, TimeoutError, socket.gaierror, urllib.error.URLError)):
      return True
    # requests' and tfds' own types, without importing them.
    if type(error).__name__ in ('ConnectionError', 'ConnectTimeout', 'ReadTimeout',
                                'NewConnectionError', 'MaxRetryError', 'DownloadError'):
      return True
    error = error.__cause__ or error.__context__
  return False


def load_split(data_config: Any, split: str, image_size: int | None,
               channels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Loads a whole split onto the host as uint8, resized: `to_float` converts its batches.

    Args:
      data_config: object with attributes `source` (one of SOURCES), `name` (data set name;
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
      class folders take turns (_round_robin), so that every prefix holds every class.
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


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Train steps per epoch: `num_examples // batch_size` (batch_indices drops each epoch's
  incomplete last batch)."""
  return num_examples // batch_size


def batch_indices(num_examples: int, batch_size: int, seed: int, step: int) -> np.ndarray:
  """Global example indices [batch_size] of training step `step`; a pure function of (seed, step).

    Each epoch is a fresh permutation from np.random.default_rng((seed, epoch)); an epoch has
    num_examples // batch_size steps (the incomplete last batch is dropped).
    """
  if not 0 < batch_size <= num_examples:
    raise DataError(
        f"batch size {batch_size} must be in [1, {num_examples}] (the number of examples)")
  epoch, position = divmod(step, steps_per_epoch(num_examples, batch_size))
  return _permutation(num_examples, seed, epoch)[position * batch_size:(position + 1) * batch_size]


@functools.lru_cache(maxsize=4)
def _permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  """The epoch's order, cached so consecutive steps don't redraw it (O(num_examples) each)."""
  # Generator.permutation(n)'s order (the same draws of the same Fisher-Yates shuffle) in half
  # its memory: 4 bytes an example, not 8.
  permutation = np.arange(num_examples, dtype=np.int32 if num_examples < 2**31 else np.int64)
  np.random.default_rng((seed, epoch)).shuffle(permutation)
  permutation.flags.writeable = False  # Shared by the cache.
  return permutation


def process_slice(global_batch_size: int, process_index: int, process_count: int) -> slice:
  """The rows [start, stop) of a global batch that process `process_index` reads."""
  if process_count < 1 or global_batch_size % process_count:
    raise DataError(f"global batch size {global_batch_size} must divide by the number of "
                    f"processes ({process_count})")
  if not 0 <= process_index < process_count:
    raise DataError(f"process index {process_index} not in [0, {process_count})")
  local = global_batch_size // process_count
  return slice(process_index * local, (process_index + 1) * local)


def train_batches(images: np.ndarray,
                  labels: np.ndarray,
                  batch_size: int,
                  seed: int,
                  start_step: int = 0,
                  process_index: int = 0,
                  process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Infinite iterator of this process's rows of the global batch, for steps start_step, +1, ...

    Args:
      images: uint8 [num_examples, height, width, channels] (load_split's; a memory-mapped file
        is read a batch at a time), or floats in [0, 1].
      labels: [num_examples].
      batch_size: the global batch.
      seed, start_step: the data order's seed and the first step's.
      process_index, process_count: which rows of the global batch are this process's.

    Yields:
      {'image': float32 [batch_size // process_count, height, width, channels] in [0, 1]
       (to_float of the rows),
       'label': int32 [batch_size // process_count], 'index': int32 [batch_size //
       process_count], the rows of `images`}; resuming at step s yields what an
      uninterrupted iterator yields at step s.
    """
  rows = process_slice(batch_size, process_index, process_count)
  step = start_step
  gather = _FileRows.of(images)
  try:
    while True:
      index = batch_indices(len(images), batch_size, seed, step)[rows]
      yield {'image': to_float(gather(index) if gather else images[index]),
             'label': np.asarray(labels[index]), 'index': index.astype(np.int32)}
      step += 1
  finally:
    if gather:
      gather.close()


def call_indices(num_examples: int,
                 batch_size: int,
                 seed: int,
                 steps_per_call: int,
                 start_step: int = 0,
                 process_index: int = 0,
                 process_count: int = 1) -> Iterator[np.ndarray]:
  """Infinite iterator of this process's rows of K steps' batches, for a device-resident set.

  Yields:
    int32 `[batch_size // process_count, steps_per_call]`: column k holds the 'index' that
    `train_batches` yields for step start_step + k (then start_step + K + k, ...).
  """
  rows = process_slice(batch_size, process_index, process_count)
  for step in itertools.count(start_step, steps_per_call):
    yield np.stack([batch_indices(num_examples, batch_size, seed, s)[rows]
                    for s in range(step, step + steps_per_call)], axis=1).astype(np.int32)


class _FileRows:
  """Rows of a whole memory-mapped .npy (a cached split) read from its file with pread.

  Gathering through the mapping would map every page it touches, and with them the
  kernel's fault-around neighbours (64 KiB a row): over an epoch the whole file would be
  counted in the process's memory. Read, the rows pass through the page cache only, which
  belongs to no process and is reclaimed as needed.
  """

  def __init__(self, images: np.memmap):
    self._path = images.filename
    self._fd = os.open(images.filename, os.O_RDONLY)
    self._shape, self._dtype, self._offset = images.shape[1:], images.dtype, images.offset
    self._row = images.nbytes // len(images)
    self._close = os.close  # Kept: a generator closed at interpreter exit may outlive `os`.

  @classmethod
  def of(cls, images: np.ndarray) -> '_FileRows | None':
    """A reader of `images`' rows if it maps a whole .npy's data, else None (index it)."""
    if not (isinstance(images, np.memmap) and images.filename and len(images) and
            images.flags.c_contiguous):
      return None
    try:  # A slice of a memmap keeps the file's offset: only the whole array is read by it.
      whole = os.path.getsize(images.filename) == images.offset + images.nbytes
    except OSError:
      return None
    return cls(images) if whole else None

  def __call__(self, index: np.ndarray) -> np.ndarray:
    out = np.empty((len(index), *self._shape), self._dtype)
    buffer = memoryview(out).cast('B')
    for i, row in enumerate(index):
      part = buffer[i * self._row:(i + 1) * self._row]
      if os.preadv(self._fd, [part], self._offset + int(row) * self._row) != self._row:
        raise DataError(f'{self._path} ended before row {row}; delete it (the decoded '
                        'cache decodes the split again) and run again')
    return out

  def close(self) -> None:
    self._close(self._fd)


_END = object()  # prefetch's marker: the batches ran out


def prefetch(batches: Iterator[Any], put: Callable[[Any], Any], size: int = 2) -> Iterator[Any]:
  """`put(batch)` for each batch, computed `size` batches ahead on a background thread.

  The host work of a batch (gathering its rows, the copy to the devices)
  overlaps the device's work on the steps before it, so the training loop
  does no per-batch work but hand the step an array already on device.

  Args:
    batches: host batches, e.g. `train_batches(...)`.
    put: places a host batch on devices, e.g. `Placement.put_batch`.
    size: batches in flight.

  Yields:
    `put(batch)` for each batch, in order; an exception raised reading or
    placing a batch is raised here. Close the generator (`.close()`) when
    done with it: that stops and joins the thread.
  """
  ready: queue.Queue = queue.Queue(maxsize=size)
  done = threading.Event()

  def offer(item) -> bool:
    """Queues `item` unless the consumer has stopped; False once it has."""
    while not done.is_set():
      try:
        ready.put(item, timeout=0.1)
        return True
      except queue.Full:  # the consumer is behind: look again whether it stopped
        continue
    return False

  def fill():
    try:
      for batch in batches:
        if not offer((put(batch), None)):
          return
    except Exception as error:  # pylint: disable=broad-except  # re-raised in the consumer
      offer((None, error))
      return
    offer((None, _END))

  thread = threading.Thread(target=fill, daemon=True, name='prefetch')
  thread.start()
  try:
    while True:
      item, error = ready.get()
      if error is _END:
        return
      if error is not None:
        raise error
      yield item
  finally:  # the consumer stopped or ended: the thread ends before we return, so that
    done.set()  # it is not inside a JAX call when the interpreter exits
    thread.join()


def in_batches(fn: Callable[[np.ndarray], tuple], inputs: np.ndarray,
               batch_size: int, progress: str | None = None) -> tuple[np.ndarray, ...]:
  """Applies `fn` to fixed-size batches of `inputs` and concatenates its outputs.

  Batches are `batch_size` rows, the last padded with zeros, so that a jitted `fn` compiles
  once for every input of `batch_size` rows or more (eval.py's splits). Fewer rows are one
  batch padded to the next power of two, at most `batch_size`, not to `batch_size`: a call
  on one image runs a batch of 1, not of 500, and few shapes compile. No rows: `fn` runs on
  one row of zeros and the outputs have 0 rows (their shape and dtype otherwise `fn`'s).

  Args:
    fn: maps `[rows, ...]` to a tuple of arrays `[rows, ...]`.
    inputs: `[n, ...]`.
    batch_size: rows per call, a positive integer.
    progress: if set, a progress bar on stderr with this description counts
      the rows done (encoding a test set can take minutes).

  Returns:
    The tuple of `fn`'s outputs over all n rows, as host arrays.

  Raises:
    TypeError: `batch_size` is not an integer (64.0, True); ValueError: it is below 1.
  """
  check_count('batch_size', batch_size)
  n = len(inputs)
  rows = batch_size if n >= batch_size else min(batch_size, 1 << max(n - 1, 0).bit_length())
  parts = []
  with tqdm.tqdm(total=n, desc=progress, disable=progress is None, dynamic_ncols=True,
                 unit='image') as bar:
    for start in range(0, max(n, 1), rows):
      chunk = np.asarray(inputs[start:start + rows])
      padded = np.concatenate([chunk, np.zeros((rows - len(chunk), *chunk.shape[1:]),
                                               chunk.dtype)])
      parts.append([np.asarray(out)[:len(chunk)] for out in jax.device_get(fn(padded))])
      bar.update(len(chunk))
  return tuple(np.concatenate(outs) for outs in zip(*parts))
