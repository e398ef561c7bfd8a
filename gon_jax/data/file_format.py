"""What a data source that reads files is: the split it is asked for (_Request) and how it finds
and reads a split in a folder (_FileFormat). Each file source's module (idx, cifar, celeba,
image_folder) makes its own, FORMAT; gon_jax.data.sources picks one by data.source.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Callable

import numpy as np

SPLITS = ('train', 'test')


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
