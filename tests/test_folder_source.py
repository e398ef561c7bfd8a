"""The folder source (one's own images), uint8 host storage and the decoded cache (gon_jax.data).

Every image is written by the test; the decoded cache lives in the session's XDG_CACHE_HOME
(conftest.py) or in a folder of the test's own.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import pathlib
import socket
import types

import numpy as np
import pytest
from PIL import Image

from gon_jax import data
from gon_jax.evaluate import image_metrics

from testing_utils import (TINY_FLAGS, run_script, write_celeba, write_cifar_archive,
                           write_idx_folder)


def folder_config(folder, **extra) -> types.SimpleNamespace:
  """A stand-in for `config.data` of the folder source (data.name is not read)."""
  return types.SimpleNamespace(source='folder', name='mnist', dir=str(folder),
                               **{'download': False, **extra})


def write_png(path: pathlib.Path, width: int, height: int, colour, band=(0, 0, 0)) -> None:
  """An RGB PNG: its centred square in `colour`, the bands either side of it (the longer side's
  excess, which the crop removes) in `band`."""
  image = np.empty((height, width, 3), np.uint8)
  image[:] = band
  side = min(width, height)
  top, left = (height - side) // 2, (width - side) // 2
  image[top:top + side, left:left + side] = colour
  image[top, left] = (255, 255, 255)  # A corner pixel: the crop keeps the square's corner.
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(image).save(path)


def expected_square(path: pathlib.Path, size: int, mode: str) -> np.ndarray:
  """What the folder source must make of an image: PIL's centred square, resized, in `mode`."""
  with Image.open(path) as image:
    side = min(image.size)
    left, top = (image.size[0] - side) // 2, (image.size[1] - side) // 2
    square = image.convert(mode).crop((left, top, left + side, top + side))
    out = np.asarray(square.resize((size, size), Image.Resampling.BILINEAR))
  return out[..., None] if out.ndim == 2 else out


@pytest.fixture(autouse=True)
def fresh_process_cache(monkeypatch):
  """Every test loads from the files or the decoded cache, not from an earlier test's arrays."""
  monkeypatch.setattr(data.sources, '_files_cache', {})


@pytest.fixture
def decoded(tmp_path, monkeypatch) -> pathlib.Path:
  """A decoded cache of the test's own: XDG_CACHE_HOME in tmp_path; returns the cache folder."""
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  assert data.decoded_cache_dir() == tmp_path / 'xdg' / 'gon_jax' / 'decoded'
  return data.decoded_cache_dir()


def entries(cache: pathlib.Path) -> list[str]:
  return sorted(os.listdir(cache)) if cache.is_dir() else []


@pytest.fixture
def split_folder(tmp_path) -> pathlib.Path:
  """train/ and test/ with class folders cats/ and dogs/; images of several shapes."""
  root = tmp_path / 'images'
  rng = np.random.default_rng(0)
  for split, count in (('train', 3), ('test', 2)):
    for label, name in enumerate(('cats', 'dogs')):
      for i in range(count):
        width, height = (40, 30) if i % 2 else (24, 50)
        write_png(root / split / name / f'{i:02d}.png', width, height,
                  rng.integers(0, 256, 3), band=255 - rng.integers(0, 256, 3))
  (root / 'train' / 'notes.txt').write_text('not an image')
  (root / 'train' / '.hidden').mkdir()
  write_png(root / 'train' / '.hidden' / 'skipped.png', 8, 8, (1, 2, 3))
  return root


@pytest.mark.parametrize('channels,mode', [(3, 'RGB'), (None, 'RGB'), (1, 'L')])
def test_train_and_test_subfolders_with_class_folders(split_folder, decoded, channels, mode):
  """Class folders are labels in sorted order (ImageFolder's); each image is its centred
  square resized to the image size, in model.channels' mode; the classes take turns, each
  class's files in path order (.hidden/ is skipped)."""
  for split, count in (('train', 3), ('test', 2)):
    x, y = data.load_split(folder_config(split_folder), split, 12, channels)
    assert x.dtype == np.uint8 and x.shape == (2 * count, 12, 12, 3 if mode == 'RGB' else 1)
    assert y.dtype == np.int32 and y.tolist() == [0, 1] * count
    paths = [split_folder / split / name / f'{i:02d}.png' for i in range(count)
             for name in ('cats', 'dogs')]
    np.testing.assert_array_equal(x, np.stack([expected_square(p, 12, mode) for p in paths]))


