"""Decoding images into one uint8 array, as the file sources do: each image's centred square
(`_square`), decoded on every core straight into the array (`_decode_all`), and PIL's
bilinear resizing of a whole split (`_resize`).
"""

from __future__ import annotations

import concurrent.futures
import os
from typing import Any, Callable

import numpy as np
from PIL import Image
import tqdm

from gon_jax.errors import DataError


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
