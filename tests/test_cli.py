"""train.py and eval.py as a user runs them: end to end, and on bad input."""

import json
import os

import numpy as np
import pytest

from PIL import Image

from testing_utils import TINY_SIREN_FLAGS, run_script, write_idx_folder


def snapshot(folder):
  return {os.path.join(root, name): os.stat(os.path.join(root, name)).st_mtime_ns
          for root, _, files in os.walk(folder) for name in files}


@pytest.fixture(scope='module')
def trained(blob_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp('run')
  result = run_script('train.py', workdir, f'--config.data.dir={blob_dir}')
  assert result.returncode == 0, result.stderr[-2000:]
  return workdir


def test_train_then_eval(trained, blob_dir):
  assert sorted(os.listdir(trained / 'checkpoints')) == ['3']
  result = run_script('eval.py', trained, f'--config.data.dir={blob_dir}')
  assert result.returncode == 0, result.stderr[-2000:]
  printed = json.loads(result.stdout.strip().splitlines()[-1])
  assert printed == json.loads((trained / 'eval' / 'metrics.json').read_text())
  assert printed['step'] == 3 and printed['num_images'] == 64
  assert 0 < printed['sse'] < 256 and printed['psnr'] > 0
  assert (trained / 'eval' / 'reconstructions.png').is_file()


def test_implicit_gon_eval_writes_every_grid(blob_dir, tmp_path):
  siren = dict(config='configs/siren_mnist_tiny.py', tiny_flags=TINY_SIREN_FLAGS)
  for script in ('train.py', 'eval.py'):
    result = run_script(script, tmp_path, f'--config.data.dir={blob_dir}', **siren)
    assert result.returncode == 0, result.stderr[-2000:]
  metrics = json.loads(result.stdout.strip().splitlines()[-1])
  assert metrics['num_images'] == 64 and metrics['psnr'] > 0
  sizes = {name: Image.open(tmp_path / 'eval' / f'{name}.png').size
           for name in ('reconstructions', 'interpolation', 'samples', 'superres')}
  # 4 test images per panel at 20x20: three panels of 2x2 tiles and two gaps.
  assert sizes['superres'] == (3 * 2 * 20 + 2 * 2, 2 * 20)
  assert sizes['interpolation'] == (2 * 8, 2 * 8)


def _idx_folder(folder, damage):
  """A small IDX folder, damaged: 'magic', 'truncated' or 'count' (labels and images differ)."""
  images = {split: np.zeros((4, 28, 28), np.uint8) for split in ('train', 'test')}
  labels = {split: np.zeros(4, np.uint8) for split in ('train', 'test')}
  if damage == 'count':
    labels['train'] = np.zeros(3, np.uint8)
  write_idx_folder(folder, images, labels, gz=False)
  path = folder / 'train-images-idx3-ubyte'
  raw = path.read_bytes()
  if damage == 'magic':
    path.write_bytes(b'\x00\x00\x08\x01' + raw[4:])
  if damage == 'truncated':
    path.write_bytes(raw[:-100])
  return folder


BAD_INPUT = {  # case: (flags, text the error line must contain)
    'missing_folder': (['--config.data.dir={tmp}/nowhere'], 'nowhere'),
    'empty_folder': (['--config.data.dir={empty}'], 'is empty'),
    'wrong_magic': (['--config.data.dir={magic}'], 'magic number'),
    'truncated_idx': (['--config.data.dir={truncated}'], 'truncated'),
    'images_labels_differ': (['--config.data.dir={count}'], '4 images but 3 labels'),
    'unknown_dataset': (['--config.data.source=tfds', '--config.data.name=mnistt'],
                        'unknown data set \'mnistt\'; use one of celeb_a, cifar10'),
    'unknown_model': (['--config.model.name=resnet'], "unknown model 'resnet'; valid: conv"),
    'unknown_activation': (['--config.model.activation=gelu'], 'valid: elu, relu'),
    'unknown_option': (['--config.gon.inner_reduction=median'], 'valid: sum, mean, official'),
    'unknown_key': (['--config.model.widht=3'],
                    "unknown config key 'widht' in --config.model.widht; valid there: "),
    'wrong_type': (['--config.batch_size=eight'], '--config.batch_size=eight'),
    'bad_image_size': (['--config.data.image_size=28'], 'image size 28'),
    'indivisible_batch': (['--config.batch_size=7'], 'does not divide'),
    'other_model_checkpoint': (['--config.model.latent_dim=6'], 'of another model'),
}


@pytest.mark.parametrize('case', list(BAD_INPUT))
def test_bad_input_is_one_line_and_leaves_the_workdir_alone(case, trained, blob_dir, tmp_path):
  flags, expected = BAD_INPUT[case]
  folders = {'tmp': tmp_path, 'empty': tmp_path / 'empty'}
  (tmp_path / 'empty').mkdir()
  for damage in ('magic', 'truncated', 'count'):
    if '{' + damage + '}' in flags[0]:
      folders[damage] = _idx_folder(tmp_path / damage, damage)
  flags = [f'--config.data.dir={blob_dir}'] + [flag.format(**folders) for flag in flags]
  before = snapshot(trained)
  result = run_script('train.py', trained, *flags, '--config.num_steps=6', devices=2)
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ') and expected in lines[0], result.stderr
  assert snapshot(trained) == before
