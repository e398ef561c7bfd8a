"""Writes a trained workdir as a bundle that `gon_jax.load` reads, with its manifest entry.

  python -m gon_jax.export --workdir runs/conv_mnist --name conv_mnist \
      --command "python train.py --config configs/conv_mnist.py --workdir runs/conv_mnist"

Run eval.py on the workdir first: the entry records its metrics.json (the whole test split).
The bundle (`--out`, by default the package's gon_jax/pretrained/NAME) holds only what
inference needs (gon_jax.model.save_bundle): config.json, the variables, for a
non-variational model the Gaussian of the latents of the first `num_fit_examples` training
images (eval.py's, for `sample`), and the first `--examples` test images. The entry in
`manifest.json` next to it adds the command, data, steps, epochs (steps over an epoch's
steps), seed, parameter count, the metrics of the first `--subset` test images as
`Model.evaluate` gives them (tests reproduce them) and every file's size and sha256
(docs/pretrained.md), as the bundle's own record, sha256.json, holds them.
"""

import argparse
import json
import os
import pathlib
import sys

import jax
import numpy as np

from gon_jax import bundles, data, file_hashes, model as model_lib
from gon_jax.errors import DataError, run_reporting_errors


def export(workdir: str, name: str, command: str, out: str | None = None, subset: int = 500,
           subset_file: str | None = None, num_examples: int = 64) -> dict:
  """Writes `<out or PRETRAINED_DIR>/<name>/` from `workdir` and its entry in the manifest
  next to it; returns the entry.

  Args:
    workdir: a trained and evaluated workdir (checkpoints/, config.json, eval/metrics.json).
    name: the bundle's name, what `gon_jax.load(name)` takes.
    command: the train command that made the workdir, as run.
    out: the folder of bundles and manifest.json; by default the package's.
    subset: the entry's `test_subset` metrics are of the first `subset` test images.
    subset_file: if given, those images and labels are written there as .npz (uint8), and
      its sha256 recorded: what a test needs to reproduce the metrics without the data set.
    num_examples: test images stored in the bundle (`Model.examples`).

  Raises:
    FileNotFoundError: no checkpoint, or no eval/metrics.json (run eval.py first).
  """
  metrics_file = os.path.join(workdir, 'eval', 'metrics.json')
  if not os.path.isdir(workdir):  # never a pretrained model of the same name
    raise FileNotFoundError(f'no workdir {workdir}')
  model = model_lib.load(workdir)
  if not os.path.isfile(metrics_file):
    raise FileNotFoundError(f'{metrics_file} not found: run python eval.py --workdir {workdir} '
                            'first (the manifest records its metrics)')
  with open(metrics_file, encoding='utf-8') as f:
    test_metrics = json.load(f)
  config = model.config
  settings = model.settings
  train_images, _, test_images, test_labels = data.load_data(
      settings.data, settings.model['channels'], settings.classifier.num_classes)
  if not model.objective.variational:  # eval.py's Gaussian, for sample()
    model = model.with_gaussian(train_images[:config.num_fit_examples])
  labels = test_labels[:subset] if config.classifier.num_classes else None
  subset_metrics = model.evaluate(test_images[:subset], labels)
  root = pathlib.Path(out) if out else bundles.PRETRAINED_DIR
  bundle = model.config.copy_and_resolve_references()
  data_dir, bundle.data.dir = bundle.data.dir, ''  # this machine's folder means nothing elsewhere
  files = model_lib.save_bundle(model_lib.Model(bundle, model.variables, model.gaussian),
                                root / name, test_images[:num_examples])
  entry = {
      'command': command,
      'eval_command': f'python eval.py --workdir {workdir}',
      'data': {'source': config.data.source, 'name': config.data.name, 'dir': data_dir,
               'image_size': config.data.image_size, 'train_images': len(train_images),
               'test_images': len(test_images)},
      'model': config.model.name,
      'steps': test_metrics['step'],
      'epochs': round(test_metrics['step'] / data.steps_per_epoch(len(train_images),
                                                                  config.batch_size), 2),
      'seed': config.seed,
      'parameters': model.num_parameters,
      'test': test_metrics,
      'test_subset': {'images': f'the first {subset} test images of {config.data.name}',
                      'metrics': subset_metrics},
      'files': files,
      'jax': jax.__version__,
  }
  if subset_file:
    _write_subset(subset_file, np.asarray(test_images[:subset]), np.asarray(test_labels[:subset]))
    entry['test_subset'].update(file=os.path.basename(subset_file),
                                sha256=file_hashes.sha256(subset_file))
  manifest_file = root / bundles.MANIFEST.name
  entries = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
  entries[name] = entry
  manifest_file.write_text(json.dumps(entries, indent=2, sort_keys=True) + '\n')
  return entry


def _write_subset(path: str, images: np.ndarray, labels: np.ndarray) -> None:
  """Writes images and labels as .npz, unless `path` holds them already: models of one data
  set share the file, and a zip written again has other bytes (its time stamps), which
  would break the sha256 the other entries recorded."""
  if os.path.isfile(path):
    with np.load(path) as stored:
      if np.array_equal(stored['images'], images) and np.array_equal(stored['labels'], labels):
        return
      shape = list(stored['images'].shape)
    raise DataError(f'{path} holds other test images ({shape}, here {list(images.shape)}); '
                    'give another --subset_file')
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  np.savez_compressed(path, images=images, labels=labels)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog='python -m gon_jax.export', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--workdir', required=True, help='trained and evaluated workdir')
  parser.add_argument('--name', required=True, help='bundle name (gon_jax.load(NAME))')
  parser.add_argument('--command', required=True, help='the train command, as run')
  parser.add_argument('--out', default=None, help='folder of bundles (default: the package\'s)')
  parser.add_argument('--subset', type=int, default=500, help='test images of test_subset')
  parser.add_argument('--subset_file', default=None, help='.npz to write those images to')
  parser.add_argument('--examples', type=int, default=64, help='test images in the bundle')
  args = parser.parse_args(argv)
  entry = run_reporting_errors(export, args.workdir, args.name, args.command, args.out,
                               args.subset, args.subset_file, args.examples)
  sizes = ', '.join(f'{file} {info["bytes"]:,} B' for file, info in entry['files'].items())
  print(f'{args.name}: {sizes}; test {json.dumps(entry["test"], sort_keys=True)}',
        file=sys.stderr)


if __name__ == '__main__':
  main()
