"""Super-resolution, measured: the aligned grid, the baselines, the command's results."""

import json
import os
import subprocess
import sys

import chex
import numpy as np
import pytest

import testing_utils

from gon_jax.coordinates import grid, upsampling_grid
from gon_jax.errors import ConfigError
from gon_jax.evaluate import image_metrics
from gon_jax.experiments import superres
from gon_jax import data

from gon_jax.configs import conv_mnist, siren_mnist_tiny


def test_the_upsampling_grid_is_centred_on_the_small_pixels():
  chex.assert_trees_all_close(upsampling_grid(5, 1), grid(5))
  fine = upsampling_grid(4, 2).reshape(8, 8, 2)
  blocks = fine.reshape(4, 2, 4, 2, 2).mean(axis=(1, 3))  # each small pixel's 2x2 block
  chex.assert_trees_all_close(blocks.reshape(-1, 2), grid(4), atol=1e-6)
  np.testing.assert_allclose(fine[0, 0], [-1 - 1 / 6, -1 - 1 / 6], rtol=1e-6)  # a quarter pixel out
  with pytest.raises(ValueError, match='size >= 2'):
    upsampling_grid(1, 2)


def _config(blob_dir):
  config = siren_mnist_tiny.get_config()
  config.data.update(dir=str(blob_dir), image_size=12)
  config.model.update(latent_dim=4, widths=(16, 16))
  config.update(batch_size=8, num_steps=4, eval_every=4, checkpoint_every=4, log_every=2,
                eval_batch_size=32, grid_size=2, train_eval_examples=32)
  config.performance.scan_chunk = 4
  return config


@pytest.mark.slow
def test_superres_trains_small_and_scores_against_the_full_images(blob_dir, tmp_path):
  config = _config(blob_dir)
  workdir = str(tmp_path / 'sr')
  results = superres.measure(config, workdir, 2)
  assert results['step'] == 4 and results['factor'] == 2
  truth = data.to_float(data.load_split(config.data, 'test', 12)[0])
  inputs = data.to_float(data.load_split(config.data, 'test', 6)[0])
  # Nearest-neighbour upsampling by 2 repeats each pixel in a 2x2 block.
  nearest = np.repeat(np.repeat(inputs, 2, axis=1), 2, axis=2)
  np.testing.assert_allclose(results['nearest']['psnr'], image_metrics(truth, nearest)['psnr'],
                             rtol=1e-5)
  for name in ('gon', 'bicubic', 'nearest', 'gon_at_input_size'):
    assert np.isfinite(results[name]['psnr']) and results[name]['num_images'] == len(truth)
  assert results['bicubic']['psnr'] > results['nearest']['psnr']  # smooth blobs
  saved = json.load(open(os.path.join(workdir, 'superres', 'metrics.json'), encoding='utf-8'))
  assert saved['gon'] == results['gon']
  assert os.path.getsize(os.path.join(workdir, 'superres', 'superres.png')) > 500
  again = superres.measure(config, workdir, 2)  # trained already: read back, same latents
  assert again['gon'] == results['gon']


def test_superres_errors_are_one_line(blob_dir):
  with pytest.raises(ConfigError, match="needs an implicit model .*not 'conv'"):
    superres.downsampled_config(conv_mnist.get_config(), 2)
  with pytest.raises(ConfigError, match='--factor 5 must be at least 2 and divide'):
    superres.downsampled_config(_config(blob_dir), 5)
  result = subprocess.run(
      [sys.executable, '-m', 'gon_jax.experiments.superres', '--config',
       'configs/siren_mnist_tiny.py', '--workdir', str(blob_dir / 'unused'), '--factor', '3'],
      capture_output=True, text=True, cwd=testing_utils.REPO, timeout=120)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      'error: --factor 3 must be at least 2 and divide data.image_size 28 into at least 2 pixels']
  assert not (blob_dir / 'unused').exists()
