"""gon_jax.download and the idx source's downloads, against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import hashlib
import http.server
import json
import os
import pathlib
import socket
import threading
import time
import types
import urllib.parse

import numpy as np
import pytest

from gon_jax import data, download
from gon_jax.errors import DataError

from testing_utils import (IDX_NAMES, MNIST_DIR, NEEDS_MNIST, TINY_SIREN_FLAGS, idx_bytes,
                           run_script, write_celeba, write_cifar_archive, write_idx_folder)

FASHION_DIR = pathlib.Path('/usr/share/datasets/fashion-mnist')  # Debian's dataset-fashion-mnist
WAYS_OUT = ('--config.data.mirror=URL', '--config.data.dir=FOLDER')


class QuietHandler(http.server.SimpleHTTPRequestHandler):
  """Serves its directory without logging every request to stderr."""

  def log_message(self, *args) -> None:
    pass


class DiesMidFileHandler(QuietHandler):
  """Announces the whole of t10k-images-idx3-ubyte.gz, sends half of it and hangs up."""

  def do_GET(self) -> None:
    if not self.path.endswith('t10k-images-idx3-ubyte.gz'):
      super().do_GET()
      return
    body = (pathlib.Path(self.directory) / self.path.lstrip('/')).read_bytes()
    self.send_response(200)
    self.send_header('Content-Length', str(len(body)))
    self.end_headers()
    self.wfile.write(body[:len(body) // 2])
    self.close_connection = True


@contextlib.contextmanager
def serving(folder: pathlib.Path, handler=QuietHandler):
  """An HTTP server on 127.0.0.1 serving `folder`; yields its base URL, stops on exit."""
  server = http.server.ThreadingHTTPServer(
      ('127.0.0.1', 0), functools.partial(handler, directory=str(folder)))
  thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05},
                            daemon=True)
  thread.start()
  try:
    yield f'http://127.0.0.1:{server.server_port}/'
  finally:
    server.shutdown()
    server.server_close()
    thread.join()


def closed_port() -> int:
  """A port on 127.0.0.1 that refuses connections (nobody listens on it)."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@contextlib.contextmanager