def test_jpeg_and_the_extensions_pil_reads(tmp_path, decoded):
  del decoded
  root = tmp_path / 'mixed'
  write_png(root / 'train' / 'a.png', 10, 10, (10, 200, 30))
  Image.new('RGB', (16, 12), (200, 10, 10)).save(root / 'train' / 'b.JPG', quality=100,
                                                 subsampling=0)
  Image.new('L', (9, 9), 77).save(root / 'train' / 'c.bmp')
  (root / 'test').mkdir()
  Image.new('RGB', (9, 9), (5, 6, 7)).save(root / 'test' / 'd.webp', lossless=True)
  x, y = data.load_split(folder_config(root), 'train', 4, 3)
  assert x.shape == (3, 4, 4, 3) and y.tolist() == [0, 0, 0]
  np.testing.assert_allclose(x[1], np.broadcast_to((200, 10, 10), (4, 4, 3)), atol=3)
  np.testing.assert_array_equal(x[2], 77)  # A grey image read as RGB.
  np.testing.assert_array_equal(data.load_split(folder_config(root), 'test', 4, 3)[0], [
      np.broadcast_to((5, 6, 7), (4, 4, 3))])


def test_a_folder_without_train_and_test_is_split_by_name(tmp_path, decoded):
  """1 image in 10 goes to test: those whose relative path's sha256, as a big-endian integer
  of its first 8 bytes, is 0 modulo 10; the same on every machine and run."""
  del decoded
  root = tmp_path / 'flat'
  names = [f'{name}/{i:03d}.png' for name in ('a', 'b') for i in range(30)]
  for i, name in enumerate(names):
    write_png(root / name, 6, 6, (i, 0, 255 - i))
  is_test = [int.from_bytes(hashlib.sha256(n.encode()).digest()[:8], 'big') % 10 == 0
             for n in names]
  assert 0 < sum(is_test) < len(names)  # Both splits have images: a fair test of the rule.
  for split, wanted in (('train', False), ('test', True)):
    x, y = data.load_split(folder_config(root), split, None, 3)
    chosen = [i for i, t in enumerate(is_test) if t == wanted]
    # Class a's and b's images in turn, each class's in path order.
    in_turn = [i for pair in itertools.zip_longest([i for i in chosen if i < 30],
                                                   [i for i in chosen if i >= 30])
               for i in pair if i is not None]
    assert x.shape == (len(chosen), 6, 6, 3)  # None: each image's square at its own size.
    np.testing.assert_array_equal(x[:, 3, 3, 0], in_turn)
    np.testing.assert_array_equal(y, [names[i].startswith('b') for i in in_turn])


def test_each_split_takes_its_classes_in_turn(tmp_path, decoded):
  """The first image of every class (in class order), then the second, ...: every prefix of a
  split shows every class (the grids' first test images), a class that runs out drops out;
  loose images keep their path order."""
  del decoded
  root = tmp_path / 'uneven'
  sizes = {'a': 3, 'b': 1, 'c': 2}
  for split in ('train', 'test'):
    for name, count in sizes.items():
      for i in range(count):
        write_png(root / split / name / f'{i}.png', 4, 4, (10 * i, 0, 0))
  x, y = data.load_split(folder_config(root), 'train', None, 3)
  assert y.tolist() == [0, 1, 2, 0, 2, 0]
  assert x[:, 2, 2, 0].tolist() == [0, 0, 0, 10, 10, 20]  # a/0 b/0 c/0 a/1 c/1 a/2
  loose = tmp_path / 'loose'
  for i in range(4):
    write_png(loose / 'train' / f'{i}.png', 4, 4, (10 * i, 0, 0))
  write_png(loose / 'test' / 'x.png', 4, 4, (0, 0, 0))
  x, y = data.load_split(folder_config(loose), 'train', None, 3)
  assert x[:, 2, 2, 0].tolist() == [0, 10, 20, 30] and y.tolist() == [0] * 4


