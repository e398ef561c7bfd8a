"""Downloads data sets as their publishers ship them: the one place that fetches files.

MNIST and Fashion-MNIST come as four gzipped IDX files, CIFAR-10 as one archive of
pickled batches ('cifar-10-python.tar.gz'), CelebA as a zip of aligned JPEGs and a text
file naming each image's split, each at its own Google Drive address. A download is
verified, atomic and cached: each file is streamed to a temporary file in the target
folder, checked against its known checksum, and only once every missing file has arrived
intact are they renamed into place. A failed download leaves the folder as it found it (and
removes it again if it created it), so the next run starts clean; a folder that holds the
files is used without touching the network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import http.client
import os
import pathlib
import sys
import time
import urllib.error
import urllib.request
import zlib
from typing import Callable, Mapping, Sequence

from gon_jax.errors import DataError


# The four files of an MNIST-like set as published.
IDX_FILES = ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
             't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')
# How a checksum is taken: 'content_sha256', the sha256 of a gzip file's decompressed content
# (any correct gzip of the original bytes passes: mirrors and distributions recompress IDX files,
# so their .gz bytes differ); 'md5', the md5 of the file as published (CIFAR-10's and CelebA's).
CHECKSUMS = ('content_sha256', 'md5')
_GOOGLE_DRIVE = 'https://drive.usercontent.google.com/download?export=download&confirm=t&id='


@dataclasses.dataclass(frozen=True)
class KnownDataset:
  """Where a data set's files are published, in which format, and what they must hash to."""
  source: str  # The data source that reads the files: 'idx', 'cifar' or 'celeba' (gon_jax.data).
  mirrors: tuple[str, ...]  # Base URLs ending in '/', tried in order.
  files: Mapping[str, str]  # Published file name -> its checksum.
  checksum: str = 'content_sha256'  # One of CHECKSUMS.
  # Published file name -> an address of its own, tried after the mirrors (files hosted
  # where a base URL plus the name does not reach them, as on Google Drive).
  urls: Mapping[str, str] = dataclasses.field(default_factory=dict)


KNOWN: dict[str, KnownDataset] = {
    # Computed from a copy of MNIST whose decompressed files have the md5s of the original
    # distribution (6bbc9ace..., a25bea73..., 2646ac64..., 27ae3e4e..., as listed by its
    # SOURCE.md and by many public MNIST loaders). Mirrors: tfds's, then torchvision's.
    'mnist': KnownDataset(
        source='idx',
        mirrors=('https://storage.googleapis.com/cvdf-datasets/mnist/',
                 'https://ossci-datasets.s3.amazonaws.com/mnist/'),
        files={
            'train-images-idx3-ubyte.gz':
                'ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db',
            'train-labels-idx1-ubyte.gz':
                '65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5',
            't10k-images-idx3-ubyte.gz':
                '0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7',
            't10k-labels-idx1-ubyte.gz':
                'ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2',
        }),
    # Computed from Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist). Debian
    # recompressed the .gz files, so their md5s differ from Zalando's published ones; the
    # decompressed content matches: its md5s (f4a8712d..., 9018921c..., 8181f547..., 15d48437...)
    # are those of the files behind Zalando's .gz md5s (8d4fb7e6..., 25c81989..., bef4ecab...,
    # bb300cfd...), checked directly for the two label files from Zalando's repository.
    'fashion_mnist': KnownDataset(
        source='idx',
        mirrors=('http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/',),
        files={
            'train-images-idx3-ubyte.gz':
                'c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888',
            'train-labels-idx1-ubyte.gz':
                'bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9',
            't10k-images-idx3-ubyte.gz':
                '5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b',
            't10k-labels-idx1-ubyte.gz':
                '0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34',
        }),
    # The python version of CIFAR-10 from its authors' page, with the md5 they publish there
    # (the one checksum anyone publishes for it; torchvision checks the same).
    'cifar10': KnownDataset(
        source='cifar',
        mirrors=('https://www.cs.toronto.edu/~kriz/',),
        files={'cifar-10-python.tar.gz': 'c58f30108f718f92721af3b95e74349a'},
        checksum='md5'),
    # CelebA's aligned and cropped images (202,599 JPEGs, 178x218) and its official split, as
    # its authors publish them on Google Drive, with the md5s torchvision checks. The address
    # is Google Drive's direct download with the large-file warning skipped (confirm=t), as
    # gdown uses; Drive answers an exhausted download quota with an HTML page (_stream).
    'celeb_a': KnownDataset(
        source='celeba',
        mirrors=(),
        files={'img_align_celeba.zip': '00d2c5bc6d35e252742224ab0c1e8fcb',
               'list_eval_partition.txt': 'd32c9cbf5e040fd4025c592c306e6668'},
        checksum='md5',
        urls={'img_align_celeba.zip': _GOOGLE_DRIVE + '0B7EVK8r0v71pZjFTYXZWM3FlRnM',
              'list_eval_partition.txt': _GOOGLE_DRIVE + '0B7EVK8r0v71pY0NSMzRuSXJEVkk'}),
}