def silent_server():
  """A port that accepts connections (the kernel's backlog) but never answers; yields its URL."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    s.listen(8)
    yield f'http://127.0.0.1:{s.getsockname()[1]}/'


@pytest.fixture
def tiny_mirror(tmp_path) -> tuple[pathlib.Path, dict[str, str]]:
  """A folder of four small gzipped IDX files, and the sha256s of their decompressed content."""
  rng = np.random.default_rng(0)
  images = {s: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for s, n in (('train', 40),
                                                                             ('test', 12))}
  labels = {s: rng.integers(0, 10, len(images[s]), dtype=np.uint8) for s in images}
  folder = write_idx_folder(tmp_path / 'mirror', images, labels, gz=True)
  arrays = (images['train'], labels['train'], images['test'], labels['test'])
  return folder, {f'{name}.gz': hashlib.sha256(idx_bytes(a)).hexdigest()
                  for name, a in zip(IDX_NAMES, arrays)}


def listing(folder: pathlib.Path) -> list[str]:
  return sorted(os.listdir(folder))


def test_download_lands_verified_and_the_cache_needs_no_network(tmp_path, tiny_mirror,
                                                                monkeypatch):
  served, sums = tiny_mirror
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  cache = download.cache_dir('mnist')
  lines = []
  with serving(served) as url:
    placed = download.download_files(cache, 'mnist', mirrors=[url], files=sums, log=lines.append)
  assert placed == [cache / f'{name}.gz' for name in IDX_NAMES]
  assert listing(cache) == sorted(f'{name}.gz' for name in IDX_NAMES)  # No temp files.
  for name in IDX_NAMES:  # Byte for byte what the server holds.
    assert (cache / f'{name}.gz').read_bytes() == (served / f'{name}.gz').read_bytes()
  assert len(lines) == 4 and lines[0].startswith(f'downloading {url}train-images-idx3-ubyte.gz')
  size = (served / 'train-images-idx3-ubyte.gz').stat().st_size
  assert lines[0].endswith(f'-> {cache} ({size / 1e3:.0f} kB)'), lines[0]

  # The server is gone: the cache serves the idx source, mirror set or not.
  for mirror in (url, ''):
    config = types.SimpleNamespace(source='idx', name='mnist', dir='', download=True,
                                   mirror=mirror)
    images, labels = data.load_split(config, 'test', None)
    assert images.shape == (12, 28, 28, 1) and labels.shape == (12,)


def test_checksum_mismatch_is_one_line_and_caches_nothing(tmp_path, tiny_mirror):
  served, sums = tiny_mirror
  wrong = dict(sums, **{'train-labels-idx1-ubyte.gz': '0' * 64})
  folder = tmp_path / 'cache' / 'mnist'
  with serving(served) as url, pytest.raises(DataError) as info:
    download.download_files(folder, 'mnist', mirrors=[url], files=wrong, log=lambda _: None)
  message = str(info.value)
  assert '\n' not in message
  assert message.startswith(f'checksum mismatch for train-labels-idx1-ubyte.gz from {url}'
                            'train-labels-idx1-ubyte.gz')
  assert f"is {sums['train-labels-idx1-ubyte.gz']}, expected {'0' * 64}; nothing was cached" in message
  assert not (tmp_path / 'cache').exists()  # Neither the verified first file nor the folders.

  folder.mkdir(parents=True)  # A folder that was there before stays, empty.
  with serving(served) as url, pytest.raises(DataError, match='checksum mismatch'):
    download.download_files(folder, 'mnist', mirrors=[url], files=wrong, log=lambda _: None)
  assert listing(folder) == []


def test_server_dying_mid_file_caches_nothing_and_the_next_run_succeeds(tmp_path, tiny_mirror):
  served, sums = tiny_mirror
  folder = tmp_path / 'cache' / 'mnist'
  with serving(served, DiesMidFileHandler) as url, pytest.raises(DataError) as info:
    download.download_files(folder, 'mnist', mirrors=[url], files=sums, log=lambda _: None)
  message = str(info.value)
  assert message.startswith(f'could not download t10k-images-idx3-ubyte.gz ({url}t10k-images')
  assert 'connection closed with' in message and all(way in message for way in WAYS_OUT)
  assert not (tmp_path / 'cache').exists()
  with serving(served) as url:
    download.download_files(folder, 'mnist', mirrors=[url], files=sums, log=lambda _: None)
  assert listing(folder) == sorted(f'{name}.gz' for name in IDX_NAMES)


@pytest.mark.parametrize('mirror, reason', [('closed_port', 'Connection refused'),
                                            ('not_found', 'HTTP 404 File not found'),
                                            # Waits out the timeout: the full suite's.
                                            pytest.param('never_answers', 'timed out',
                                                         marks=pytest.mark.slow)])
def test_unreachable_mirror_fails_fast_and_leaves_no_folder(tmp_path, mirror, reason):
  folder = tmp_path / 'xdg' / 'gon_jax' / 'mnist'
  (tmp_path / 'empty').mkdir()
  with contextlib.ExitStack() as stack:
    url = {'closed_port': lambda: f'http://127.0.0.1:{closed_port()}/',
           'not_found': lambda: stack.enter_context(serving(tmp_path / 'empty')),
           'never_answers': lambda: stack.enter_context(silent_server())}[mirror]()
    config = types.SimpleNamespace(source='idx', name='mnist', dir=str(folder), download=True,
                                   mirror=url)
    start = time.monotonic()
    with pytest.raises(DataError) as info:  # Known checksums: the default route of load_split.
      data.load_split(config, 'train', None)
    elapsed = time.monotonic() - start
  message = str(info.value)
  assert elapsed < (download.TIMEOUT_S + 3 if mirror == 'never_answers' else 2), elapsed
  assert '\n' not in message and message.startswith(
      f'could not download train-images-idx3-ubyte.gz ({url}train-images-idx3-ubyte.gz: '
      f'{reason}); set --config.data.mirror=URL'), message
  assert all(way in message for way in WAYS_OUT), message
  assert listing(tmp_path) == ['empty']  # xdg/gon_jax/mnist, made for the download, is gone.


def test_next_mirror_is_tried_and_temp_files_are_never_trusted(tmp_path, tiny_mirror):
  served, sums = tiny_mirror
  folder = tmp_path / 'mnist'
  folder.mkdir()
  # Left by a run killed an hour ago (stale: deleted), and by one that may still be running
  # (kept). Neither is read: their garbage never reaches the cache.
  stale, live = (folder / f'.train-images-idx3-ubyte.gz.part-{pid}' for pid in (1, 2))
  for part in (stale, live):
    part.write_bytes(b'garbage')
  os.utime(stale, (time.time() - 3600,) * 2)
  lines = []
  with serving(served) as url:
    dead = f'http://127.0.0.1:{closed_port()}/'
    download.download_files(folder, 'mnist', mirrors=[dead, url], files=sums, log=lines.append)
  assert all(line.startswith(f'downloading {url}') for line in lines) and len(lines) == 4
  assert listing(folder) == sorted([live.name] + [f'{name}.gz' for name in IDX_NAMES])
  for name in IDX_NAMES:
    assert (folder / f'{name}.gz').read_bytes() == (served / f'{name}.gz').read_bytes()


def test_a_folder_holding_idx_files_is_used_as_it_is(tmp_path, tiny_mirror):
  """A user's own set named 'mnist' (no checksums, unzipped) is read; nothing is fetched."""
  served, _ = tiny_mirror
  folder = tmp_path / 'own'
  folder.mkdir()
  for name in IDX_NAMES:
    (folder / name).write_bytes(gzip.decompress((served / f'{name}.gz').read_bytes()))
  config = types.SimpleNamespace(source='idx', name='mnist', dir=str(folder), download=True,
                                 mirror=f'http://127.0.0.1:{closed_port()}/')
  assert data.load_split(config, 'train', None)[0].shape == (40, 28, 28, 1)
  assert listing(folder) == sorted(IDX_NAMES)


