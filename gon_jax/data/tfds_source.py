"""The 'tfds' source: a prepared TFDS data set read through `tfds.data_source` (array_record, no
TensorFlow); tensorflow_datasets is imported only when this source is used.
"""

from __future__ import annotations

import socket
import urllib.error

import numpy as np

from gon_jax import download
from gon_jax.data.decoding import _resize
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
_LABEL_KEYS = ('label', 'label_category')  # 'label_category' is smallnorb's class.
_CHUNK = 4096  # Examples per tfds read: bounds the temporary memory.


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
