"""Sample quality as a number: the Fréchet distance between a model's samples and the test
images of its data set, in the feature space of a small classifier trained on that data set
(gon_jax.feature_classifier), beside the floor, the same distance between the data set's own
training and test images (docs/sample_quality.md).

  python -m gon_jax.sample_quality --workdir runs/vae_mnist
  python -m gon_jax.sample_quality --model vgon_mnist --data_dir ../shared/data/mnist
  python -m gon_jax.sample_quality --dataset cifar10 --data_source folder --data_dir cifar10

prints a table (the samples' distance, the floor, the classifier's test accuracy, N) and
writes it as JSON: `WORKDIR/sample_quality.json` for a workdir, else
`sample_quality_<name>.json` in the current folder, or `--out`. Samples are the model's own
(gon_jax.Model.sample): a variational model decodes its prior N(0, I), another model draws
from a Gaussian fitted to the latents of its first `num_fit_examples` training images (App.
D), as eval.py's samples.png. `--dataset` measures the floor and trains the classifier
without a model.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import time

import ml_collections
import numpy as np

from gon_jax import data, evaluate, feature_classifier
from gon_jax import model as model_lib
from gon_jax.config import base_config, to_settings
from gon_jax.errors import ConfigError, DataError, run_reporting_errors

# The data sets of --dataset, with their channels; a model's data set may be any with classes.
SUPPORTED = {'mnist': 1, 'fashion_mnist': 1, 'cifar10': 3}
DEFAULT_NUM_SAMPLES = 10_000
FILENAME = 'sample_quality.json'


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean `[d]` and covariance `[d, d]` (float64, unbiased) of features `[n, d]`, n >= 2."""
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or len(features) < 2:
    raise DataError(f'features must be [n >= 2, d], got {list(features.shape)}')
  return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
  """The symmetric square root of a symmetric positive semi-definite matrix `[d, d]`, by its
  eigendecomposition; eigenvalues rounded below 0 are taken as 0."""
  values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
  return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mean1: np.ndarray, cov1: np.ndarray, mean2: np.ndarray,
                     cov2: np.ndarray) -> float:
  """The Fréchet distance between N(mean1, cov1) and N(mean2, cov2):

    |mean1 - mean2|^2 + tr(cov1) + tr(cov2) - 2 tr((cov1^1/2 cov2 cov1^1/2)^1/2).

  The trace term is tr((cov1 cov2)^1/2) written as the square root of a symmetric positive
  semi-definite matrix: its eigenvalues are real and clipped at 0, so no complex parts or
  NaN appear for singular covariances (features that are 0 for every image), as they can for
  a general matrix square root of the non-symmetric product.

  Args:
    mean1, mean2: `[d]`.
    cov1, cov2: `[d, d]`, symmetric positive semi-definite.

  Returns:
    The distance, a float >= 0 (up to rounding: tiny negative results are returned as 0).
  """
  mean1, mean2 = np.asarray(mean1, np.float64), np.asarray(mean2, np.float64)
  cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
  d = mean1.shape[0]
  for name, value, shape in (('mean2', mean2, (d,)), ('cov1', cov1, (d, d)),
                             ('cov2', cov2, (d, d))):
    if value.shape != shape:
      raise DataError(f'{name} must be {list(shape)} for means of {d}, got {list(value.shape)}')
  root1 = _psd_sqrt(cov1)
  middle = root1 @ cov2 @ root1
  trace_root = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)))
  distance = (np.sum((mean1 - mean2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * trace_root)
  return float(max(distance, 0.0))


def features_distance(features1: np.ndarray, features2: np.ndarray) -> float:
  """The Fréchet distance between the Gaussians of two sets of features `[n, d]`, `[m, d]`."""
  return frechet_distance(*gaussian_statistics(features1), *gaussian_statistics(features2))


def subset(num_rows: int, n: int, seed: int) -> np.ndarray:
  """`n` row indices of `num_rows`, sorted: all of them when n >= num_rows, else a random
  choice without replacement from np.random.default_rng(seed)."""
  if n >= num_rows:
    return np.arange(num_rows)
  return np.sort(np.random.default_rng(seed).choice(num_rows, n, replace=False))


def dataset_config(name: str, source: str, data_dir: str, image_size: int,
                   channels: int) -> ml_collections.ConfigDict:
  """A config whose `data` and `model.channels` are these (the rest base_config's): what
  gon_jax.data.load_data reads when no model is measured."""
  config = base_config()
  config.data.update(name=name, source=source, dir=data_dir, image_size=image_size)
  config.model.channels = channels
  return config


def check_supported(config: ml_collections.ConfigDict) -> None:
  """Raises DataError, before any data is read, for a data set known to have no classes to
  train the feature classifier on (CelebA); any other data set with classes is measured
  (feature_classifier.train refuses one whose labels are all 0)."""
  if config.data.source == 'celeba' or config.data.name == 'celeb_a':
    raise DataError(f'no feature classifier for data set {config.data.name!r}: CelebA has no '
                    'classes to train one on; sample quality is measured on data sets with '
                    f'classes ({", ".join(SUPPORTED)}, a folder of class folders)')


def measure(config: ml_collections.ConfigDict, model: model_lib.Model | None = None, *,
            num_samples: int = DEFAULT_NUM_SAMPLES, seed: int = 0, classifier_seed: int = 0,
            classifier_epochs: int = feature_classifier.DEFAULT_EPOCHS,
            progress: bool = True) -> dict:
  """The sample quality of `model` (or only the floor, for None) on the data of `config`.

  N = min(num_samples, the test images): N samples (`model.sample(N, seed)`), N test images
  and N training images (random subsets, seed `seed`, when there are more). Their features
  are the classifier's (feature_classifier.trained: cached, or trained now).

  Args:
    config: the model's config (its `data`, `model.channels`), with any data overrides.
    model: the model to sample; None measures the floor alone.
    num_samples: N before the cap.
    seed: the samples' key and the subsets' seed.
    classifier_seed, classifier_epochs: the classifier's seed and training length (each
      setting is a classifier of its own, cached apart).
    progress: progress bars on stderr.

  Returns:
    `{'fd_samples' (absent without a model), 'fd_floor_train_vs_test', 'num_samples',
    'classifier': {'test_accuracy', 'epochs', 'path', ...}, 'data': {...}, 'seed', ...}`.

  Raises:
    DataError: a data set without classes (CelebA), data that cannot be read, or images of
      another shape than the model's.
  """
  check_supported(config)
  if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
    raise ConfigError(f'num_samples {num_samples!r}: give an integer of at least 2')
  settings = to_settings(config)
  train_images, train_labels, test_images, test_labels = data.load_data(
      settings.data, settings.model['channels'], settings.classifier.num_classes)
  if model is not None and tuple(test_images.shape[1:]) != model.image_shape:
    raise DataError(f'the data set\'s images are {list(test_images.shape[1:])} but the model '
                    f'makes {list(model.image_shape)}: give the data it was trained on')
  classifier = feature_classifier.trained(
      (train_images, train_labels, test_images, test_labels), config.data.name,
      config.data.source, seed=classifier_seed, epochs=classifier_epochs, progress=progress)
  n = min(num_samples, len(test_images))
  describe = lambda what: f'features of {what}' if progress else None
  test_features = classifier.features(test_images[subset(len(test_images), n, seed)],
                                      describe('test images'))
  train_features = classifier.features(train_images[subset(len(train_images), n, seed)],
                                       describe('training images'))
  result = {
      'fd_floor_train_vs_test': features_distance(train_features, test_features),
      'num_samples': n, 'seed': seed,
      'data': {'name': config.data.name, 'source': config.data.source, 'dir': config.data.dir,
               'image_shape': list(test_images.shape[1:]), 'train_images': len(train_images),
               'test_images': len(test_images)},
      'classifier': {key: classifier.info[key] for key in
                     ('test_accuracy', 'seed', 'epochs', 'steps', 'num_features',
                      'train_seconds')},
  }
  result['classifier']['path'] = classifier.path
  if model is not None:
    start = time.perf_counter()
    variational = model.objective.variational
    if model.gaussian is None and not variational:  # a workdir: fitted as eval.py fits it
      model = model.with_gaussian(train_images[:model.config.num_fit_examples])
    samples = model.sample(n, seed)
    result.update(
        fd_samples=features_distance(classifier.features(samples, describe('samples')),
                                     test_features),
        model=model.source, model_name=model.config.model.name,
        samples='prior N(0, I)' if variational else
        f'Gaussian fitted to the latents of {model.config.num_fit_examples} training images',
        sample_seconds=round(time.perf_counter() - start, 1))
  return result


def table(result: dict) -> str:
  """The result as a few aligned lines for the terminal."""
  rows = []
  if 'fd_samples' in result:
    rows.append(('FD samples vs test', f"{result['fd_samples']:.3f}"))
  rows += [('FD floor train vs test', f"{result['fd_floor_train_vs_test']:.3f}"),
           ('classifier test accuracy', f"{100 * result['classifier']['test_accuracy']:.2f}%"),
           ('N', f"{result['num_samples']:,}")]
  what = result.get('model', 'no model (floor only)')
  head = f"sample quality: {what} on {result['data']['name']} ({result['data']['source']})"
  width = max(len(name) for name, _ in rows)
  return '\n'.join([head] + [f'  {name:<{width}}  {value}' for name, value in rows])


def _load_model(workdir: str | None, name: str | None) -> model_lib.Model:
  """gon_jax.load of `--workdir` (a folder with a checkpoint) or `--model` (a pretrained
  name, a bundle folder or a workdir)."""
  if workdir is not None and not os.path.isdir(os.path.expanduser(workdir)):
    raise FileNotFoundError(f'--workdir {workdir} is not a folder (a pretrained model is '
                            '--model NAME)')
  return model_lib.load(workdir if workdir is not None else name)


def run(args: argparse.Namespace) -> str:
  """The command's work; returns what to print (the table and the JSON file written)."""
  chosen = [flag for flag in ('workdir', 'model', 'dataset') if getattr(args, flag)]
  if len(chosen) != 1:
    raise ConfigError('give one of --workdir, --model and --dataset')
  for flag, least in (('classifier_epochs', 1), ('image_size', 4)):
    if getattr(args, flag) < least:
      raise ConfigError(f'--{flag} {getattr(args, flag)}: give at least {least}')
  model = None
  if args.dataset:
    if args.dataset not in SUPPORTED:
      raise DataError(f'--dataset {args.dataset!r}: give one of {", ".join(SUPPORTED)} (or '
                      'measure a model trained on another data set with classes)')
    source = args.data_source or ('cifar' if args.dataset == 'cifar10' else 'idx')
    config = dataset_config(args.dataset, source, args.data_dir or '', args.image_size,
                            SUPPORTED[args.dataset])
    name = args.dataset
  else:
    model = _load_model(args.workdir, args.model)
    config = ml_collections.ConfigDict(model.config.to_dict())
    if args.data_dir:
      config.data.dir = args.data_dir
    if args.data_source:
      config.data.source = args.data_source
    name = pathlib.Path(os.path.normpath(os.path.expanduser(args.workdir or args.model))).name
  out = args.out or (os.path.join(args.workdir, FILENAME) if args.workdir
                     else f'sample_quality_{name}.json')
  result = measure(config, model, num_samples=args.num_samples, seed=args.seed,
                   classifier_seed=args.classifier_seed,
                   classifier_epochs=args.classifier_epochs)
  evaluate.write_json(os.path.abspath(out), result, source=result.get('model', name))
  return f'{table(result)}\nwrote {out}'


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog='python -m gon_jax.sample_quality', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--workdir', help='a workdir of train.py (its latest checkpoint)')
  parser.add_argument('--model', help='a pretrained model (vgon_mnist, ...), a bundle folder '
                      'or a workdir')
  parser.add_argument('--dataset', help=f'no model: the floor and the classifier of a data set '
                      f'({", ".join(SUPPORTED)})')
  parser.add_argument('--data_dir', help="the data's folder (config.data.dir), e.g. to read it "
                      'offline; default the config\'s')
  parser.add_argument('--data_source', help="the data's source (config.data.source: idx, "
                      "cifar, folder, ...); default the config's (--dataset: idx, cifar10: "
                      'cifar)')
  parser.add_argument('--image_size', type=int, default=32, help='--dataset only: the size')
  parser.add_argument('--num_samples', type=int, default=DEFAULT_NUM_SAMPLES,
                      help='N: samples, test and training images (at most the test images)')
  parser.add_argument('--seed', type=int, default=0,
                      help="the samples' key and the seed of the N training and test images")
  parser.add_argument('--classifier_seed', type=int, default=0,
                      help="the feature classifier's seed (each seed cached apart)")
  parser.add_argument('--classifier_epochs', type=int,
                      default=feature_classifier.DEFAULT_EPOCHS,
                      help="the feature classifier's epochs (each setting cached apart)")
  parser.add_argument('--out', help=f'the JSON file; default WORKDIR/{FILENAME}, else '
                      'sample_quality_<name>.json here')
  print(run_reporting_errors(run, parser.parse_args(argv)))


if __name__ == '__main__':
  main()
