"""Tests of gon_jax.data: IDX parsing and its errors, resizing, deterministic batches, tfds source."""

from __future__ import annotations

import gzip
import pickle
import re
import subprocess
import sys
import tarfile
import time
import types

import numpy as np
import pytest

from gon_jax import data, download

from testing_utils import (IDX_NAMES, MNIST_DIR, NEEDS_MNIST, REPO, cifar_batch_bytes, idx_bytes,
                           write_celeba, write_cifar_archive, write_idx_folder)


def config(source: str = 'idx', name: str = 'mnist', folder=None, **extra) -> types.SimpleNamespace:
  """A stand-in for the ConfigDict `config.data`, downloads off unless `download=True` is given
  (tests/test_download.py tests them, against local servers)."""
  return types.SimpleNamespace(source=source, name=name,
                               dir=None if folder is None else str(folder),
                               **{'download': False, **extra})


@pytest.fixture
def tiny_set() -> tuple[dict, dict]:
  """Random uint8 images [N, 28, 28] and labels [N] for both splits (7 train, 3 test)."""
  rng = np.random.default_rng(0)
  images = {
      s: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for s, n in (('train', 7), ('test', 3))
  }
  images['train'][0, 0, 0], images['train'][0, 0, 1] = 0, 255  # Both ends of the range.
  labels = {s: rng.integers(0, 10, len(images[s]), dtype=np.uint8) for s in images}
  return images, labels


@pytest.mark.parametrize('gz', [True, False])
def test_idx_reader_exact_values(tmp_path, tiny_set, gz):
  images, labels = tiny_set
  folder = write_idx_folder(tmp_path / 'set', images, labels, gz)
  for split in data.SPLITS:
    x, y = data.load_split(config(folder=folder), split, None)
    assert x.shape == (len(images[split]), 28, 28, 1) and x.dtype == np.uint8  # As stored.
    assert y.dtype == np.int32
    np.testing.assert_array_equal(x[..., 0], images[split])
    np.testing.assert_array_equal(y, labels[split])
  x, _ = data.load_split(config(folder=folder), 'train', None)
  assert data.to_float(x)[0, 0, 0, 0] == 0.0 and data.to_float(x)[0, 0, 1, 0] == 1.0


def test_idx_dotted_names(tmp_path, tiny_set):
  """The dotted variant `train-images.idx3-ubyte` is accepted too."""
  images, labels = tiny_set
  folder = write_idx_folder(tmp_path / 'set', images, labels, gz=False)
  for name in IDX_NAMES:
    (folder / name).rename(folder / name.replace('-idx', '.idx'))
  x, y = data.load_split(config(folder=folder), 'test', None)
  np.testing.assert_array_equal(y, labels['test'])
  assert x.shape == (3, 28, 28, 1)


def assert_one_line_error(cfg, match: str) -> None:
  with pytest.raises(data.DataError, match=match) as info:
    data.load_split(cfg, 'train', None)
  assert '\n' not in str(info.value)


def test_idx_errors(tmp_path, tiny_set):
  images, labels = tiny_set
  assert_one_line_error(config(folder=tmp_path / 'nowhere'), 'does not exist')
  (tmp_path / 'empty').mkdir()
  assert_one_line_error(config(folder=tmp_path / 'empty'), 'is empty.*train-images-idx3-ubyte')
  # Downloads off: the way out is named for the sets that download, not for a user's own set.
  assert_one_line_error(config(folder=tmp_path / 'empty'), r'download=True to download mnist$')
  assert_one_line_error(config(name='my_set', folder=tmp_path / 'empty'), r'-ubyte\[\.gz\]\)$')
  assert_one_line_error(config(name='my_set', folder=None), "needs a folder for data set 'my_set'")

  folder = write_idx_folder(tmp_path / 'partial', images, labels, gz=True)
  (folder / 'train-labels-idx1-ubyte.gz').unlink()
  assert_one_line_error(config(folder=folder), 'train-labels-idx1-ubyte')
  # A partial set is the user's: never completed with downloaded files (no network here).
  assert_one_line_error(config(folder=folder, download=True, mirror='http://127.0.0.1:9/'),
                        'has no train-labels-idx1-ubyte.*empty the folder: mnist then downloads')

  # Labels file where the images file should be: magic 0x801 instead of 0x803.
  folder = write_idx_folder(tmp_path / 'magic', images, labels, gz=False)
  (folder / 'train-images-idx3-ubyte').write_bytes(idx_bytes(labels['train']))
  assert_one_line_error(config(folder=folder), 'magic number 0x801')

  folder = write_idx_folder(tmp_path / 'truncated', images, labels, gz=False)
  (folder / 'train-images-idx3-ubyte').write_bytes(idx_bytes(images['train'])[:-10])
  assert_one_line_error(config(folder=folder), 'truncated')

  folder = write_idx_folder(tmp_path / 'count', images, labels, gz=True)
  (folder / 'train-labels-idx1-ubyte.gz').write_bytes(
      gzip.compress(idx_bytes(labels['train'][:-1])))
  assert_one_line_error(config(folder=folder), '7 images but 6 labels')

  folder = write_idx_folder(tmp_path / 'badgz', images, labels, gz=True)
  (folder / 'train-images-idx3-ubyte.gz').write_bytes(b'\x1f\x8b' + b'not gzip')
  assert_one_line_error(config(folder=folder), 'cannot read')


