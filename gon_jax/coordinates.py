"""Pixel coordinates of implicit models: one grid definition for every resolution."""

import numpy as np


def grid(height: int, width: int | None = None) -> np.ndarray:
  """Pixel-centre coordinates of a `height x width` image in [-1, 1]^2.

  The one definition of coordinates for every resolution: row-major, `[y, x]`,
  the first and last pixel centres at -1 and +1 (as `torch.linspace(-1, 1, n)`
  in the official code), so that a 256x256 grid covers the same square as the
  28x28 one it super-resolves.

  Returns:
    `[height * width, 2]` float32.
  """
  width = height if width is None else width
  ys, xs = np.meshgrid(np.linspace(-1, 1, height, dtype=np.float32),
                       np.linspace(-1, 1, width, dtype=np.float32), indexing='ij')
  return np.stack([ys, xs], axis=-1).reshape(-1, 2)


def upsampling_grid(size: int, factor: int) -> np.ndarray:
  """The pixel centres of an image `factor` times larger, in the frame of `grid(size)`.

  A `size x size` image made by downsampling (averaging `factor x factor`
  blocks, or any filter centred on them) puts its pixel j at the centre of
  the larger image's pixels `factor j ... factor j + factor - 1`; a decoder
  trained on `grid(size)` renders the larger image at these coordinates
  (slightly beyond [-1, 1] at the borders), aligned with its input.

  Returns:
    `[(size * factor)**2, 2]` float32, row-major `[y, x]`.
  """
  if size < 2 or factor < 1:
    raise ValueError(f'upsampling_grid needs size >= 2 and factor >= 1, got {size}, {factor}')
  low = (np.arange(size * factor) + 0.5) / factor - 0.5  # in pixels of the small image
  side = (-1 + 2 * low / (size - 1)).astype(np.float32)
  ys, xs = np.meshgrid(side, side, indexing='ij')
  return np.stack([ys, xs], axis=-1).reshape(-1, 2)
