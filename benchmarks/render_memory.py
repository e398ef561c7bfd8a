"""Peak memory of rendering one latent at a high resolution: `Model.render(z[:1], 4096)` of
the pretrained siren_mnist_shift, which decodes at most `generate.RENDER_POINTS` pixels per
call (docs/pretrained.md).

  python benchmarks/render_memory.py [--size 4096] [--name siren_mnist_shift]

Runs the rendering in a fresh process, whose peak resident memory (getrusage's ru_maxrss) is
then that of loading the model and rendering, and prints one line: the peak, the peak before
rendering (jax and the model loaded, the latent encoded), and the seconds of the first call
(compiling included) and of a second.
"""

import argparse
import json
import resource
import subprocess
import sys
import time

GIB = 2 ** 30


def peak_rss() -> int:
  """This process's peak resident memory in bytes (ru_maxrss is in KiB on Linux)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(name: str, size: int) -> dict:
  """Loads `name`, renders one example's latent at `size` twice; the peaks and seconds."""
  import gon_jax  # pylint: disable=import-outside-toplevel  # in the measured process only
  model = gon_jax.load(name)
  z = model.encode(model.examples[:1])
  before = peak_rss()
  seconds = []
  for _ in range(2):
    start = time.perf_counter()
    image = model.render(z, size)
    seconds.append(time.perf_counter() - start)
  assert image.shape == (1, size, size, model.config.model.channels), image.shape
  return {'peak': peak_rss(), 'before': before, 'first_s': seconds[0], 'second_s': seconds[1]}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--name', default='siren_mnist_shift')
  parser.add_argument('--size', type=int, default=4096)
  parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    print(json.dumps(measure(args.name, args.size)))
    return
  result = subprocess.run([sys.executable, __file__, '--child', '--name', args.name,
                           '--size', str(args.size)], check=True, capture_output=True,
                          text=True)
  numbers = json.loads(result.stdout.splitlines()[-1])
  print(f'render(z[:1], {args.size}) of {args.name}: peak RSS {numbers["peak"] / GIB:.2f} GiB '
        f'({numbers["before"] / GIB:.2f} GiB before rendering), '
        f'{numbers["first_s"]:.1f} s first call (compiling included), '
        f'{numbers["second_s"]:.1f} s second')


if __name__ == '__main__':
  main()
