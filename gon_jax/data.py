"""Data: whole data sets held in host memory as numpy, deterministic, resumable training
batches, and fixed-size batches of any array through a function (`in_batches`).

Four sources. Three read a data set's files as their publishers ship them, without TensorFlow,
downloading the sets gon_jax knows into a cache folder the first time (gon_jax.download): 'idx'
reads the four IDX files of MNIST-like sets (MNIST and Fashion-MNIST download), 'cifar' the
python version of CIFAR-10 (its archive or the extracted folder), 'celeba' CelebA's aligned
JPEGs (their zip or its extracted folder) and its split file. 'tfds' reads a prepared TFDS
data set through `tfds.data_source` (array_record, no TensorFlow).
Images come back as float32 [num_examples, height, width, channels] in [0, 1].
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import gzip
import io
import os
import pathlib
import pickle
import queue
import socket
import tarfile
import threading
import urllib.error
import zipfile
from typing import Any, Callable, Iterator

import jax
import numpy as np
from PIL import Image
import tqdm

from gon_jax import download
from gon_jax.errors import DataError


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
SOURCES = ('idx', 'cifar', 'celeba', 'tfds')
SPLITS = ('train', 'test')

_IDX_PREFIX = {'train': 'train', 'test': 't10k'}
_IDX_MAGIC = {'images': 0x00000803, 'labels': 0x00000801}
_LABEL_KEYS = ('label', 'label_category')  # 'label_category' is smallnorb's class.
_CHUNK = 4096  # Examples per resize / tfds read: bounds the temporary memory.
_files_cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


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


def _resize_matrix(size_in: int, size_out: int) -> np.ndarray:
  """[size_out, size_in] weights of 1-D linear interpolation with half-pixel centres.

    Matches jax.image.resize('bilinear') and PIL/torchvision bilinear: a triangle kernel, widened
    by the scale when shrinking (antialias), renormalised over the taps inside the image.
    """
  scale = size_in / size_out
  width = max(scale, 1.0)
  centres = (np.arange(size_out) + 0.5) * scale - 0.5
  weights = np.maximum(0.0, 1.0 - np.abs(np.arange(size_in)[None, :] - centres[:, None]) / width)
  return weights / weights.sum(axis=1, keepdims=True)


def _to_float(images: np.ndarray, image_size: int | None) -> np.ndarray:
  """uint8 [N, H, W, C] -> float32 [N, S, S, C] in [0, 1]; bilinear resize when S != H or W."""
  n, h, w, c = images.shape
  if image_size is None or (h, w) == (image_size, image_size):
    return images.astype(np.float32) / 255.0
  mat_h = _resize_matrix(h, image_size).astype(np.float32) / 255.0  # Folds in the /255.
  mat_w = _resize_matrix(w, image_size).astype(np.float32)
  out = np.empty((n, image_size, image_size, c), np.float32)
  for start in range(0, n, _CHUNK):  # Chunks keep the float32 temporaries small.
    x = images[start:start + _CHUNK].astype(np.float32)
    x = np.tensordot(x, mat_h, axes=([1], [1]))  # [n, W, C, S]: separable, two GEMMs.
    x = np.tensordot(x, mat_w, axes=([1], [1]))  # [n, C, S, S]
    out[start:start + _CHUNK] = x.transpose(0, 2, 3, 1)
  return np.clip(out, 0.0, 1.0, out=out)  # Guards against float rounding just past 1.


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


def _square(image: Image.Image, size: int | None) -> np.ndarray:
  """The centred square crop of an RGB image, resized to size x size (bilinear, antialiased
  as PIL shrinks; None: kept), as uint8 [size, size, 3]."""
  width, height = image.size
  side = min(width, height)
  left, top = (width - side) // 2, (height - side) // 2
  image = image.convert('RGB').crop((left, top, left + side, top + side))
  if size is not None and size != side:
    image = image.resize((size, size), Image.Resampling.BILINEAR)
  return np.asarray(image, np.uint8)


def _read_celeba(paths: list[pathlib.Path], split: str,
                 image_size: int | None) -> tuple[np.ndarray, np.ndarray]:
  """CelebA's images of `split` (list_eval_partition.txt: 0 train, 2 test), each cropped to its
  centred square and resized to `image_size` as it is decoded (the whole set at full size would
  not fit in memory), read from img_align_celeba.zip or its extracted folder.

  Returns:
    (uint8 images [N, S, S, 3], zero labels [N]: CelebA has no classes).
  """
  partition, images = paths
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
  bar = tqdm.tqdm(total=len(names), desc=f'decoding CelebA {split} images', unit='image',
                  dynamic_ncols=True)
  try:
    with (zipfile.ZipFile(images) if images.is_file() else contextlib.nullcontext()) as archive:
      if archive is None:
        read = lambda name: (images / name).read_bytes()
      else:  # The zip's entries are img_align_celeba/<name>; reads are serialised by a lock.
        lock = threading.Lock()

        def read(name):
          with lock:
            return archive.read(f'{_CELEBA_FOLDER}/{name}')

      def decode(name):
        square = _square(Image.open(io.BytesIO(read(name))), image_size)
        bar.update()
        return square

      # PIL decodes and resizes without holding the GIL: one thread per core.
      with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        decoded = np.stack(list(pool.map(decode, names)))
  except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:  # PIL: OSError/ValueError
    raise DataError(f"cannot read CelebA's {split} images from {images} ({type(e).__name__}: "
                    f"{e}); it must hold every JPEG {_CELEBA_PARTITION} names, as "
                    f"{_CELEBA_ZIP}; re-download it") from None
  finally:
    bar.close()
  return decoded, np.zeros(len(decoded), np.int64)


@dataclasses.dataclass(frozen=True)
class _FileFormat:
  """How a source that reads published files finds and parses a split in a folder."""
  # (folder, split, hint) -> the files holding the split; raises a DataError naming what is
  # missing (and `hint`, a way out).
  paths: Callable[[pathlib.Path, str, str], list[pathlib.Path]]
  # (the paths, split, image size or None) -> (uint8 images [N, H, W, C], integer labels [N]);
  # a format may resize as it reads (or leave it to _to_float).
  read: Callable[[list[pathlib.Path], str, int | None], tuple[np.ndarray, np.ndarray]]
  holds_any: Callable[[pathlib.Path], bool]  # Whether a folder holds any of the set's files.
  title: str  # The format's name, for messages: 'IDX'.
  example: str  # What the folder should hold, for messages.


def _idx_paths(folder: pathlib.Path, split: str, hint: str) -> list[pathlib.Path]:
  return [_idx_file(folder, split, kind, hint) for kind in ('images', 'labels')]


def _read_idx_split(paths: list[pathlib.Path], split: str,
                    image_size: int | None) -> tuple[np.ndarray, np.ndarray]:
  del image_size  # _to_float resizes
  images, labels = (_read_idx(p, kind) for p, kind in zip(paths, ('images', 'labels')))
  folder = paths[0].parent
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
        'IDX', "the four IDX files (e.g. MNIST's train-images-idx3-ubyte.gz)"),
    'cifar': _FileFormat(
        _cifar_paths, lambda paths, split, image_size: _read_cifar(paths[0], split),
        lambda folder: _find_cifar(folder) is not None,
        'CIFAR-10', f'{_CIFAR_ARCHIVE} or its extracted {_CIFAR_FOLDER}/'),
    'celeba': _FileFormat(
        _celeba_paths, _read_celeba,
        lambda folder: (folder / _CELEBA_PARTITION).exists() or bool(_find_celeba_images(folder)),
        'CelebA', f'{_CELEBA_PARTITION} and {_CELEBA_ZIP} (or its extracted {_CELEBA_FOLDER}/)'),
}


def _files_folder(data_config: Any) -> tuple[pathlib.Path, str]:
  """The folder of `data_config`'s files, with a known set's downloaded into it if it has none.

    Returns:
      (the folder, a hint for messages about missing files: how to let them download, or '').
    """
  name, source = data_config.name, data_config.source
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


def _load_files(data_config: Any, split: str, image_size: int | None):
  """load_split for the sources that read published files ('idx', 'cifar', 'celeba')."""
  file_format = _FORMATS[data_config.source]
  folder, hint = _files_folder(data_config)
  if not folder.is_dir():
    raise DataError(f"{file_format.title} folder {folder} does not exist; set "
                    f"--config.data.dir to the folder holding {file_format.example}{hint}")
  paths = file_format.paths(folder, split, hint)
  key = (tuple((str(p.resolve()), p.stat().st_mtime_ns) for p in paths), split, image_size)
  if key not in _files_cache:  # Parsing + resizing 60k images once per process is enough.
    images, labels = file_format.read(paths, split, image_size)
    result = (_to_float(images, image_size), labels.astype(np.int32))
    for array in result:
      array.flags.writeable = False  # Shared by every caller: keep it read-only.
    _files_cache[key] = result
  return _files_cache[key]


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
      images.append(_to_float(chunk if chunk.ndim == 4 else chunk[..., None], image_size))
      key = next((k for k in _LABEL_KEYS if k in records[0]), None)
      labels.append(np.array([r[key] if key else 0 for r in records], np.int32))
  except Exception as e:  # tfds raises many types (NotImplementedError, ImportError, OSError...).
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


def load_split(data_config: Any, split: str,
               image_size: int | None) -> tuple[np.ndarray, np.ndarray]:
  """Loads a whole split into host memory.

    Args:
      data_config: object with attributes `source` (one of SOURCES), `name` (data set name),
        `dir` (idx, cifar, celeba: the folder with the files, None or '' for the cache folder
        of a set that downloads, download.cache_dir(name); tfds: data_dir, None or '' for the
        default), and optionally `download` (default True: the file sources download the sets
        in download.KNOWN into a folder without their files; tfds may download and prepare the
        set) and `mirror` (the file sources: a base URL to download from instead of the set's
        usual addresses; '' for those).
      split: 'train' or 'test'.
      image_size: if set and different from the stored size, images are resized once to
        image_size x image_size with bilinear interpolation (like torchvision Resize); CelebA's
        are first cropped to their centred square.

    Returns:
      (images float32 [num_examples, height, width, channels] in [0, 1], labels int32 [num_examples]).
    """
  source, name = data_config.source, data_config.name
  if split not in SPLITS:
    raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
  if source in _FORMATS:
    return _load_files(data_config, split, image_size)
  if source == 'tfds':
    if name not in DATASETS:
      raise DataError(f"unknown data set {name!r}; use one of {', '.join(sorted(DATASETS))}")
    return _load_tfds(name, split, data_config.dir or None, image_size,
                      bool(getattr(data_config, 'download', True)))
  raise DataError(f"unknown data source {source!r}; use one of {', '.join(SOURCES)}")


def batch_indices(num_examples: int, batch_size: int, seed: int, step: int) -> np.ndarray:
  """Global example indices [batch_size] of training step `step`; a pure function of (seed, step).

    Each epoch is a fresh permutation from np.random.default_rng((seed, epoch)); an epoch has
    num_examples // batch_size steps (the incomplete last batch is dropped).
    """
  if not 0 < batch_size <= num_examples:
    raise DataError(
        f"batch size {batch_size} must be in [1, {num_examples}] (the number of examples)")
  epoch, position = divmod(step, num_examples // batch_size)
  return _permutation(num_examples, seed, epoch)[position * batch_size:(position + 1) * batch_size]


@functools.lru_cache(maxsize=4)
def _permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  """The epoch's order, cached so consecutive steps don't redraw it (O(num_examples) each)."""
  permutation = np.random.default_rng((seed, epoch)).permutation(num_examples)
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

    Yields:
      {'image': float32 [batch_size // process_count, height, width, channels],
       'label': int32 [batch_size // process_count], 'index': int32 [batch_size //
       process_count], the rows of `images`}; resuming at step s yields what an
      uninterrupted iterator yields at step s.
    """
  rows = process_slice(batch_size, process_index, process_count)
  step = start_step
  while True:
    index = batch_indices(len(images), batch_size, seed, step)[rows]
    yield {'image': images[index], 'label': labels[index],  # Fancy indexing copies.
           'index': index.astype(np.int32)}
    step += 1


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

  The last batch is padded with zeros, so a jitted `fn` compiles once.

  Args:
    fn: maps `[batch_size, ...]` to a tuple of arrays `[batch_size, ...]`.
    inputs: `[n, ...]`.
    batch_size: rows per call.
    progress: if set, a progress bar on stderr with this description counts
      the rows done (encoding a test set can take minutes).

  Returns:
    The tuple of `fn`'s outputs over all n rows, as host arrays.
  """
  parts = []
  with tqdm.tqdm(total=len(inputs), desc=progress, disable=progress is None,
                 dynamic_ncols=True, unit='image') as bar:
    for start in range(0, len(inputs), batch_size):
      chunk = np.asarray(inputs[start:start + batch_size])
      padded = np.concatenate([chunk, np.zeros((batch_size - len(chunk), *chunk.shape[1:]),
                                               chunk.dtype)])
      parts.append([np.asarray(out)[:len(chunk)] for out in jax.device_get(fn(padded))])
      bar.update(len(chunk))
  return tuple(np.concatenate(outs) for outs in zip(*parts))