def test_a_cache_entry_in_the_class_by_class_order_is_not_served(split_folder, decoded,
                                                                 monkeypatch):
  """An entry decoded before the classes took turns (the files class by class, as sorted)
  holds its rows in that order: its key lists the files in order, so it misses and is
  replaced by an entry in the new order."""
  with monkeypatch.context() as old:
    old.setattr(data.image_folder, '_round_robin', lambda paths: paths)
    _, y = data.load_split(folder_config(split_folder), 'train', 8, 3)
    assert y.tolist() == [0, 0, 0, 1, 1, 1]
  (stale,) = entries(decoded)
  data.sources._files_cache.clear()
  _, y = data.load_split(folder_config(split_folder), 'train', 8, 3)
  assert y.tolist() == [0, 1, 0, 1, 0, 1]
  (entry,) = entries(decoded)  # The same folder, split and size: the stale entry is removed.
  assert entry != stale and entry.rsplit('-', 1)[0] == stale.rsplit('-', 1)[0]


def assert_one_line_error(config, match: str, split: str = 'train', size=8, channels=3) -> None:
  with pytest.raises(data.DataError, match=match) as info:
    data.load_split(config, split, size, channels)
  assert '\n' not in str(info.value)


def test_folder_errors(tmp_path, decoded):
  del decoded
  assert_one_line_error(folder_config(tmp_path / 'nowhere'), 'image folder .*nowhere does not '
                        'exist; set --config.data.dir')
  assert_one_line_error(folder_config(''), 'folder source reads the images in data.dir')
  (tmp_path / 'empty').mkdir()
  assert_one_line_error(folder_config(tmp_path / 'empty'), r'empty; put images \(\.png, \.jpg')
  (tmp_path / 'text' / 'sub').mkdir(parents=True)
  (tmp_path / 'text' / 'sub' / 'readme.md').write_text('no images here')
  assert_one_line_error(folder_config(tmp_path / 'text'), 'text holds no images')

  write_png(tmp_path / 'half' / 'train' / 'a.png', 4, 4, (1, 2, 3))
  assert_one_line_error(folder_config(tmp_path / 'half'), 'has train/ but no test/')
  (tmp_path / 'half' / 'test' / 'cats').mkdir(parents=True)
  assert_one_line_error(folder_config(tmp_path / 'half'), r'half/test holds no images', 'test')

  write_png(tmp_path / 'one' / 'a.png', 4, 4, (1, 2, 3))  # 'a.png' hashes to train.
  assert_one_line_error(folder_config(tmp_path / 'one'), 'has 1 images and its split by name '
                        'puts none in test', 'test')

  write_png(tmp_path / 'mixed' / 'train' / 'loose.png', 4, 4, (1, 2, 3))
  write_png(tmp_path / 'mixed' / 'train' / 'cats' / 'a.png', 4, 4, (1, 2, 3))
  write_png(tmp_path / 'mixed' / 'test' / 'b.png', 4, 4, (1, 2, 3))
  assert_one_line_error(folder_config(tmp_path / 'mixed'),
                        r'mixes images \(loose.png\) with class folders \(cats/\)')

  bad = tmp_path / 'bad'
  write_png(bad / 'train' / 'a.png', 4, 4, (1, 2, 3))
  write_png(bad / 'test' / 'b.png', 4, 4, (1, 2, 3))
  (bad / 'train' / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n not really')
  assert_one_line_error(folder_config(bad), r'cannot read image .*bad/train/broken\.png '
                        r'\(cannot identify image file.*\); replace or remove it')
  png = (bad / 'train' / 'a.png').read_bytes()
  (bad / 'train' / 'broken.png').write_bytes(png[:len(png) // 2])  # Cut short.
  assert_one_line_error(folder_config(bad), r'cannot read image .*broken\.png \(.+\)')
  (bad / 'train' / 'broken.png').unlink()
  assert_one_line_error(folder_config(bad), 'reads grey .* or RGB .* not 4 channels', channels=4)
  write_png(bad / 'train' / 'c.png', 6, 9, (1, 2, 3))
  assert_one_line_error(folder_config(bad), r'c.png is 6x6 after its centred square crop '
                        r'but .*a.png is 4x4; set --config.data.image_size', size=None)


def count_decodes(monkeypatch) -> list[int]:
  """Counts the folder source's images decoded from now on (each cropped by its _square)."""
  calls, square = [], data.image_folder._square
  monkeypatch.setattr(data.image_folder, '_square',
                      lambda *a, **k: calls.append(1) or square(*a, **k))
  return calls


def test_the_cache_is_written_once_then_memory_mapped(split_folder, decoded, monkeypatch):
  config = folder_config(split_folder)
  first = data.load_split(config, 'train', 8, 1)
  assert len(entries(decoded)) == 1 and entries(decoded)[0].startswith('folder-train-8-')
  monkeypatch.setattr(data.sources, '_files_cache', {})  # As a new process would.
  monkeypatch.setattr(data.image_folder, '_square', lambda *a, **k: pytest.fail('decoded again'))
  images, labels = data.load_split(config, 'train', 8, 1)
  assert isinstance(images, np.memmap) and images.mode == 'r' and not images.flags.writeable
  np.testing.assert_array_equal(images, first[0])
  np.testing.assert_array_equal(labels, first[1])
  assert labels.dtype == np.int32 and images.dtype == np.uint8


def test_the_cache_misses_when_a_file_or_the_image_size_changes(split_folder, decoded,
                                                                monkeypatch):
  config = folder_config(split_folder)
  calls = count_decodes(monkeypatch)
  data.load_split(config, 'train', 8, 3)
  assert len(calls) == 6
  data.sources._files_cache.clear()
  data.load_split(config, 'train', 8, 3)
  assert len(calls) == 6  # A hit.
  data.load_split(config, 'train', 16, 3)  # Another size: its own entry; the first stays.
  assert len(calls) == 12 and len(entries(decoded)) == 2
  data.load_split(config, 'train', 8, 1)  # Other channels: another entry.
  assert len(calls) == 18 and len(entries(decoded)) == 3
  data.sources._files_cache.clear()
  touched = split_folder / 'train' / 'cats' / '00.png'
  write_png(touched, 24, 50, (9, 9, 9))
  stat = touched.stat()
  os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # Surely a new mtime.
  x, _ = data.load_split(config, 'train', 8, 3)
  assert len(calls) == 24 and x[0, 4, 4].tolist() == [9, 9, 9]
  assert len(entries(decoded)) == 3  # The entry of the old file is replaced, not kept.
  data.sources._files_cache.clear()
  write_png(split_folder / 'train' / 'dogs' / '09.png', 5, 5, (1, 1, 1))  # A new file.
  x, y = data.load_split(config, 'train', 8, 3)
  assert len(calls) == 31 and len(x) == 7 and y.tolist() == [0, 1, 0, 1, 0, 1, 1]


def test_the_cache_is_written_atomically(split_folder, decoded, monkeypatch):
  """A decoding that fails leaves no entry and no temporary behind: the next run starts over."""
  square, calls = data.image_folder._square, []

  def fail_on_the_fourth(*args, **kwargs):
    calls.append(1)
    if len(calls) == 4:
      raise OSError('disk read error')
    return square(*args, **kwargs)

  monkeypatch.setattr(data.image_folder, '_square', fail_on_the_fourth)
  with pytest.raises(data.DataError, match='cannot read image .*disk read error'):
    data.load_split(folder_config(split_folder), 'train', 8, 3)
  assert entries(decoded) == []
  # A dead process's temporary entry (this machine, a pid that is not running) is removed.
  dead = decoded / f'.folder-train-8-x-y.{socket.gethostname()}.999999999.tmp'
  dead.mkdir()
  (dead / 'images.npy').write_bytes(b'partial')
  x, _ = data.load_split(folder_config(split_folder), 'train', 8, 3)
  assert len(x) == 6 and len(entries(decoded)) == 1 and not entries(decoded)[0].startswith('.')
  assert not dead.exists()


def test_a_damaged_entry_is_decoded_again(split_folder, decoded):
  config = folder_config(split_folder)
  x = np.array(data.load_split(config, 'test', 8, 3)[0])  # A copy: the file is replaced.
  (entry,) = entries(decoded)
  (decoded / entry / 'images.npy').unlink()
  (decoded / entry / 'images.npy').write_bytes(b'\x93NUMPY garbage')
  data.sources._files_cache.clear()
  again, _ = data.load_split(config, 'test', 8, 3)
  np.testing.assert_array_equal(again, x)


def test_cache_off_and_an_unwritable_cache(split_folder, decoded, tmp_path, monkeypatch, capfd):
  x, _ = data.load_split(folder_config(split_folder, cache=False), 'train', 8, 3)
  assert entries(decoded) == [] and not isinstance(x, np.memmap) and not x.flags.writeable
  data.sources._files_cache.clear()
  (tmp_path / 'a_file').write_text('')
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'a_file'))  # No folder can be made there.
  y, _ = data.load_split(folder_config(split_folder), 'train', 8, 3)
  np.testing.assert_array_equal(x, y)
  assert 'warning: cannot write the decoded cache' in capfd.readouterr().err


def test_cifar_and_celeba_are_cached_too(tmp_path, decoded, monkeypatch):
  rng = np.random.default_rng(0)
  cifar = {s: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for s, n in (('train', 5),
                                                                                 ('test', 2))}
  write_cifar_archive(tmp_path / 'cifar' / 'cifar-10-python.tar.gz', cifar,
                      {s: np.arange(len(x)) for s, x in cifar.items()})
  write_celeba(tmp_path / 'celeba', {'train': np.array([[200, 30, 40], [10, 250, 90]], np.uint8),
                                     'test': np.array([[90, 90, 200]], np.uint8)})
  configs = [types.SimpleNamespace(source='cifar', name='cifar10', dir=str(tmp_path / 'cifar'),
                                   download=False),
             types.SimpleNamespace(source='celeba', name='celeb_a', dir=str(tmp_path / 'celeba'),
                                   download=False)]
  first = [data.load_split(config, 'train', size, None) for config in configs for size in (32, 16)]
  assert len(entries(decoded)) == 4
  data.sources._files_cache.clear()
  monkeypatch.setattr(data.cifar, '_read_cifar', lambda *a: pytest.fail('CIFAR read again'))
  monkeypatch.setattr(data.celeba, '_square', lambda *a, **k: pytest.fail('CelebA decoded again'))
  again = [data.load_split(config, 'train', size, None) for config in configs for size in (32, 16)]
  for (x, y), (x_again, y_again) in zip(first, again):
    assert isinstance(x_again, np.memmap)
    np.testing.assert_array_equal(x, x_again)
    np.testing.assert_array_equal(y, y_again)
  np.testing.assert_array_equal(again[0][0], cifar['train'])


def test_the_host_holds_uint8_and_batches_are_float(tmp_path):
  """load_split keeps images as uint8; train_batches converts its rows with to_float, k / 255:
  the numbers of the float32 split the host held before, batch for batch."""
  rng = np.random.default_rng(0)
  images = {s: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for s, n in (('train', 20),
                                                                               ('test', 3))}
  labels = {s: rng.integers(0, 10, len(x), dtype=np.uint8) for s, x in images.items()}
  folder = write_idx_folder(tmp_path / 'idx', images, labels, gz=True)
  x, y = data.load_split(types.SimpleNamespace(source='idx', name='mnist', dir=str(folder),
                                               download=False), 'train', None)
  assert x.dtype == np.uint8 and x.nbytes == 20 * 28 * 28 and not x.flags.writeable
  as_float = images['train'][..., None].astype(np.float32) / 255.0  # The old host split.
  for step, batch in zip(range(6), data.train_batches(x, y, 8, seed=3)):
    index = data.batch_indices(20, 8, 3, step)
    assert batch['image'].dtype == np.float32
    np.testing.assert_array_equal(batch['image'], as_float[index])
    np.testing.assert_array_equal(batch['label'], labels['train'][index])
  # The epoch order is Generator.permutation's (int32, half its memory).
  np.testing.assert_array_equal(data.batches._permutation(1001, 5, 2),
                                np.random.default_rng((5, 2)).permutation(1001))


def resident_mib(kind: str) -> float:
  fields = dict(line.split(':', 1) for line in
                pathlib.Path('/proc/self/status').read_text().splitlines() if ':' in line)
  return int(fields[kind].split()[0]) / 1024


@pytest.mark.skipif(not os.path.exists('/proc/self/status'), reason='needs Linux /proc')
def test_batches_of_a_memory_mapped_split_leave_it_out_of_memory(tmp_path):
  """train_batches reads a cached split's rows from its file: the same batches as from memory,
  and the process's resident memory does not grow with the file (64 MiB here, all touched by
  the 1,500 random batches of 64 rows: through the mapping, 64 KiB would be mapped a row)."""
  rng = np.random.default_rng(0)
  array = np.lib.format.open_memmap(tmp_path / 'images.npy', 'w+', np.uint8, (2**16, 32, 32, 1))
  array[:] = rng.integers(0, 256, array.shape, dtype=np.uint8)
  array.flush()
  del array
  images = np.load(tmp_path / 'images.npy', mmap_mode='r')
  labels = np.arange(len(images), dtype=np.int32)
  from_file = data.train_batches(images, labels, 64, seed=1)
  before = resident_mib('RssFile')
  for _ in range(1500):
    next(from_file)
  assert resident_mib('RssFile') - before < 8
  from_file.close()
  from_memory = data.train_batches(np.load(tmp_path / 'images.npy'), labels, 64, seed=1)
  from_file = data.train_batches(images, labels, 64, seed=1)
  for _ in range(3):
    expected, batch = next(from_memory), next(from_file)
    np.testing.assert_array_equal(batch['image'], expected['image'])
    np.testing.assert_array_equal(batch['label'], expected['label'])
  sliced = data.train_batches(images[1:], labels[1:], 64, seed=1)  # Not the whole file: indexed.
  first = data.batch_indices(2**16 - 1, 64, 1, 0)[0]
  np.testing.assert_array_equal(next(sliced)['image'][0], data.to_float(images[1:][first]))


def test_to_float_and_metrics_of_uint8_images():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (2500, 4, 4, 1), dtype=np.uint8)  # Three metric chunks.
  as_float = images.astype(np.float32) / 255.0
  np.testing.assert_array_equal(data.to_float(images), as_float)
  assert data.to_float(as_float) is as_float  # Floats in [0, 1] are kept.
  with pytest.raises(TypeError, match='uint8 or float'):
    data.to_float(images.astype(np.int32))
  recon = rng.random(images.shape, np.float32)
  sse = np.sum(np.square(recon - as_float).reshape(len(images), -1), axis=1)  # Unchunked.
  assert image_metrics(images, recon)['sse'] == float(np.mean(sse))
  assert image_metrics(images, recon) == image_metrics(as_float, recon)


