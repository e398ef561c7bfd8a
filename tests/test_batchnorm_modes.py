"""gon_jax.experiments.batchnorm_modes: test losses with BatchNorm's batch statistics and with
its running averages, on a tiny untrained BatchNorm GON (nothing outside the repo)."""

import json

import numpy as np
import pytest

from gon_jax import model as model_lib
from gon_jax.config import to_settings
from gon_jax.errors import ConfigError, DataError
from gon_jax.experiments.batchnorm_modes import losses_in_both_modes, main
from gon_jax.state import setup

from testing_utils import random_images, tiny_config, write_blob_digits


def _model(norm: str = 'batch', data_dir: str = 'unused') -> model_lib.Model:
  config = tiny_config(data_dir, norm)
  state = setup(to_settings(config))[2]
  variables = {'params': state.params}
  if state.batch_stats:
    variables['batch_stats'] = state.batch_stats
  return model_lib.Model(config, variables)


def test_running_averages_are_evaluations_and_batch_statistics_depend_on_the_batch():
  model, images = _model(), random_images(32)
  images[:16] //= 4  # a dark half and a bright one: halves and the whole differ in statistics
  whole = losses_in_both_modes(model, images, batch_size=32)
  halves = losses_in_both_modes(model, images, batch_size=16)
  assert whole['num_images'] == halves['num_images'] == 32
  # Running averages: eval.py's figure, however the images are batched.
  expected = model.evaluate(images)['sse']
  np.testing.assert_allclose(whole['running_averages'], expected, rtol=1e-5)
  np.testing.assert_allclose(halves['running_averages'], expected, rtol=1e-5)
  # Batch statistics: an image's loss depends on the images normalised with it.
  assert abs(whole['batch_statistics'] - halves['batch_statistics']) > 1e-3 * expected
  assert abs(whole['batch_statistics'] - expected) > 1e-3 * expected


def test_a_last_partial_batch_is_left_out_of_both_modes():
  model, images = _model(), random_images(40)
  result = losses_in_both_modes(model, images, batch_size=16)
  assert result['num_images'] == 32
  np.testing.assert_allclose(result['running_averages'], model.evaluate(images[:32])['sse'],
                             rtol=1e-5)


def test_a_model_without_batchnorm_and_too_few_images_are_errors():
  with pytest.raises(ConfigError, match='no BatchNorm statistics'):
    losses_in_both_modes(_model('layer'), random_images(8), batch_size=8)
  with pytest.raises(DataError, match='do not fill one batch of 16'):
    losses_in_both_modes(_model(), random_images(8), batch_size=16)


def test_the_command_prints_and_writes_the_table(tmp_path, capsys):
  digits = write_blob_digits(tmp_path / 'digits')  # 64 test images
  bundle = tmp_path / 'bundle'
  model_lib.save_bundle(_model(data_dir=str(digits)), bundle, np.zeros((2, 16, 16, 1), np.uint8))
  out = tmp_path / 'modes.json'
  main([str(bundle), '--batch_size', '16', '--num_images', '40', '--out', str(out)])
  table = capsys.readouterr().out.splitlines()
  assert table[0] == '| run | batch statistics | running averages | test images |'
  (row,) = json.loads(out.read_text())['runs']
  assert row['run'] == str(bundle) and row['num_images'] == 32
  assert table[2] == (f"| {bundle} | {row['batch_statistics']:.2f} | "
                      f"{row['running_averages']:.2f} | 32 |")
  main([str(bundle), '--batch_size', '16', '--split', 'train', '--out', str(out)])
  scored = json.loads(out.read_text())
  assert scored['split'] == 'train' and scored['runs'][0]['num_images'] == 256
  assert capsys.readouterr().out.startswith('| run | batch statistics | running averages | train')
