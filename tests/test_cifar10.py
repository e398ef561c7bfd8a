"""The CIFAR-10 configs (configs/*_cifar10.py) on a small folder of JPEGs in CIFAR-10's
ImageFolder layout, written by the test: train/<class>/*.jpg and test/<class>/*.jpg.

Each config trains two steps at its own 32x32x3 model (batch shrunk) and evaluates the test
split: conv_cifar10 by train.py and eval.py with the README's data option, the others
in-process; siren_cifar10 renders at 4x. Those compile a 32x32x3 model each (10-20 s on a
2-core CPU): the full suite's. The quick tier checks the configs and that the grids' first
test images cover every class.
"""

from __future__ import annotations

import importlib
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from gon_jax import data, evaluate
from gon_jax.train import train_and_evaluate

from testing_utils import run_script

CLASSES = ('airplane', 'automobile', 'bird')  # sorted: labels 0, 1, 2
NUM_TRAIN, NUM_TEST = 6, 4  # images per class
CONFIGS = ('conv_cifar10', 'ae_cifar10', 'tied_ae_cifar10', 'glo_cifar10', 'vgon_cifar10',
           'vae_cifar10', 'siren_cifar10')


@pytest.fixture(scope='module')
def cifar_folder(tmp_path_factory) -> pathlib.Path:
  """CIFAR-10's layout with 3 classes: 6 train and 4 test 32x32 JPEGs each. An image of
  class k is a square of a random colour at a random place on a ground of class k's colour."""
  root = tmp_path_factory.mktemp('cifar10_jpeg')
  rng = np.random.default_rng(0)
  grounds = np.array([(40, 60, 200), (200, 40, 40), (40, 160, 40)], np.uint8)
  for split, count in (('train', NUM_TRAIN), ('test', NUM_TEST)):
    for label, name in enumerate(CLASSES):
      (root / split / name).mkdir(parents=True)
      for i in range(count):
        image = np.empty((32, 32, 3), np.uint8)
        image[:] = grounds[label]
        r, c = rng.integers(0, 20, 2)
        image[r:r + 12, c:c + 12] = rng.integers(0, 256, 3)
        Image.fromarray(image).save(root / split / name / f'{i:04d}.jpg', quality=90)
  return root


def folder_config(name: str, folder: pathlib.Path):
  """The packaged config `name` on `folder` (the README's --config.data.source=folder
  --config.data.dir=DIR), its model as it is, two training steps on batches of 6."""
  config = importlib.import_module(f'gon_jax.configs.{name}').get_config()
  config.data.source, config.data.dir = 'folder', str(folder)
  config.batch_size = 6
  config.num_steps = config.eval_every = config.checkpoint_every = 2
  config.log_every = 1
  config.eval_batch_size = 8
  config.grid_size = 2
  config.elbo_samples = 2
  if config.performance.scan_chunk:
    config.performance.scan_chunk = 3  # Each of the 2 test devices' 3 examples at once.
  return config


def test_every_cifar10_config_is_32x32_colour_from_the_python_archive():
  for name in CONFIGS:
    config = importlib.import_module(f'gon_jax.configs.{name}').get_config()
    assert (config.data.source, config.data.name, config.data.image_size,
            config.model.channels) == ('cifar', 'cifar10', 32, 3), name
  assert importlib.import_module('gon_jax.configs.siren_cifar10').get_config().superres_size == 128


def test_the_first_test_images_cover_every_class(cifar_folder):
  """The grids show the first grid_size**2 test images: one of each class in turn, not all of
  the first class (labels keep ImageFolder's numbering)."""
  config = folder_config('conv_cifar10', cifar_folder)
  _, train_labels, test_images, test_labels = data.load_data(
      config.data, config.model.channels, config.classifier.num_classes)
  assert test_labels.tolist() == [0, 1, 2] * NUM_TEST
  assert train_labels.tolist() == [0, 1, 2] * NUM_TRAIN
  assert test_images.shape == (3 * NUM_TEST, 32, 32, 3)
  # Image i of the split is file i // 3 of class i % 3, as decoded (32x32: not resized).
  for i, image in enumerate(test_images):
    with Image.open(cifar_folder / 'test' / CLASSES[i % 3] / f'{i // 3:04d}.jpg') as expected:
      np.testing.assert_array_equal(image, np.asarray(expected.convert('RGB')))