def png_folder(root: pathlib.Path) -> pathlib.Path:
  """train/ (24 images) and test/ (8) of 20x20 RGB PNGs: a bright square on a dark ground."""
  rng = np.random.default_rng(1)
  for split, count in (('train', 24), ('test', 8)):
    for i in range(count):
      image = np.full((20, 20, 3), 20, np.uint8)
      r, c = rng.integers(0, 12, 2)
      image[r:r + 8, c:c + 8] = rng.integers(150, 256, 3)
      (root / split).mkdir(parents=True, exist_ok=True)
      Image.fromarray(image).save(root / split / f'{i:03d}.png')
  return root


@pytest.mark.slow
def test_train_and_eval_on_a_folder_of_pngs(tmp_path):
  """The command of docs/data_own_images.md: train.py with --config.data.source=folder on a
  folder of PNGs (grey: conv_mnist's model.channels=1), then eval.py from the workdir."""
  folder = png_folder(tmp_path / 'my_images')
  flags = [flag for flag in TINY_FLAGS if not flag.startswith('--config.data.source')]
  result = run_script('train.py', tmp_path / 'run', '--config.data.source=folder',
                      f'--config.data.dir={folder}', '--config.num_steps=2', tiny_flags=flags)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'trained 2 steps' in result.stderr, result.stderr[-2000:]
  cache = pathlib.Path(os.environ['XDG_CACHE_HOME']) / 'gon_jax' / 'decoded'
  assert {name.rsplit('-', 2)[0] for name in entries(cache)} >= {'folder-train-16',
                                                                 'folder-test-16'}
  evaluated = run_script('eval.py', tmp_path / 'run', config=None, tiny_flags=[])
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  metrics = json.loads(evaluated.stdout.strip().splitlines()[-1])
  assert metrics['step'] == 2 and metrics['num_images'] == 8 and metrics['sse'] > 0
  assert 'decoding' not in evaluated.stderr  # The second process reads the decoded cache.
  assert (tmp_path / 'run' / 'eval' / 'reconstructions.png').is_file()