@pytest.mark.parametrize('name, folder', [('mnist', MNIST_DIR), ('fashion_mnist', FASHION_DIR)])
def test_known_checksums_match_local_copies(name, folder):
  """The hard-coded sha256s are those of the local copies' decompressed files."""
  if not folder.is_dir():
    pytest.skip(f'needs {name} in IDX form at {folder}')
  for file, expected in download.KNOWN[name].files.items():
    content = gzip.decompress((folder / file).read_bytes())
    assert hashlib.sha256(content).hexdigest() == expected, file


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=NEEDS_MNIST)
def test_train_downloads_mnist_then_eval_reads_the_cache(tmp_path):
  cache = tmp_path / 'cache'
  siren = dict(config='configs/siren_mnist.py', tiny_flags=TINY_SIREN_FLAGS)
  with serving(MNIST_DIR) as url:
    flags = (f'--config.data.mirror={url}', f'--config.data.dir={cache}')
    result = run_script('train.py', tmp_path / 'run', *flags, '--config.train_eval_examples=16',
                        **siren)
  assert result.returncode == 0, result.stderr[-2000:]
  downloads = [line for line in result.stderr.splitlines() if line.startswith('downloading ')]
  assert len(downloads) == 4 and f'-> {cache} (9.6 MB)' in downloads[0], result.stderr
  assert listing(cache) == sorted(f'{name}.gz' for name in IDX_NAMES)
  assert os.listdir(tmp_path / 'run' / 'checkpoints') == ['3']
  # The server is gone: eval.py reads the cache.
  result = run_script('eval.py', tmp_path / 'run', *flags, **siren)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'downloading' not in result.stderr
  metrics = json.loads(result.stdout.strip().splitlines()[-1])
  assert metrics['step'] == 3 and metrics['num_images'] == 10000 and metrics['psnr'] > 0


def test_train_offline_fails_fast_with_one_line(tmp_path):
  """The plain command, offline, with nothing cached: one line naming the file and the ways out."""
  home = tmp_path / 'home'
  home.mkdir()
  mirror = f'http://127.0.0.1:{closed_port()}/'
  env = {'HOME': str(home), 'XDG_CACHE_HOME': str(home / '.cache')}
  start = time.monotonic()
  result = run_script('train.py', tmp_path / 'run', f'--config.data.mirror={mirror}',
                      config='configs/siren_mnist.py', tiny_flags=[], env=env)
  elapsed = time.monotonic() - start
  assert result.returncode == 1 and elapsed < 15, (elapsed, result.stderr[-2000:])
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(
      'error: could not download train-images-idx3-ubyte.gz'), result.stderr
  assert mirror in lines[0] and all(way in lines[0] for way in WAYS_OUT), lines[0]
  assert not (tmp_path / 'run').exists()
  assert listing(home) == []  # The cache folder (and ~/.cache) created for it are gone.


@pytest.fixture
def cifar_mirror(tmp_path) -> tuple[pathlib.Path, dict, dict]:
  """A folder serving a small cifar-10-python.tar.gz in the published layout (8 train and 3
  test images), with its images and labels."""
  rng = np.random.default_rng(2)
  images = {s: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for s, n in (('train', 8),
                                                                               ('test', 3))}
  labels = {s: rng.integers(0, 10, len(images[s])) for s in images}
  folder = tmp_path / 'cifar_mirror'
  write_cifar_archive(folder / 'cifar-10-python.tar.gz', images, labels)
  return folder, images, labels