@pytest.fixture
def tiny_cifar() -> tuple[dict, dict]:
  """Random uint8 images [N, 32, 32, 3] and labels [N] (11 train, 4 test); the first train
  image is black but for one pure red, one pure green and one pure blue pixel."""
  rng = np.random.default_rng(1)
  images = {s: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            for s, n in (('train', 11), ('test', 4))}
  images['train'][0] = 0
  images['train'][0, 0, 1, 0] = images['train'][0, 2, 0, 1] = images['train'][0, 31, 31, 2] = 255
  labels = {s: rng.integers(0, 10, len(images[s])) for s in images}
  return images, labels


def test_cifar_reader_exact_values_from_the_archive_and_the_extracted_folder(tmp_path, tiny_cifar):
  """Images and labels in the batches' own order (data_batch_1 to 5): CIFAR-10's authors'
  order, its classes already mixed (test_batch starts cat, ship, ship, airplane), so the
  grids' first test images show every class without the folder source's round robin."""
  images, labels = tiny_cifar
  archive = write_cifar_archive(tmp_path / 'set' / 'cifar-10-python.tar.gz', images, labels)
  # The published layout, byte by byte: a row holds the red, green, blue planes, row-major.
  row = pickle.loads(cifar_batch_bytes(images['train'][:1], labels['train'][:1], 'b'),
                     encoding='bytes')[b'data'][0]
  assert np.flatnonzero(row).tolist() == [1, 1024 + 2 * 32, 2048 + 31 * 32 + 31]
  with tarfile.open(archive) as tar:
    tar.extractall(tmp_path / 'extracted', filter='data')
  for folder in (tmp_path / 'set', tmp_path / 'extracted', tmp_path / 'extracted' /
                 'cifar-10-batches-py'):
    for split in ('train', 'test'):
      x, y = data.load_split(config('cifar', 'cifar10', folder), split, None)
      assert x.dtype == np.uint8 and x.shape == (len(images[split]), 32, 32, 3)
      np.testing.assert_array_equal(x, images[split])
      np.testing.assert_array_equal(y, labels[split])
  x, _ = data.load_split(config('cifar', 'cifar10', tmp_path / 'set'), 'test', 16)
  assert x.shape == (4, 16, 16, 3)


def test_cifar_errors(tmp_path, tiny_cifar):
  (tmp_path / 'empty').mkdir()
  assert_one_line_error(config('cifar', 'cifar10', tmp_path / 'empty'),
                        'holds neither cifar-10-python.tar.gz nor its extracted')
  assert_one_line_error(config('idx', 'cifar10', tmp_path), 'read by the cifar source.*source=cifar')
  assert_one_line_error(config('cifar', 'mnist', tmp_path), 'read by the idx source.*source=idx')
  assert_one_line_error(config('cifar', 'my_set'), "cifar source needs a folder for data set 'my_set'")

  images, labels = tiny_cifar
  archive = write_cifar_archive(tmp_path / 'cut' / 'cifar-10-python.tar.gz', images, labels)
  archive.write_bytes(archive.read_bytes()[:-200])
  assert_one_line_error(config('cifar', 'cifar10', archive.parent), "cannot read CIFAR-10's train")

  folder = tmp_path / 'foreign' / 'cifar-10-batches-py'  # A pickle that would run a command.
  folder.mkdir(parents=True)
  for name in ['test_batch'] + [f'data_batch_{i}' for i in range(1, 6)]:
    (folder / name).write_bytes(pickle.dumps({b'data': Exploit()}, protocol=2))
  assert_one_line_error(config('cifar', 'cifar10', folder.parent),
                        'posix.system is not part of a CIFAR batch')


