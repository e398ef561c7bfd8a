"""Test losses of BatchNorm models in both of BatchNorm's modes.

  python -m gon_jax.experiments.batchnorm_modes --out modes.json runs/gon runs/ae

eval.py and `gon_jax.Model` normalise by the running averages that training kept, so an
image's reconstruction is its own. The other mode normalises each test batch by its own
statistics, as training does (PyTorch's train mode). The official GON.py has no evaluation
pass and never leaves train mode, so this is one reading of how the paper's test figures
were measured. The two modes can order models differently: docs/results.md finds they decide
whether the GON beats the autoencoder on CIFAR-10.

Prints a Markdown table (SSE per image in each mode, per run) and writes it as JSON to
`--out`. Batch mode scores consecutive batches of `--batch_size` images (training's, 64 by
default); the last, smaller batch is left out of both modes. `--split train` scores training
images instead: whether a model's test error above its training loss is overfitting or the
mode.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from gon_jax import data
from gon_jax import model as model_lib
from gon_jax.errors import ConfigError, DataError, run_reporting_errors


def losses_in_both_modes(model: model_lib.Model, images: np.ndarray,
                         batch_size: int) -> dict[str, float]:
  """Mean test loss of `model` on `images` in each of BatchNorm's modes.

  Args:
    model: a model with BatchNorm statistics (`variables['batch_stats']`).
    images: `[n, height, width, channels]`, uint8 or floats in [0, 1]; `n >= batch_size`.
    batch_size: images normalised together in batch mode.

  Returns:
    `{'batch_statistics': ..., 'running_averages': ..., 'num_images': ...}`: the mean per-image
    loss (SSE, or the negative ELBO of a variational model) of the first `num_images` images,
    `n` rounded down to whole batches, each batch scored by the training pass
    (`Objective.reconstruct(train=True)`, its statistic updates dropped) and by evaluation's.

  Raises:
    ConfigError: the model has no BatchNorm, so both modes are one.
    DataError: a batch size below 1, or fewer images than one batch.
  """
  if not model.variables.get('batch_stats'):
    raise ConfigError(f'this {model.config.model.name} model has no BatchNorm statistics '
                      f'(model.norm {model.config.model.get("norm", "none")!r}): its two modes '
                      'are the same')
  if batch_size < 1:
    raise DataError(f'batch_size {batch_size}: use 1 or more images a batch')
  num_images = len(images) // batch_size * batch_size
  if not num_images:
    raise DataError(f'{len(images)} images do not fill one batch of {batch_size}')
  reconstruct = jax.jit(lambda variables, batch, train: model.objective.reconstruct(
      variables, batch, train=train).losses, static_argnums=2)
  means = {}
  for mode, train in (('batch_statistics', True), ('running_averages', False)):
    losses = [reconstruct(model.variables, jnp.asarray(data.to_float(images[i:i + batch_size])),
                          train) for i in range(0, num_images, batch_size)]
    means[mode] = float(jnp.concatenate(losses).mean())
  return {**means, 'num_images': num_images}


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog='python -m gon_jax.experiments.batchnorm_modes',
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('workdirs', nargs='+', help='trained workdirs (or bundles) with BatchNorm')
  parser.add_argument('--batch_size', type=int, default=64, help='images a test batch')
  parser.add_argument('--num_images', type=int, default=-1, help='images (-1: the whole split)')
  parser.add_argument('--split', choices=('test', 'train'), default='test',
                      help='the split scored (train: is a gap overfitting, or the mode?)')
  parser.add_argument('--data_dir', default=None, help="the data set's folder, if not the run's")
  parser.add_argument('--out', default=None, help='JSON file for the table')
  args = parser.parse_args(argv)
  rows = run_reporting_errors(_measure, args.workdirs, args.batch_size, args.num_images,
                              args.data_dir, args.split)
  print(f'| run | batch statistics | running averages | {args.split} images |\n'
        '|---|---:|---:|---:|')
  for row in rows:
    print(f"| {row['run']} | {row['batch_statistics']:.2f} | {row['running_averages']:.2f} "
          f"| {row['num_images']:,} |")
  if args.out:
    with open(args.out, 'w', encoding='utf-8') as f:
      json.dump({'batch_size': args.batch_size, 'split': args.split, 'runs': rows}, f, indent=2)
      f.write('\n')


def _measure(workdirs: list[str], batch_size: int, num_images: int, data_dir: str | None,
             split: str) -> list[dict]:
  rows = []
  for workdir in workdirs:
    model = model_lib.load(workdir)
    settings = model.settings.data
    if data_dir:
      settings = dataclasses.replace(settings, dir=data_dir)
    images, _ = data.load_split(settings, split, settings.image_size, model.config.model.channels)
    if num_images >= 0:
      images = images[:num_images]
    rows.append({'run': workdir, **losses_in_both_modes(model, images, batch_size)})
    print(f'{workdir}: {json.dumps(rows[-1])}', file=sys.stderr)
  return rows


if __name__ == '__main__':
  main()
