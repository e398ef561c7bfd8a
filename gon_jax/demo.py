"""A pretrained GON at work, without training: test images, their reconstructions and, for
an implicit model, the same latents rendered at any resolution, in one titled PNG.

  python -m gon_jax.demo --name siren_mnist_shift --size 256 --out demo

writes demo/siren_mnist_shift.png and prints one line with the reconstructions' SSE.
A model that is not implicit shows samples instead of the rendering.
"""

import argparse
import os

import numpy as np

from gon_jax import images as images_lib
from gon_jax import model as model_lib
from gon_jax.errors import run_reporting_errors


def demo(name: str, size: int, out: str, count: int = 16) -> str:
  """Writes `<out>/<name>.png` for the pretrained model (or workdir) `name`; returns the line
  to print: the file and the SSE of the reconstructions of its `count` example images."""
  model = model_lib.load(name)
  if model.examples is None:
    raise FileNotFoundError(f'{name} holds no example images: give a pretrained model '
                            f'({", ".join(model_lib.pretrained_names())})')
  shown = model.examples[:count]
  reconstructions = model.reconstruct(shown)
  sse = model.evaluate(shown)['sse']
  columns = int(np.ceil(np.sqrt(len(shown))))
  if model.objective.spec.implicit:
    panels = [images_lib.upscale(shown, size), images_lib.upscale(reconstructions, size),
              model.render(model.encode(shown), size)]
    titles = ['test images', 'reconstructions', f'rendered at {size}x{size}']
  else:
    panels = [shown, reconstructions, model.sample(len(shown), model.config.seed)]
    titles = ['test images', 'reconstructions', 'samples']
  path = os.path.join(out, f'{name}.png')
  images_lib.save_grid(path, panels, columns, titles=titles)
  return (f'{path}: {len(shown)} test images of {model.config.data.name}, their '
          f'reconstructions (SSE {sse:.2f} per image) and {titles[-1]}')


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog='python -m gon_jax.demo', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--name', default='siren_mnist_shift',
                      help='a pretrained model (docs/pretrained.md) or a workdir')
  parser.add_argument('--size', type=int, default=256, help='resolution of the rendering')
  parser.add_argument('--out', default='demo', help='folder of the PNG')
  args = parser.parse_args(argv)
  print(run_reporting_errors(demo, args.name, args.size, args.out))


if __name__ == '__main__':
  main()