CELEBA_COLOURS = {'train': np.array([[200, 30, 40], [10, 250, 90], [128, 128, 0]], np.uint8),
                  'valid': np.array([[0, 0, 255]], np.uint8),
                  'test': np.array([[90, 90, 200], [255, 255, 255]], np.uint8)}


def test_celeba_reader_crops_resizes_and_follows_the_partition_file(tmp_path):
  """Train and test are list_eval_partition.txt's codes 0 and 2 (validation, 1, is left out),
  in its order whatever the zip's; each image is its centred square (the bands above and
  below, in another colour, are cropped away), resized as asked; zip or extracted folder."""
  for folder in (write_celeba(tmp_path / 'zip', CELEBA_COLOURS),
                 write_celeba(tmp_path / 'folder', CELEBA_COLOURS, as_zip=False)):
    for split in ('train', 'test'):
      for size, side in ((None, 178), (16, 16)):
        x, y = data.load_split(config('celeba', 'celeb_a', folder), split, size)
        assert x.dtype == np.uint8 and x.shape == (len(CELEBA_COLOURS[split]), side, side, 3)
        expected = np.broadcast_to(CELEBA_COLOURS[split][:, None, None], x.shape)
        np.testing.assert_allclose(x, expected, atol=3)  # JPEG at quality 100
        np.testing.assert_array_equal(y, 0)


def test_celeba_errors(tmp_path):
  (tmp_path / 'empty').mkdir()
  assert_one_line_error(config('celeba', 'celeb_a', tmp_path / 'empty'),
                        'has no list_eval_partition.txt or img_align_celeba.zip')
  assert_one_line_error(config('idx', 'celeb_a', tmp_path), 'read by the celeba source')
  folder = write_celeba(tmp_path / 'cut', CELEBA_COLOURS)
  archive = folder / 'img_align_celeba.zip'
  archive.write_bytes(archive.read_bytes()[:-300])
  assert_one_line_error(config('celeba', 'celeb_a', folder), "cannot read CelebA's train images")
  folder = write_celeba(tmp_path / 'missing', CELEBA_COLOURS, as_zip=False)
  (folder / 'img_align_celeba' / '000002.jpg').unlink()
  assert_one_line_error(config('celeba', 'celeb_a', folder), "cannot read CelebA's train images")
  (folder / 'list_eval_partition.txt').write_text('000001.jpg\n', encoding='ascii')
  assert_one_line_error(config('celeba', 'celeb_a', folder), 'cannot read .*list_eval_partition')


class Exploit:
  def __reduce__(self):
    import os  # pylint: disable=import-outside-toplevel
    return os.system, ('echo should never run',)


def test_known_sets_default_to_the_cache_folder(tmp_path, monkeypatch, tiny_set):
  """data.dir '' means $XDG_CACHE_HOME/gon_jax/<name>; a folder holding the files is used as is."""
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
  folder = tmp_path / 'cache' / 'gon_jax' / 'fashion_mnist'
  assert_one_line_error(config(name='fashion_mnist', folder=None),
                        f"IDX folder {re.escape(str(folder))} does not exist.*download=True")
  images, labels = tiny_set
  write_idx_folder(tmp_path / 'cache' / 'gon_jax' / 'mnist', images, labels, gz=True)
  _, y = data.load_split(config(folder=None, download=True), 'test', None)  # No network: cached.
  np.testing.assert_array_equal(y, labels['test'])
  monkeypatch.delenv('XDG_CACHE_HOME')
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  assert download.cache_dir('mnist') == tmp_path / 'home' / '.cache' / 'gon_jax' / 'mnist'


def test_bad_config_values(tmp_path):
  with pytest.raises(data.DataError, match='unknown data source'):
    data.load_split(config(source='csv', folder=tmp_path), 'train', None)
  with pytest.raises(data.DataError, match='unknown split'):
    data.load_split(config(folder=tmp_path), 'valid', None)
  with pytest.raises(data.DataError, match="unknown data set 'imagenet'.*mnist"):
    data.load_split(config(source='tfds', name='imagenet'), 'train', None)


