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


def _corrupt_idx(folder):
  images = {split: np.zeros((4, 28, 28), np.uint8) for split in ('train', 'test')}
  labels = {split: np.zeros(4, np.uint8) for split in ('train', 'test')}
  write_idx_folder(folder, images, labels, gz=False)
  raw = (folder / 'train-images-idx3-ubyte').read_bytes()
  (folder / 'train-images-idx3-ubyte').write_bytes(b'\x00\x00\x08\x01' + raw[4:])
  return folder


@pytest.mark.parametrize('case', ['missing_folder', 'corrupt_idx', 'unknown_dataset',
                                  'unknown_model', 'indivisible_batch', 'unknown_option'])
def test_bad_input_is_one_line_and_leaves_the_workdir_alone(case, trained, blob_dir, tmp_path):
  flags = {
      'missing_folder': [f'--config.data.dir={tmp_path}/nowhere'],
      'corrupt_idx': [f'--config.data.dir={_corrupt_idx(tmp_path / "bad")}'],
      'unknown_dataset': ['--config.data.source=tfds', '--config.data.name=mnistt'],
      'unknown_model': [f'--config.data.dir={blob_dir}', '--config.model.name=resnet'],
      'indivisible_batch': [f'--config.data.dir={blob_dir}', '--config.batch_size=7'],
      'unknown_option': [f'--config.data.dir={blob_dir}', '--config.gon.inner_reduction=median'],
  }[case]
  expected = {'missing_folder': 'nowhere', 'corrupt_idx': 'magic', 'unknown_dataset': 'mnistt',
              'unknown_model': 'resnet', 'indivisible_batch': 'does not divide',
              'unknown_option': 'median'}[case]
  before = snapshot(trained)
  result = run_script('train.py', trained, *flags, '--config.num_steps=6', devices=2)
  assert result.returncode != 0
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and expected in last, result.stderr[-2000:]
  assert 'Traceback' not in result.stderr
  assert snapshot(trained) == before