def test_cifar10_downloads_and_is_cached_like_mnist(tmp_path, cifar_mirror, monkeypatch):
  """The cifar source fetches the one archive, verifies its md5, and reads it without unpacking;
  the test's archive stands in for the real one (its md5 in place of the published md5)."""
  served, images, labels = cifar_mirror
  archive = served / 'cifar-10-python.tar.gz'
  md5 = hashlib.md5(archive.read_bytes()).hexdigest()
  monkeypatch.setitem(download.KNOWN, 'cifar10', dataclasses.replace(
      download.KNOWN['cifar10'], files={archive.name: md5}))
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  config = types.SimpleNamespace(source='cifar', name='cifar10', dir='', download=True)
  with serving(served) as url:
    config.mirror = url
    x, y = data.load_split(config, 'train', None)
  cache = download.cache_dir('cifar10')
  assert listing(cache) == [archive.name] and (cache / archive.name).read_bytes() == \
      archive.read_bytes()
  np.testing.assert_array_equal(x, images['train'])
  np.testing.assert_array_equal(y, labels['train'])
  x, y = data.load_split(config, 'test', None)  # The server is gone: the cache serves it.
  np.testing.assert_array_equal(x, images['test'])


def failed_download_lines(tmp_path: pathlib.Path, served: pathlib.Path, config: str,
                          handler=QuietHandler) -> list[str]:
  """Runs train.py on `config` with --config.data.mirror a server of `served` (by `handler`)
  and an empty cache folder; asserts that it failed and left neither the cache nor the
  workdir, and returns its stderr lines."""
  cache = tmp_path / 'cache'
  with serving(served, handler) as url:
    result = run_script('train.py', tmp_path / 'run', f'--config.data.mirror={url}',
                        f'--config.data.dir={cache}', config=config, tiny_flags=[])
  assert result.returncode == 1, result.stderr[-2000:]
  assert not cache.exists() and not (tmp_path / 'run').exists()
  return result.stderr.strip().splitlines()


def test_cifar10_checksum_mismatch_is_one_line_and_caches_nothing(tmp_path, cifar_mirror):
  """With the published md5, the test's archive is rejected, by train.py in one line."""
  lines = failed_download_lines(tmp_path, cifar_mirror[0], 'configs/siren_cifar10.py')
  assert len(lines) == 2, lines  # downloading, error
  assert lines[1].startswith('error: checksum mismatch for cifar-10-python.tar.gz from ')
  assert lines[1].endswith(f"expected {download.KNOWN['cifar10'].files['cifar-10-python.tar.gz']}; nothing was cached")


@pytest.mark.slow
def test_colour_siren_trains_and_evaluates_on_a_cifar_archive(tmp_path, cifar_mirror):
  """configs/siren_cifar10.py end to end on the archive in a folder: 3 outputs per pixel."""
  served, _, _ = cifar_mirror
  flags = (*TINY_SIREN_FLAGS, '--config.data.source=cifar', f'--config.data.dir={served}',
           '--config.num_fit_examples=3', '--config.train_eval_examples=3')
  siren = dict(config='configs/siren_cifar10.py', tiny_flags=flags)
  result = run_script('train.py', tmp_path / 'run', '--config.batch_size=4', **siren)
  assert result.returncode == 0, result.stderr[-2000:]
  result = run_script('eval.py', tmp_path / 'run', **siren)
  assert result.returncode == 0, result.stderr[-2000:]
  metrics = json.loads(result.stdout.strip().splitlines()[-1])
  assert metrics['step'] == 3 and metrics['num_images'] == 3 and metrics['psnr'] > 0


class DriveHandler(QuietHandler):
  """Google Drive's way: `/download?...&id=<id>` serves the file whose name the id maps to
  (`ids`); any other path gets an HTML page with status 200, as Drive answers a spent quota."""
  ids: dict[str, str] = {}

  def do_GET(self) -> None:
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
    name = self.ids.get(query.get('id', [''])[0])
    if name is None:
      body = b'<html><body>Too many users have viewed or downloaded this file</body></html>'
      self.send_response(200)
      self.send_header('Content-Type', 'text/html; charset=utf-8')
    else:
      body = (pathlib.Path(self.directory) / name).read_bytes()
      self.send_response(200)
      self.send_header('Content-Type', 'application/octet-stream')
    self.send_header('Content-Length', str(len(body)))
    self.end_headers()
    self.wfile.write(body)