def test_resize(tmp_path, tiny_set):
  images, labels = tiny_set
  images['train'][1] = 77  # A constant image must stay exactly constant after resizing.
  folder = write_idx_folder(tmp_path / 'set', images, labels, gz=True)
  x, y = data.load_split(config(folder=folder), 'train', 32)
  assert x.shape == (7, 32, 32, 1) and x.dtype == np.uint8 and len(y) == 7
  np.testing.assert_array_equal(x[1], 77)
  # What torchvision's Resize does to a PIL image (the official scripts' pipeline), uint8 ...
  from PIL import Image  # pylint: disable=import-outside-toplevel
  pil = [np.asarray(Image.fromarray(image).resize((32, 32), Image.Resampling.BILINEAR))
         for image in images['train']]
  np.testing.assert_array_equal(x[..., 0], np.stack(pil))
  # ... within a level of bilinear interpolation with half-pixel centres in floats.
  import jax  # pylint: disable=import-outside-toplevel
  expected = jax.image.resize(images['train'][..., None] / 255.0, (7, 32, 32, 1), 'bilinear')
  np.testing.assert_allclose(data.to_float(x), np.asarray(expected), atol=1.01 / 255)
  x_same, _ = data.load_split(config(folder=folder), 'train', 28)  # Already 28: no resize.
  np.testing.assert_array_equal(x_same[..., 0], images['train'])


def test_batch_indices():
  n, batch = 103, 10  # 10 steps per epoch, 3 examples dropped each epoch.
  steps = [data.batch_indices(n, batch, seed=1, step=s) for s in range(30)]
  assert all(s.shape == (batch,) for s in steps)
  np.testing.assert_array_equal(steps[13], data.batch_indices(n, batch, seed=1, step=13))
  assert not np.array_equal(steps[0], data.batch_indices(n, batch, seed=2, step=0))
  for epoch in range(3):
    seen = np.concatenate(steps[epoch * 10:(epoch + 1) * 10])
    assert len(np.unique(seen)) == 100 and seen.min() >= 0 and seen.max() < n  # No repeats.
  assert not np.array_equal(steps[0], steps[10])  # Every epoch has its own order.
  with pytest.raises(data.DataError):
    data.batch_indices(5, 6, seed=0, step=0)


def test_process_slice():
  assert data.process_slice(8, 1, 2) == slice(4, 8)
  assert data.process_slice(8, 0, 1) == slice(0, 8)
  with pytest.raises(data.DataError, match='divide'):
    data.process_slice(9, 0, 2)
  with pytest.raises(data.DataError):
    data.process_slice(8, 2, 2)


def test_train_batches_resume_and_processes():
  n, batch = 50, 8
  images = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)  # Pixel value = example index.
  labels = np.arange(n, dtype=np.int32)
  stream = data.train_batches(images, labels, batch, seed=3)
  uninterrupted = [next(stream) for _ in range(20)]
  assert uninterrupted[0]['image'].shape == (8, 1, 1,
                                             1) and uninterrupted[0]['label'].dtype == np.int32
  np.testing.assert_array_equal(uninterrupted[0]['image'][:, 0, 0, 0], uninterrupted[0]['label'])
  resumed = data.train_batches(images, labels, batch, seed=3, start_step=13)
  for step in range(13, 20):
    batch_now = next(resumed)
    np.testing.assert_array_equal(batch_now['label'], uninterrupted[step]['label'])
    np.testing.assert_array_equal(batch_now['image'], uninterrupted[step]['image'])
  halves = [
      next(data.train_batches(images, labels, batch, 3, 7, process_index=i, process_count=2))
      for i in range(2)
  ]
  assert halves[0]['label'].shape == (4,)
  np.testing.assert_array_equal(
      np.concatenate([h['label'] for h in halves]), uninterrupted[7]['label'])


def test_prefetch_yields_put_batches_in_order_and_raises_their_errors():
  images, labels = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1), np.arange(10)
  plain = data.train_batches(images, labels, 2, seed=0)
  fetched = data.prefetch(data.train_batches(images, labels, 2, seed=0),
                          lambda b: {k: v * 10 for k, v in b.items()}, size=2)
  for _ in range(12):  # over an epoch boundary
    expected, got = next(plain), next(fetched)
    np.testing.assert_array_equal(got['image'], expected['image'] * 10)
  fetched.close()  # the consumer stops early: the thread must end

  def failing():
    yield {'image': np.zeros(1)}
    raise data.DataError('bad batch 1')
  errors = data.prefetch(failing(), lambda b: b)
  assert next(errors)['image'].shape == (1,)
  with pytest.raises(data.DataError, match='bad batch 1'):
    next(errors)
  assert list(data.prefetch(iter([1, 2, 3]), lambda b: b + 1)) == [2, 3, 4]