# Seconds a connection attempt or a read may wait for the server (the socket timeout).
TIMEOUT_S = 6.0
# Seconds that the failed attempts at one file may take together: with two mirrors that do not
# answer, the command still ends well within 15 s.
FILE_BUDGET_S = 9.0
# A temporary file untouched this long belongs to a dead run (a live one writes at least every
# TIMEOUT_S or gives up), and may be deleted.
STALE_PART_S = 600.0
_CHUNK = 1 << 20


def cache_dir(name: str) -> pathlib.Path:
  """The default folder of data set `name`, e.g. ~/.cache/gon_jax/mnist.

  $XDG_CACHE_HOME/gon_jax/<name> when XDG_CACHE_HOME is set, else ~/.cache/gon_jax/<name>.

  Args:
    name: data set name, e.g. 'mnist'.

  Returns:
    The folder (it may not exist yet).
  """
  root = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return pathlib.Path(root) / 'gon_jax' / name


def download_files(folder: pathlib.Path,
                   name: str,
                   files: Mapping[str, str] | None = None,
                   mirrors: Sequence[str] = (),
                   checksum: str | None = None,
                   timeout: float = TIMEOUT_S,
                   log: Callable[[str], None] | None = None) -> list[pathlib.Path]:
  """Downloads `files` into `folder`, verified; all arrive or none do.

  Stops at the first file that no mirror delivers intact. Temporary files are
  `.<file>.part-<pid>` in `folder`, never read by anyone, and deleted on failure.

  Args:
    folder: where the files go; created if missing (and removed again if the download fails).
    name: data set name, for the default files, mirrors and checksums (KNOWN) and messages.
    files: published file name -> its checksum; None for KNOWN[name]'s.
    mirrors: base URLs tried in order instead of the data set's mirrors and addresses
      (KNOWN); () for those.
    checksum: how `files`' checksums are taken, one of CHECKSUMS; None for KNOWN[name]'s
      (or 'content_sha256' for a set not in KNOWN).
    timeout: socket timeout of each attempt, in seconds.
    log: called with one line per file downloaded; None prints it to stderr.

  Returns:
    The paths of the files placed in `folder`, in the order of `files`.

  Raises:
    DataError: a file could not be fetched from any mirror, or its content is not the expected.
  """
  known = KNOWN.get(name)
  if files is None:
    if known is None:
      raise DataError(f"no known checksums for data set {name!r}; known: {', '.join(KNOWN)}")
    files = known.files
  checksum = checksum or (known.checksum if known else 'content_sha256')
  if checksum not in CHECKSUMS:
    raise DataError(f"unknown checksum {checksum!r}; use one of {', '.join(CHECKSUMS)}")
  own_urls = {}
  if not mirrors:
    if known is None:
      raise DataError(f"no known mirrors for data set {name!r}: set --config.data.mirror=URL")
    mirrors, own_urls = known.mirrors, known.urls
  mirrors = [m if m.endswith('/') else m + '/' for m in mirrors]
  log = log or (lambda line: print(line, file=sys.stderr, flush=True))

  created = _make_folder(folder)
  parts: dict[str, pathlib.Path] = {}  # File name -> its verified temporary file.
  try:
    _delete_stale_parts(folder)
    for file, expected in files.items():
      urls = [base + file for base in mirrors] + ([own_urls[file]] if file in own_urls else [])
      parts[file] = _fetch_one(folder, file, list(files), urls, (checksum, expected), timeout, log)
    placed = []
    for file, part in parts.items():
      os.replace(part, folder / file)  # Atomic: readers see the whole file or none.
      placed.append(folder / file)
    return placed
  except BaseException:  # Also KeyboardInterrupt: leave nothing half done.
    for part in parts.values():
      _unlink(part)
    for path in reversed(created):  # Deepest first; only folders left empty.
      with contextlib.suppress(OSError):  # not empty: another process's files are in it
        path.rmdir()
    raise


def _fetch_one(folder: pathlib.Path, file: str, all_files: Sequence[str], urls: Sequence[str],
               checksum: tuple[str, str], timeout: float,
               log: Callable[[str], None]) -> pathlib.Path:
  """Fetches `file` from the first of `urls` that delivers it intact; returns its temp file.

  `checksum`: (how it is taken, one of CHECKSUMS; the expected hex digest).
  """
  part = folder / f'.{file}.part-{os.getpid()}'
  failures, mismatch = [], None
  start = time.monotonic()
  for url in urls:
    left = FILE_BUDGET_S - (time.monotonic() - start)
    if failures and left < 1.0:  # Two mirrors that don't answer must not hold the run for long.
      failures.append(f'{url}: not tried, out of time')
      continue
    try:
      _stream(url, part, min(timeout, max(left, 1.0)), folder, log)
      got = _digest(part, checksum[0])
    except (OSError, http.client.HTTPException, ValueError) as e:
      # OSError covers URLError, HTTPError, timeouts, refused connections, disk errors.
      _unlink(part)
      failures.append(f'{url}: {_reason(e)}')
      continue
    except BaseException:
      _unlink(part)
      raise
    if got == checksum[1]:
      return part
    _unlink(part)
    what = ('the sha256 of its decompressed content' if checksum[0] == 'content_sha256'
            else 'its md5')
    mismatch = mismatch or (f"checksum mismatch for {file} from {url}: {what} is {got}, "
                            f"expected {checksum[1]}; nothing was cached")
    failures.append(f'{url}: checksum mismatch')
  if mismatch:
    raise DataError(mismatch if len(failures) == 1 else f"{mismatch} ({'; '.join(failures)})")
  raise DataError(
      f"could not download {file} ({'; '.join(failures)}); set --config.data.mirror=URL to a "
      f"mirror holding {', '.join(all_files)}, or --config.data.dir=FOLDER to a folder holding "
      "them")


