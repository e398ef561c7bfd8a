"""A pretrained GON at work, without training: test images, their reconstructions and, for
an implicit model, the same latents rendered at any resolution, in one titled PNG.

  python -m gon_jax.demo --name siren_mnist_shift --size 256 --out demo
  python -m gon_jax.demo --name runs/siren_mnist --out demo     # a workdir of train.py
  python -m gon_jax.demo --name all --out demo                  # every pretrained model

writes demo/siren_mnist_shift.png (demo/siren_mnist.png) and prints one line with the
reconstructions' SSE. A model that is not implicit shows samples instead of the rendering.
A pretrained model brings its example images; a workdir's are the first test images of its
config's data set (and, to sample a model that is not implicit, the Gaussian of its first
`num_fit_examples` training images' latents, as eval.py fits it), read as train.py reads them.
"""

import argparse
import os

import numpy as np

from gon_jax import bundles, data
from gon_jax import images as images_lib
from gon_jax import model as model_lib
from gon_jax.errors import ConfigError, DataError, run_reporting_errors


def demo(name: str, size: int, out: str, count: int = 16) -> str:
  """Writes `<out>/<model>.png` for the pretrained model or workdir `name` (`<model>`: the
  name, or the folder's own name); returns the line to print: the file and the SSE of the
  reconstructions of its `count` example images.

  Raises:
    ConfigError: `size` or `count` not a positive integer.
    FileNotFoundError: `name` is neither a pretrained model nor a folder with a model.
    DataError: a workdir whose data set cannot be read (its config's `data`).
  """
  for what, value in (('size', size), ('count', count)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ConfigError(f'{what} {value!r}: use a positive integer')
  model = model_lib.load(name)
  shown = model.examples
  if shown is None:  # a workdir: the first test images of its data set
    shown = _split(model, 'test')
  shown = shown[:count]
  reconstructions = model.reconstruct(shown)
  sse = model.evaluate(shown)['sse']
  columns = int(np.ceil(np.sqrt(len(shown))))
  if model.objective.spec.implicit:
    panels = [images_lib.upscale(shown, size), images_lib.upscale(reconstructions, size),
              model.render(model.encode(shown), size)]
    titles = ['test images', 'reconstructions', f'rendered at {size}x{size}']
  else:
    if model.gaussian is None and not model.objective.variational:
      model = model.with_gaussian(_split(model, 'train')[:model.config.num_fit_examples])
    panels = [shown, reconstructions, model.sample(len(shown), model.config.seed)]
    titles = ['test images', 'reconstructions', 'samples']
  path = os.path.join(out, os.path.basename(os.path.normpath(os.path.expanduser(name))) + '.png')
  images_lib.save_grid(path, panels, columns, titles=titles)
  return (f'{path}: {len(shown)} test images of {model.config.data.name}, their '
          f'reconstructions (SSE {sse:.2f} per image) and {titles[-1]}')


def _split(model: model_lib.Model, split: str) -> np.ndarray:
  """The images uint8 `[n, height, width, channels]` of `split` of the model's data set (its
  config's `data`), as train.py reads them."""
  height, _, channels = model.image_shape
  try:
    images, _ = data.load_split(model.settings.data, split, height, channels)
  except (DataError, FileNotFoundError) as err:
    raise DataError(f'{model.source} holds no example images and the {split} split of the '
                    f'data set it was trained on cannot be read: {err}') from None
  return images


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog='python -m gon_jax.demo', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--name', default='siren_mnist_shift',
                      help="a pretrained model (docs/pretrained.md), a workdir (a folder named "
                           "all: ./all), or 'all': one PNG per pretrained model")
  parser.add_argument('--size', type=int, default=256, help='resolution of the rendering')
  parser.add_argument('--out', default='demo', help='folder of the PNG')
  args = parser.parse_args(argv)
  names = bundles.pretrained_names() if args.name == 'all' else [args.name]
  for name in names:
    print(run_reporting_errors(demo, name, args.size, args.out), flush=True)


if __name__ == '__main__':
  main()
