"""PNG figures: grids of images, latent scatter plots, loss curves."""

import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from gon_jax import data


def tile(images: np.ndarray, columns: int) -> np.ndarray:
  """Tiles `[n, height, width, channels]` into one `[rows*height, columns*width, channels]` image."""
  n, h, w, c = images.shape
  rows = -(-n // columns)
  padded = np.zeros((rows * columns, h, w, c), images.dtype)
  padded[:n] = images
  return padded.reshape(rows, columns, h, w, c).transpose(0, 2, 1, 3, 4).reshape(
      rows * h, columns * w, c)


# Pixels of the white strip above each panel of a grid that holds its title, at the title
# font's own size: the default bitmap font's 11-pixel line and a margin.
TITLE_HEIGHT = 14
_TITLE_MARGIN = 3  # pixels either side of a title wider than its panel
_TITLE_TOP = 2  # pixels above a title's line
TITLE_LINE = 11  # pixels of the bitmap font's line, from its ascenders to its descenders
# A title's line is at least this fraction of its panels' width high: 25 pixels when they are
# shown 1000 pixels wide, whatever their own width (a demo's is 3076).
TITLE_FRACTION = 0.025


def _font() -> ImageFont.ImageFont:
  # Pillow's built-in bitmap font: no font file to find, the same pixels everywhere.
  load = getattr(ImageFont, 'load_default_imagefont', ImageFont.load_default)
  return load()


def title_scale(width: int) -> int:
  """The whole-number magnification of the title font over panels `width` pixels wide: 1, or
  enough for a line of at least `TITLE_FRACTION` of the width (the font's pixels are
  enlarged, so the same pixels everywhere)."""
  return max(1, math.ceil(TITLE_FRACTION * width / TITLE_LINE))


def title_width(title: str, scale: int = 1) -> int:
  """Pixels a panel of a titled grid is at least wide to fit `title` at `scale` (see
  `grid_image`)."""
  left, _, right, _ = _font().getbbox(title)
  return (right - left + 2 * _TITLE_MARGIN) * scale


def _title_image(title: str, scale: int) -> Image.Image:
  """`title` in black on white, 'L' `[TITLE_HEIGHT * scale, text width * scale]`: the bitmap
  font's pixels, each made `scale` x `scale`."""
  font = _font()
  left, _, right, _ = font.getbbox(title)
  image = Image.new('L', (right - left, TITLE_HEIGHT), 255)
  ImageDraw.Draw(image).text((-left, _TITLE_TOP), title, fill=0, font=font)
  return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def grid_image(panels: list[np.ndarray], columns: int, titles: list[str] | None = None,
               gap: int = 2) -> np.ndarray:
  """Panels of images in [0, 1] side by side, each under its title, as one image.

  Args:
    panels: each `[n, height, width, channels]`, uint8 (data.load_split's) or floats in
      [0, 1], tiled with `columns` columns.
    columns: images per row within a panel.
    titles: one per panel, written in a strip above it, `TITLE_HEIGHT` pixels high at the
      font's own size, which `title_scale` of the panels' width (with gaps) magnifies, so
      titles stay readable on wide figures; a panel narrower than its title is centred in
      a column as wide as the title (`title_width`). None: no strip.
    gap: white pixels between panels.

  Returns:
    uint8 `[height, width, channels]`: the title strip (with titles) plus the tallest panel
    high; panels shorter than that are padded with black below. A panel's pixels do not
    depend on the titles.
  """
  if titles is not None and len(titles) != len(panels):
    raise ValueError(f'{len(titles)} titles for {len(panels)} panels')
  # A diverged model's NaN pixels show black (and cast to uint8 without a warning).
  tiles = [tile(np.clip(np.nan_to_num(data.to_float(p)), 0, 1), columns)
           for p in panels]
  scale = title_scale(sum(t.shape[1] for t in tiles) + gap * (len(tiles) - 1)) if titles else 1
  top = TITLE_HEIGHT * scale if titles else 0
  height = max(t.shape[0] for t in tiles)
  widths = [max(t.shape[1], title_width(title, scale)) if titles else t.shape[1]
            for t, title in zip(tiles, titles or [''] * len(tiles))]
  grid = np.ones((top + height, sum(widths) + gap * (len(tiles) - 1), tiles[0].shape[-1]),
                 np.float32)
  lefts = np.cumsum([0] + [w + gap for w in widths[:-1]])
  for t, left, width in zip(tiles, lefts, widths):
    left += (width - t.shape[1]) // 2
    grid[top:, left:left + t.shape[1]] = np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0)))
  grid = (grid * 255).round().astype(np.uint8)
  if not titles:
    return grid
  image = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
  for title, left, width in zip(titles, lefts, widths):
    text = _title_image(title, scale)
    image.paste(text.convert(image.mode), (int(left) + (width - text.width) // 2, 0))
  return np.asarray(image).reshape(grid.shape)


def save_grid(path: str, panels: list[np.ndarray], columns: int, gap: int = 2,
              titles: list[str] | None = None) -> np.ndarray:
  """Saves `grid_image(panels, columns, titles, gap)` as a PNG and returns it.

  Args:
    path: output file; its folder is created.
    panels, columns, titles, gap: as for `grid_image`.

  Returns:
    The uint8 `[height, width, channels]` image saved (for TensorBoard).
  """
  grid = grid_image(panels, columns, titles, gap)
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
  return grid


def save_reconstructions(path: str, originals: np.ndarray, reconstructions: np.ndarray,
                         grid_size: int) -> np.ndarray:
  """Originals (left) next to their reconstructions (right), `grid_size**2` of each, titled.

  Returns:
    The uint8 image saved, as `save_grid`.
  """
  n = min(grid_size ** 2, len(originals), len(reconstructions))
  return save_grid(path, [originals[:n], reconstructions[:n]], grid_size,
                   titles=['test images', 'reconstructions'])


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


def save_curves(path: str, panels: dict[str, dict[str, tuple]], ylabel: str,
                xlabel: str = 'training step') -> None:
  """Line plots side by side, one panel per key, with a shaded band.

  Args:
    path: output PNG.
    panels: `{panel title: {line label: (x [n], mean [n], std [n])}}`; a line may carry a
      partner, `(x, mean, std, (partner label, mean [n], std [n]))`, drawn dashed in its
      colour (e.g. test beside training loss).
    ylabel, xlabel: the axes' labels.
  """
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
  for ax, (title, lines) in zip(axes[0], panels.items()):
    for label, (x, mean, std, *partner) in lines.items():
      marker = 'o' if len(x) <= 20 else None  # a curve of one point is a point
      (line,) = ax.plot(x, mean, label=label, marker=marker, markersize=3)
      ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
      for partner_label, partner_mean, partner_std in partner:
        ax.plot(x, partner_mean, '--', color=line.get_color(), label=partner_label,
                marker=marker, markersize=3)
        ax.fill_between(x, partner_mean - partner_std, partner_mean + partner_std,
                        color=line.get_color(), alpha=0.1)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_yscale('log')
    ax.legend(fontsize='small')
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fig.savefig(path, dpi=120, bbox_inches='tight')
  plt.close(fig)
