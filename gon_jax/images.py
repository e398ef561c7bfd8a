"""PNG grids of images."""

import os

import numpy as np
from PIL import Image


def tile(images: np.ndarray, columns: int) -> np.ndarray:
  """Tiles `[n, height, width, channels]` into one `[rows*height, columns*width, channels]` image."""
  n, h, w, c = images.shape
  rows = -(-n // columns)
  padded = np.zeros((rows * columns, h, w, c), images.dtype)
  padded[:n] = images
  return padded.reshape(rows, columns, h, w, c).transpose(0, 2, 1, 3, 4).reshape(
      rows * h, columns * w, c)


def save_grid(path: str, panels: list[np.ndarray], columns: int, gap: int = 2) -> None:
  """Saves panels of images in [0, 1] side by side as one PNG.

  Args:
    path: output file; its folder is created.
    panels: each `[n, height, width, channels]`, tiled with `columns` columns.
    columns: images per row within a panel.
    gap: white pixels between panels.
  """
  tiles = [tile(np.clip(np.asarray(p, np.float32), 0, 1), columns) for p in panels]
  height = max(t.shape[0] for t in tiles)
  spacer = np.ones((height, gap, tiles[0].shape[-1]), np.float32)
  parts = []
  for t in tiles:
    parts += [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0))), spacer]
  grid = (np.concatenate(parts[:-1], axis=1) * 255).round().astype(np.uint8)
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)


def save_reconstructions(path: str, originals: np.ndarray, reconstructions: np.ndarray,
                         grid_size: int) -> None:
  """Originals (left) next to their reconstructions (right), `grid_size**2` of each."""
  n = min(grid_size ** 2, len(originals), len(reconstructions))
  save_grid(path, [originals[:n], reconstructions[:n]], grid_size)


def upscale(images: np.ndarray, size: int) -> np.ndarray:
  """Nearest-neighbour resize of `[n, height, width, channels]` to `size x size`, for display."""
  rows = np.arange(size) * images.shape[1] // size
  cols = np.arange(size) * images.shape[2] // size
  return images[:, rows][:, :, cols]
