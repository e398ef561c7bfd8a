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