CELEBA_FILES = ('img_align_celeba.zip', 'list_eval_partition.txt')


@pytest.fixture
def celeba_drive(tmp_path, monkeypatch) -> pathlib.Path:
  """A folder of CelebA's two files as published (2 train, 1 validation, 1 test image),
  served Google Drive's way: each at its own address, `/download?...&id=<id>`."""
  folder = write_celeba(tmp_path / 'drive', {
      'train': np.array([[250, 0, 0], [0, 250, 0]], np.uint8),
      'valid': np.array([[0, 0, 250]], np.uint8), 'test': np.array([[9, 9, 9]], np.uint8)})
  monkeypatch.setattr(DriveHandler, 'ids', {f'id{i}': name for i, name in enumerate(CELEBA_FILES)})
  return folder


def test_celeb_a_downloads_from_its_own_addresses_and_is_cached(tmp_path, celeba_drive,
                                                                monkeypatch):
  """With no mirror given, the celeba source fetches each file from its own address (the test
  server standing in for Google Drive, the test's md5s for the published ones), caches both,
  and reads the cache offline."""
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  md5s = {n: hashlib.md5((celeba_drive / n).read_bytes()).hexdigest() for n in CELEBA_FILES}
  config = types.SimpleNamespace(source='celeba', name='celeb_a', dir='', download=True,
                                 mirror='')
  with serving(celeba_drive, DriveHandler) as url:
    monkeypatch.setitem(download.KNOWN, 'celeb_a', dataclasses.replace(
        download.KNOWN['celeb_a'], files=md5s,
        urls={n: f'{url}download?export=download&confirm=t&id=id{i}'
              for i, n in enumerate(CELEBA_FILES)}))
    x, _ = data.load_split(config, 'train', 8)
  cache = download.cache_dir('celeb_a')
  assert listing(cache) == sorted(CELEBA_FILES)
  assert all((cache / n).read_bytes() == (celeba_drive / n).read_bytes() for n in CELEBA_FILES)
  np.testing.assert_allclose(x[:, 4, 4], [[250, 0, 0], [0, 250, 0]], atol=3)  # uint8
  x, _ = data.load_split(config, 'test', 8)  # The server is gone: the cache serves it.
  np.testing.assert_allclose(x, 9, atol=3)


def test_an_html_page_in_place_of_a_file_is_one_line_and_caches_nothing(tmp_path, celeba_drive):
  """Google Drive answers a spent download quota with an HTML page and status 200: train.py
  says so in one line, instead of a checksum mismatch, and caches nothing."""
  # A mirror's URL names no Drive id: the server answers with its HTML page.
  lines = failed_download_lines(tmp_path, celeba_drive, 'configs/siren_celeba.py', DriveHandler)
  assert len(lines) == 1, lines
  assert lines[0].startswith('error: could not download img_align_celeba.zip (')
  assert 'the server sent an HTML page, not the file' in lines[0]
  assert all(way in lines[0] for way in WAYS_OUT), lines[0]


@pytest.mark.slow
def test_celeb_a_checksum_mismatch_and_a_colour_siren_on_its_files(tmp_path, celeba_drive):
  """The published md5 rejects the test's zip (one line, nothing cached); the same files in a
  folder train and evaluate configs/siren_celeba.py end to end (3 outputs per pixel)."""
  lines = failed_download_lines(tmp_path, celeba_drive, 'configs/siren_celeba.py')
  assert len(lines) == 2, lines  # downloading, error
  assert lines[1].startswith('error: checksum mismatch for img_align_celeba.zip from ')
  assert lines[1].endswith('expected 00d2c5bc6d35e252742224ab0c1e8fcb; nothing was cached')

  flags = (*TINY_SIREN_FLAGS, '--config.data.source=celeba', f'--config.data.dir={celeba_drive}',
           '--config.batch_size=2', '--config.num_fit_examples=2',
           '--config.train_eval_examples=1', '--config.model.latent_dim=4')
  siren = dict(config='configs/siren_celeba.py', tiny_flags=flags)
  result = run_script('train.py', tmp_path / 'run', **siren)
  assert result.returncode == 0, result.stderr[-2000:]
  result = run_script('eval.py', tmp_path / 'run', **siren)
  assert result.returncode == 0, result.stderr[-2000:]
  metrics = json.loads(result.stdout.strip().splitlines()[-1])
  assert metrics['step'] == 3 and metrics['num_images'] == 1 and metrics['psnr'] > 0
