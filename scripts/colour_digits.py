"""Colour images built offline: MNIST digits in colour, written in CIFAR-10's format.

  python scripts/colour_digits.py --out runs/colour_digits [--mnist_dir FOLDER]
  python train.py --config configs/siren_cifar10.py --workdir runs/siren_colour_digits \
      --config.data.dir=runs/colour_digits

Each 28x28 digit is centred on a 32x32 canvas; the background and the stroke
take two colours drawn per image (uniform in RGB, seeded), blended by the
digit's grey level. The result is cifar-10-batches-py/ (data_batch_1..5,
test_batch: pickled dicts with b'data' uint8 [n, 3072], the red, green then
blue planes, and b'labels'), which the cifar source reads like CIFAR-10 itself:
a colour data set for machines that cannot download one.
"""

import argparse
import pathlib
import pickle
import sys
import types

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gon_jax import data  # pylint: disable=wrong-import-position


def colour(digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """float [n, 28, 28, 1] in [0, 1] -> uint8 [n, 32, 32, 3]: two random colours per image."""
  grey = np.pad(digits, ((0, 0), (2, 2), (2, 2), (0, 0)))
  background, stroke = rng.uniform(0, 1, (2, len(digits), 1, 1, 3))
  return np.round(255 * (background + grey * (stroke - background))).astype(np.uint8)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--mnist_dir', default='',
                      help="folder with MNIST's IDX files (default: the download cache, "
                           "where MNIST downloads by itself)")
  parser.add_argument('--out', required=True, help='folder to write cifar-10-batches-py/ into')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()
  rng = np.random.default_rng(args.seed)
  folder = pathlib.Path(args.out) / 'cifar-10-batches-py'
  folder.mkdir(parents=True, exist_ok=True)
  source = types.SimpleNamespace(source='idx', name='mnist', dir=args.mnist_dir, download=True,
                                 mirror='')
  for split, names in (('train', [f'data_batch_{i}' for i in range(1, 6)]),
                       ('test', ['test_batch'])):
    digits, labels = data.load_split(source, split, None)
    images = colour(data.to_float(digits), rng)
    for name, rows in zip(names, np.array_split(np.arange(len(images)), len(names))):
      batch = {b'data': images[rows].transpose(0, 3, 1, 2).reshape(len(rows), -1),
               b'labels': labels[rows].tolist(), b'batch_label': name.encode()}
      (folder / name).write_bytes(pickle.dumps(batch, protocol=4))
    print(f'{split}: {len(images)} images -> {folder}')


if __name__ == '__main__':
  main()
