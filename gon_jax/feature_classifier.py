"""The feature space of sample quality: a small convnet trained once per data set to classify its
images, whose penultimate layer's activations are the features of the Fréchet distance
(gon_jax.sample_quality, docs/sample_quality.md).

The classifier is trained on a data set's training split as gon_jax.data reads it
(`load_split`, `train_batches`), at the image size and channels of the model being measured,
deterministically from a seed, and kept in a cache folder (`cache_dir()`) keyed by the data
set, the images' content, the size, the channels, the seed, the training length and
`VERSION`. An entry is written atomically (a temporary folder renamed into place) with its
files' sha256 record (gon_jax.file_hashes) and its test accuracy; a damaged entry is
detected by that record, never loaded, and trained again.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import shutil
import socket
import sys
import time
from typing import Callable

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gon_jax import data, download, file_hashes
from gon_jax.errors import DamagedFileError, DataError, check_count

# Raise when the network, its training or the cache entry's layout changes: every cached
# classifier is then trained again.
VERSION = 1
NUM_FEATURES = 128  # the penultimate layer's width: the feature space's dimension
WIDTHS = (32, 64)  # two conv blocks, each a 3x3 conv and a 3x3 conv of stride 2
BATCH_SIZE = 64
LEARNING_RATE = 1e-3
DEFAULT_EPOCHS = 2
EVAL_BATCH_SIZE = 500
VARIABLES = 'variables.msgpack'
INFO = 'info.json'


class FeatureClassifier(nn.Module):
  """Conv blocks (3x3 conv, ReLU, 3x3 conv of stride 2, ReLU) per width, a dense layer of
  `num_features` ReLU units (the features) and a linear layer to the class logits.

  Attributes:
    num_classes: the logits' width.
    num_features: the features' width.
    widths: each conv block's channels.
  """
  num_classes: int
  num_features: int = NUM_FEATURES
  widths: tuple[int, ...] = WIDTHS

  @nn.compact
  def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Args: images float32 `[n, height, width, channels]` in [0, 1].

    Returns:
      `(logits [n, num_classes], features [n, num_features])`.
    """
    x = images * 2.0 - 1.0
    for width in self.widths:
      x = nn.relu(nn.Conv(width, (3, 3))(x))
      x = nn.relu(nn.Conv(width, (3, 3), strides=(2, 2))(x))
    features = nn.relu(nn.Dense(self.num_features)(x.reshape(len(x), -1)))
    return nn.Dense(self.num_classes)(features), features


