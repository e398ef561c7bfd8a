"""PNG figures: grids of images, latent scatter plots, loss curves."""

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


def _pyplot():
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')  # files only, no display
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def save_scatter(path: str, points: np.ndarray, labels: np.ndarray) -> None:
  """Scatter plot of 2-D points `[n, 2]` coloured by integer class `labels` `[n]` (Fig. 12)."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6, 6))
  for label in np.unique(labels):
    chosen = labels == label
    ax.scatter(points[chosen, 0], points[chosen, 1], s=2, label=str(label),
               color=plt.get_cmap('tab10')(int(label) % 10))
  ax.legend(markerscale=5, fontsize='small', loc='best')
  ax.set_xlabel('z[0]')
  ax.set_ylabel('z[1]')
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fig.savefig(path, dpi=120, bbox_inches='tight')
  plt.close(fig)


def save_curves(path: str, panels: dict[str, dict[str, tuple]], ylabel: str) -> None:
  """Line plots side by side, one panel per key, with a shaded band.

  Args:
    path: output PNG.
    panels: `{panel title: {line label: (x [n], mean [n], std [n])}}`.
    ylabel: the y axis' label.
  """
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
  for ax, (title, lines) in zip(axes[0], panels.items()):
    for label, (x, mean, std) in lines.items():
      (line,) = ax.plot(x, mean, label=label)
      ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_title(title)
    ax.set_xlabel('training step')
    ax.set_ylabel(ylabel)
    ax.set_yscale('log')
    ax.legend(fontsize='small')
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fig.savefig(path, dpi=120, bbox_inches='tight')
  plt.close(fig)