def test_prefetch_thread_ends_when_the_consumer_stops():
  import threading  # pylint: disable=import-outside-toplevel
  fetched = data.prefetch(iter(range(1000)), lambda b: b, size=1)
  assert next(fetched) == 0
  fetched.close()
  deadline = time.time() + 5
  while any(t.name == 'prefetch' for t in threading.enumerate()) and time.time() < deadline:
    time.sleep(0.05)
  assert not any(t.name == 'prefetch' for t in threading.enumerate())


def test_tfds_mock(monkeypatch):
  tfds = pytest.importorskip('tensorflow_datasets')
  from tensorflow_datasets.core.data_sources import array_record
  # tfds 4.9.10's mock binds __getitems__ wrongly (a partial lacks `self`); read one by one.
  monkeypatch.setattr(array_record.ArrayRecordDataSource, '__getitems__',
                      lambda self, keys: [self[k] for k in keys])
  with tfds.testing.mock_data(num_examples=6):
    x, y = data.load_split(config('tfds', 'mnist'), 'train', None)
    assert x.shape == (6, 28, 28, 1) and x.dtype == np.uint8 and y.dtype == np.int32
    assert x.max() > 0
    assert y.shape == (6,) and ((0 <= y) & (y < 10)).all()
    x, y = data.load_split(config('tfds', 'cifar10'), 'test', 16)
    assert x.shape == (6, 16, 16, 3) and y.dtype == np.int32


def test_tfds_not_prepared(tmp_path):
  """No prepared data in an empty data_dir (download=False: never touches the network)."""
  pytest.importorskip('tensorflow_datasets')
  start = time.time()
  with pytest.raises(data.DataError, match="tfds could not load 'mnist'.*source=idx") as info:
    data.load_split(config('tfds', 'mnist', tmp_path, download=False), 'train', None)
  assert '\n' not in str(info.value) and time.time() - start < 20
  assert 'offline' not in str(info.value)  # Not a network error: no network advice.


@pytest.mark.integration
@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=NEEDS_MNIST)
def test_real_mnist():
  train_x, train_y = data.load_split(config(folder=MNIST_DIR), 'train', 32)
  test_x, test_y = data.load_split(config(folder=MNIST_DIR), 'test', None)
  assert train_x.shape == (60000, 32, 32, 1) and test_x.shape == (10000, 28, 28, 1)
  assert train_y.shape == (60000,) and test_y.shape == (10000,)
  assert train_x.dtype == test_x.dtype == np.uint8 and train_x.max() == 255
  for labels, low, high in ((train_y, 5000, 7000), (test_y, 850, 1150)):
    counts = np.bincount(labels, minlength=10)
    assert len(counts) == 10 and counts.min() >= low and counts.max() <= high, counts
  assert 0.1 < data.to_float(test_x).mean() < 0.15  # MNIST's mean intensity is about 0.13.


def test_colour_digits_script_writes_what_the_cifar_source_reads(tmp_path, tiny_set):
  """scripts/colour_digits.py: each digit on a 32x32 canvas, background and stroke in two
  colours per image; the cifar source reads the result like CIFAR-10."""
  images, labels = tiny_set
  images = {s: np.where(x > 127, 255, 0).astype(np.uint8) for s, x in images.items()}
  write_idx_folder(tmp_path / 'mnist', images, labels, gz=True)
  result = subprocess.run([sys.executable, str(REPO / 'scripts' / 'colour_digits.py'),
                           '--mnist_dir', str(tmp_path / 'mnist'), '--out', str(tmp_path / 'out')],
                          capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr
  x, y = data.load_split(config('cifar', 'cifar10', tmp_path / 'out'), 'test', None)
  assert x.shape == (3, 32, 32, 3)
  np.testing.assert_array_equal(y, labels['test'])
  for image, digit in zip(x, images['test']):
    stroke = np.pad(digit, 2) == 255
    for mask in (stroke, ~stroke):  # One colour each, and two different colours.
      assert len(np.unique(image[mask], axis=0)) == 1
    assert not np.array_equal(image[stroke][0], image[~stroke][0])