@dataclasses.dataclass(frozen=True)
class Classifier:
  """A trained feature classifier.

  Attributes:
    module: the network (its `num_classes`).
    variables: `{'params': ...}`.
    info: what the cache entry records: `test_accuracy`, `epochs`, `steps`, `seed`,
      `image_shape`, `data` (name, source, fingerprint), `version`, `train_seconds`.
    path: the cache entry it was read from or written to ('' when not cached).
  """
  module: FeatureClassifier
  variables: dict
  info: dict
  path: str = ''

  @property
  def test_accuracy(self) -> float:
    return float(self.info['test_accuracy'])

  def features(self, images: np.ndarray, progress: str | None = None) -> np.ndarray:
    """The features float32 `[n, num_features]` of images `[n, height, width, channels]`
    (uint8, or floats in [0, 1]), in batches (data.in_batches)."""
    apply = _compiled_apply(self.module)
    return data.in_batches(lambda batch: (apply(self.variables, data.to_float(batch))[1],),
                           images, EVAL_BATCH_SIZE, progress)[0]

  def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of `images` whose most likely class is their label `[n]`."""
    apply = _compiled_apply(self.module)
    (logits,) = data.in_batches(lambda batch: (apply(self.variables, data.to_float(batch))[0],),
                                images, EVAL_BATCH_SIZE)
    return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(labels)))


@functools.lru_cache(maxsize=4)
def _compiled_apply(module: FeatureClassifier) -> Callable:
  """`apply(variables, images) -> (logits, features)`, jitted once per module and shape."""
  return jax.jit(module.apply)


def fingerprint(*arrays: np.ndarray) -> str:
  """The sha256 of arrays' shapes, dtypes and bytes (a data set's splits): a cached
  classifier is the one of these very images, whatever folder they were read from."""
  digest = hashlib.sha256()
  for array in arrays:
    digest.update(json.dumps([list(array.shape), str(array.dtype)]).encode())
    for start in range(0, len(array), 4096):  # a memory-mapped split, a block at a time
      digest.update(np.ascontiguousarray(array[start:start + 4096]).tobytes())
  return digest.hexdigest()


_OPTIMIZER = optax.adam(LEARNING_RATE)


@functools.partial(jax.jit, static_argnums=0)
def _train_step(module: FeatureClassifier, params: dict, opt_state: optax.OptState,
                images: jax.Array, labels: jax.Array) -> tuple[dict, optax.OptState, jax.Array]:
  """One Adam step on the batch's mean cross-entropy: `(params, opt_state, loss)`. Compiled
  once per module and batch shape in a process (module-level, so training again reuses it)."""
  def loss(params):
    logits, _ = module.apply({'params': params}, images)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  value, grads = jax.value_and_grad(loss)(params)
  updates, opt_state = _OPTIMIZER.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, value


def train(train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
          test_labels: np.ndarray, *, seed: int = 0, epochs: int = DEFAULT_EPOCHS,
          progress: bool = True) -> Classifier:
  """Trains a FeatureClassifier with Adam on cross-entropy, deterministically given `seed`.

  Batches are data.train_batches' (seed `seed`) of BATCH_SIZE images (all n when fewer):
  `epochs * (n // BATCH_SIZE)` steps, the incomplete last batch of each epoch dropped as the
  pipeline drops it.

  Args:
    train_images, test_images: uint8 `[n, height, width, channels]` (data.load_split's).
    train_labels, test_labels: int `[n]` in [0, num_classes).
    seed: the initialisation's and the data order's seed.
    epochs: passes over the training images, at least 1.
    progress: a progress bar on stderr.

  Returns:
    The Classifier, its `info` with `test_accuracy` on the test images (path '').

  Raises:
    DataError: fewer than 2 classes among the training labels (CelebA, a folder without
      class folders).
    TypeError, ValueError: `epochs` is not a positive integer.
  """
  check_count('epochs', epochs)
  num_classes = int(np.max(train_labels)) + 1 if len(train_labels) else 0
  if num_classes < 2:
    raise DataError('the training images have no classes (every label is 0, as in CelebA or '
                    'a folder without class folders): the feature classifier of sample quality '
                    'needs labelled images')
  batch_size = min(BATCH_SIZE, len(train_images))
  steps = epochs * (len(train_images) // batch_size)
  module = FeatureClassifier(num_classes)
  variables = module.init(jax.random.key(seed), data.to_float(train_images[:1]))
  params, start = variables['params'], time.perf_counter()
  opt_state = _OPTIMIZER.init(params)
  batches = data.train_batches(train_images, train_labels, batch_size, seed)
  bar = _progress(steps, progress)
  for _ in range(steps):
    batch = next(batches)
    params, opt_state, loss = _train_step(module, params, opt_state, batch['image'],
                                          batch['label'])
    bar.update()
    if bar.n % 100 == 0:
      bar.set_postfix(loss=f'{float(loss):.3f}')
  bar.close()
  batches.close()
  classifier = Classifier(module, {'params': jax.device_get(params)}, {})
  info = dict(test_accuracy=classifier.accuracy(test_images, test_labels), epochs=epochs,
              steps=steps, batch_size=batch_size, seed=seed, num_classes=num_classes,
              num_features=module.num_features, image_shape=list(train_images.shape[1:]),
              train_images=len(train_images), test_images=len(test_images),
              train_seconds=round(time.perf_counter() - start, 1), version=VERSION)
  return dataclasses.replace(classifier, info=info)


def _progress(steps: int, enabled: bool):
  import tqdm  # pylint: disable=import-outside-toplevel
  return tqdm.tqdm(total=steps, desc='training the feature classifier', unit='step',
                   disable=not enabled, dynamic_ncols=True)


def cache_dir() -> pathlib.Path:
  """The cached classifiers' folder: $XDG_CACHE_HOME/gon_jax/classifiers, else
  ~/.cache/gon_jax/classifiers (beside the decoded cache; delete it to train them again)."""
  return download.cache_dir('classifiers')


def entry_name(data_name: str, source: str, image_shape: tuple[int, ...], seed: int,
               epochs: int, data_fingerprint: str) -> str:
  """The cache entry's folder name: what the classifier is made of, readable, and the images'
  fingerprint, e.g. `mnist-idx-32x32x1-seed0-epochs2-v1-<16 hex digits>`."""
  shape = 'x'.join(str(d) for d in image_shape)
  return (f'{data_name}-{source}-{shape}-seed{seed}-epochs{epochs}-v{VERSION}-'
          f'{data_fingerprint[:16]}')


def load_entry(entry: pathlib.Path) -> Classifier:
  """A cached classifier, its files checked against their sha256 record first.

  Raises:
    FileNotFoundError: no entry there.
    DamagedFileError: a file missing, truncated, of other bytes, or that does not parse.
  """
  if not entry.is_dir():
    raise FileNotFoundError(f'no cached classifier in {entry}')
  file_hashes.check_record(entry, 'the cached feature classifier')
  try:
    info = json.loads((entry / INFO).read_text(encoding='utf-8'))
    module = FeatureClassifier(int(info['num_classes']), int(info['num_features']))
    template = jax.eval_shape(module.init, jax.random.key(0),
                              jnp.zeros((1, *info['image_shape']), jnp.float32))
    variables = flax.serialization.from_bytes(template, (entry / VARIABLES).read_bytes())
  except (ValueError, KeyError, TypeError) as err:
    raise DamagedFileError(f'the cached feature classifier in {entry} does not parse '
                           f'({type(err).__name__}); delete it') from None
  return Classifier(module, jax.tree.map(np.asarray, variables), info, str(entry))


def save_entry(classifier: Classifier, entry: pathlib.Path) -> Classifier:
  """Writes `classifier` as the cache entry `entry` atomically: its files and their sha256
  record in a temporary folder, renamed into place (a reader sees a whole entry or none).

  Returns:
    The classifier with `path` the entry.
  """
  entry.parent.mkdir(parents=True, exist_ok=True)
  temporary = entry.parent / f'.{entry.name}.{socket.gethostname()}.{os.getpid()}.tmp'
  shutil.rmtree(temporary, ignore_errors=True)
  temporary.mkdir()
  try:
    (temporary / VARIABLES).write_bytes(flax.serialization.to_bytes(classifier.variables))
    (temporary / INFO).write_text(json.dumps(classifier.info, indent=1, sort_keys=True) + '\n',
                                  encoding='utf-8')
    file_hashes.write_record(temporary)
    try:
      os.rename(temporary, entry)
    except OSError:  # another process wrote it first: its entry is the same classifier
      if not entry.is_dir():
        raise
  finally:
    shutil.rmtree(temporary, ignore_errors=True)
  return dataclasses.replace(classifier, path=str(entry))


def trained(splits: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], data_name: str,
            source: str, *, seed: int = 0, epochs: int = DEFAULT_EPOCHS,
            progress: bool = True) -> Classifier:
  """The feature classifier of a data set's images: the cached one, or one trained now and
  cached (`train`).

  Args:
    splits: `(train images, train labels, test images, test labels)`, uint8 images at the
      measured model's size and channels (gon_jax.data.load_data's).
    data_name, source: the data set's name and source (config.data's), for the entry's name.
    seed, epochs: `train`'s.
    progress: a progress bar on stderr while training.

  Raises:
    DataError: the data has no classes (`train`).
  """
  entry = cache_dir() / entry_name(data_name, source, splits[0].shape[1:], seed, epochs,
                                   fingerprint(*splits))
  try:
    return load_entry(entry)
  except FileNotFoundError:  # not cached yet: trained below
    pass
  except DamagedFileError as err:  # detected, never loaded: trained again in its place
    print(f'warning: {err}; training it again', file=sys.stderr, flush=True)
    shutil.rmtree(entry, ignore_errors=True)
  classifier = train(*splits, seed=seed, epochs=epochs, progress=progress)
  try:
    return save_entry(classifier, entry)
  except OSError as err:  # a read-only or full disk: measured anyway, trained again next time
    print(f'warning: cannot write the feature classifier to {entry} ({err}); not cached',
          file=sys.stderr, flush=True)
    return classifier
