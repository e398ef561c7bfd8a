"""The batch pipeline: the conversion of the host's uint8 images (to_float), the training order
(a pure function of seed and step, resumable), this process's rows of each training batch,
prefetching onto the devices, and fixed-size batches of any array through a function.
"""

from __future__ import annotations

import functools
import itertools
import os
import queue
import threading
from typing import Any, Callable, Iterator

import jax
import numpy as np
import tqdm

from gon_jax.errors import DataError, check_count

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