def trained_lines(workdir: pathlib.Path) -> list[dict]:
  return [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]


def assert_trained_and_evaluated(workdir: pathlib.Path) -> None:
  """Two steps logged, then the test split evaluated at step 2 with finite metrics."""
  lines = trained_lines(workdir)
  assert [line['step'] for line in lines if 'train/loss' in line] == [1, 2]
  (tested,) = [line for line in lines if any(key.startswith('test/') for key in line)]
  assert tested['step'] == 2
  assert all(np.isfinite(value) for key, value in tested.items() if key.startswith('test/'))


@pytest.mark.slow  # compiling a 32x32x3 GON step takes 10-20 s on 2 CPU cores
@pytest.mark.parametrize('name', [name for name in CONFIGS if name != 'conv_cifar10'])
def test_every_cifar10_config_trains_on_a_jpeg_folder(name, cifar_folder, tmp_path):
  """Two steps and the evaluation at the end of training, at the config's own model
  (conv_cifar10's: by its commands, below)."""
  train_and_evaluate(folder_config(name, cifar_folder), str(tmp_path))
  assert_trained_and_evaluated(tmp_path)


@pytest.mark.slow
def test_siren_cifar10_renders_its_test_images_at_4x(cifar_folder, tmp_path):
  config = folder_config('siren_cifar10', cifar_folder)
  config.model.widths = (32, 32)  # The render at 128x128 is what is tested, not the width.
  train_and_evaluate(config, str(tmp_path))
  evaluate.evaluate_checkpoint(config, str(tmp_path))
  with Image.open(tmp_path / 'eval' / 'superres.png') as grid:
    width, height = grid.size
  # Three panels of 2x2 images rendered at 128x128 (titles and padding besides).
  assert width >= 3 * 2 * 128 and height >= 2 * 128


@pytest.mark.slow
def test_train_and_eval_commands_on_the_folder(cifar_folder, tmp_path):
  """conv_cifar10's docstring commands: train.py with --config.data.source=folder
  --config.data.dir=DIR (two steps, the test split evaluated at step 2), then eval.py from
  the workdir's recorded config, its grids in colour."""
  flags = ['--config.batch_size=6', '--config.num_steps=2', '--config.eval_every=2',
           '--config.checkpoint_every=2', '--config.log_every=1', '--config.eval_batch_size=8',
           '--config.grid_size=2']
  trained = run_script('train.py', tmp_path, '--config.data.source=folder',
                       f'--config.data.dir={cifar_folder}', *flags,
                       config='configs/conv_cifar10.py', tiny_flags=[])
  assert trained.returncode == 0, trained.stderr[-3000:]
  assert 'trained 2 steps' in trained.stderr, trained.stderr[-2000:]
  assert_trained_and_evaluated(tmp_path)
  (tested,) = [line for line in trained_lines(tmp_path) if 'test/sse' in line]
  assert 0 < tested['test/sse'] < 3 * 32 * 32  # Per image: below every pixel wrong by 1.
  evaluated = run_script('eval.py', tmp_path, config=None, tiny_flags=[])
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  metrics = json.loads(evaluated.stdout.strip().splitlines()[-1])
  assert metrics['step'] == 2 and metrics['num_images'] == 3 * NUM_TEST
  assert 0 < metrics['sse'] < 3 * 32 * 32
  for grid in ('reconstructions', 'interpolation', 'samples'):
    with Image.open(tmp_path / 'eval' / f'{grid}.png') as image:
      assert image.mode in ('RGB', 'RGBA'), grid  # in colour