def _stream(url: str, part: pathlib.Path, timeout: float, folder: pathlib.Path,
            log: Callable[[str], None]) -> None:
  """Writes the body of GET `url` to `part`; raises on a short or failed transfer."""
  request = urllib.request.Request(url, headers={'User-Agent': 'gon_jax'})
  with urllib.request.urlopen(request, timeout=timeout) as response:
    if response.headers.get_content_type() == 'text/html' and not url.endswith('.html'):
      # A host's page in place of the file: Google Drive's "quota exceeded" or a sign-in.
      raise ValueError('the server sent an HTML page, not the file (a download quota or '
                       'sign-in page?)')
    length = response.headers.get('Content-Length')
    size = f' ({_size(int(length))})' if length and length.isdigit() else ''
    log(f'downloading {url} -> {_display(folder)}{size}')
    written = 0
    with open(part, 'wb') as out:
      while chunk := response.read(_CHUNK):  # Raises IncompleteRead if the body ends early.
        out.write(chunk)
        written += len(chunk)
    if length and length.isdigit() and written != int(length):
      raise http.client.IncompleteRead(b'', int(length) - written)


def _digest(path: pathlib.Path, checksum: str) -> str:
  """`path`'s checksum (one of CHECKSUMS); raises ValueError if a gzip file is not intact."""
  if checksum == 'md5':
    digest = hashlib.md5()
    with open(path, 'rb') as f:
      while chunk := f.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()
  digest = hashlib.sha256()
  try:
    with gzip.open(path, 'rb') as f:
      while chunk := f.read(_CHUNK):
        digest.update(chunk)
  except (gzip.BadGzipFile, EOFError, zlib.error) as e:  # Not gzip, cut short, or corrupt.
    raise ValueError(f'not an intact gzip file: {e}') from None
  return digest.hexdigest()


def _reason(error: BaseException) -> str:
  """A few words on why a download attempt failed."""
  if isinstance(error, urllib.error.HTTPError):
    return f'HTTP {error.code} {error.reason}'
  if isinstance(error, urllib.error.URLError):  # Wraps the socket's error, or a message.
    if not isinstance(error.reason, BaseException):
      return str(error.reason)
    error = error.reason
  if isinstance(error, TimeoutError):  # socket.timeout is TimeoutError since Python 3.10.
    return 'timed out'
  if isinstance(error, http.client.IncompleteRead):
    return f'connection closed with {error.expected} bytes still to come'
  if isinstance(error, http.client.RemoteDisconnected):
    return 'connection closed without a response'
  if isinstance(error, OSError) and error.strerror:
    return error.strerror
  return str(error) or type(error).__name__


def _make_folder(folder: pathlib.Path) -> list[pathlib.Path]:
  """Creates `folder` and its missing parents; returns those created, outermost first."""
  created = []
  for path in [*reversed(folder.parents), folder]:
    if not path.exists():
      try:
        path.mkdir()
      except FileExistsError:  # Made by another process meanwhile: not ours to remove.
        continue
      except OSError as e:
        for made in reversed(created):
          made.rmdir()  # Empty: we just made it.
        raise DataError(f"cannot create the data folder {folder} ({_reason(e)}); set "
                        "--config.data.dir=FOLDER to a writable folder") from None
      created.append(path)
  return created


def _delete_stale_parts(folder: pathlib.Path) -> None:
  """Deletes temporary files of dead runs (they are never read)."""
  now = time.time()
  for part in folder.glob('.*.part-*'):
    with contextlib.suppress(OSError):  # gone meanwhile, or not ours to delete
      if now - part.stat().st_mtime > STALE_PART_S:
        part.unlink()


def _unlink(path: pathlib.Path) -> None:
  path.unlink(missing_ok=True)


def _size(num_bytes: int) -> str:
  """e.g. '9.9 MB', '29 kB', '120 B'."""
  if num_bytes >= 1e6:
    return f'{num_bytes / 1e6:.1f} MB'
  return f'{num_bytes / 1e3:.0f} kB' if num_bytes >= 1e3 else f'{num_bytes} B'


def _display(folder: pathlib.Path) -> str:
  """`folder` with the home directory written as '~'."""
  home = os.path.expanduser('~')
  text = str(folder)
  if home not in ('', '/') and text.startswith(home + os.sep):
    return '~' + text[len(home):]
  return text
