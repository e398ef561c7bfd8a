"""eval.py as a newcomer meets it: progress, no noise, an early no-checkpoint
message, titled grids also in TensorBoard; and the titled grids themselves."""

import logging
import os

import numpy as np
import pytest
from PIL import Image

from gon_jax import images
from gon_jax.evaluate import evaluate_checkpoint
from gon_jax.errors import ConfigError

from test_train import read_summaries
from testing_utils import REPO, run_script


def test_eval_without_checkpoint_says_so_before_loading_anything(tmp_path):
  workdir = tmp_path / 'never_trained'
  # A data folder that does not exist: the checkpoint is looked for first.
  result = run_script('eval.py', workdir, '--config.data.dir=/nonexistent/data')
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f'error: no checkpoint in {workdir}/checkpoints; train first: train.py with the same '
      '--config and --workdir'], result.stderr
  assert not workdir.exists()


def test_eval_shows_progress_without_orbax_warnings_and_logs_titled_grids(tiny_run, capsys,
                                                                           caplog):
  workdir, config = tiny_run
  caplog.set_level(logging.INFO)
  metrics = evaluate_checkpoint(config, str(workdir))
  assert metrics['step'] == 2 and metrics['num_images'] == 64
  stderr = capsys.readouterr().err
  assert 'encoding test images: 100%' in stderr and '64/64' in stderr, stderr
  # Orbax warned (absl) that a read-only checkpoint manager is read-only, three times.
  assert not [r.getMessage() for r in caplog.records
              if r.levelno >= logging.WARNING and 'orbax' in r.pathname]

  summaries = read_summaries(workdir / 'tensorboard')
  for name in ('reconstructions', 'interpolation', 'samples'):
    assert (2, f'eval/{name}', 'image') in summaries
  assert (2, 'test/reconstructions', 'image') in summaries  # training's
  assert {(2, f'eval/{name}', 'simple_value') for name in ('sse', 'psnr')} <= set(summaries)
  assert not [tag for _, tag, _ in summaries if 'num_images' in tag]

  # 2x2 tiles of 16x16 under titles wider than the tiles.
  grid = np.asarray(Image.open(workdir / 'eval' / 'reconstructions.png'))
  width = images.title_width('test images') + 2 + images.title_width('reconstructions')
  assert grid.shape == (images.TITLE_HEIGHT + 32, width)
  assert grid[:images.TITLE_HEIGHT].min() == 0  # the titles' black pixels
  assert Image.open(workdir / 'eval' / 'interpolation.png').size == (
      images.title_width('interpolation (slerp)'), images.TITLE_HEIGHT + 32)


def _snapshot(folder) -> dict[str, int]:
  return {os.path.join(root, name): os.stat(os.path.join(root, name)).st_mtime_ns
          for root, _, files in os.walk(folder) for name in files}


def test_eval_refuses_labels_beyond_the_classifier_classes(tiny_run):
  workdir, config = tiny_run
  config = config.copy_and_resolve_references()
  config.classifier.num_classes = 3
  before = _snapshot(workdir)
  with pytest.raises(ConfigError, match=r'^labels of mnist go up to 4 but classifier.num_classes '
                     r'is 3; set --config.classifier.num_classes=5$'):
    evaluate_checkpoint(config, str(workdir))
  assert _snapshot(workdir) == before


def test_titled_grid_keeps_panels_and_widens_for_titles():
  rng = np.random.default_rng(0)
  small = rng.random((4, 8, 8, 1), np.float32)  # 2x2 tiles: 16 pixels, narrower than a title
  grid = images.grid_image([small, small], 2, titles=['test images', 'reconstructions'])
  widths = [images.title_width('test images'), images.title_width('reconstructions')]
  assert grid.dtype == np.uint8 and grid.shape == (images.TITLE_HEIGHT + 16, sum(widths) + 2, 1)
  plain = images.grid_image([small], 2)  # without titles: the tiles only, as before
  assert plain.shape == (16, 16, 1)
  left = (widths[0] - 16) // 2  # a narrow panel is centred under its title
  np.testing.assert_array_equal(grid[images.TITLE_HEIGHT:, left:left + 16], plain)
  assert grid[:images.TITLE_HEIGHT].min() == 0 and grid[:images.TITLE_HEIGHT].max() == 255

  wide = rng.random((16, 32, 32, 3), np.float32)  # 128 pixels: wider than its title
  grid = images.grid_image([wide, wide], 4, titles=['test images', 'reconstructions'])
  assert grid.shape == (images.TITLE_HEIGHT + 128, 2 * 128 + 2, 3)
  np.testing.assert_array_equal(grid[images.TITLE_HEIGHT:, :128], images.grid_image([wide], 4))


def test_save_grid_returns_what_it_saves(tmp_path):
  panels = [np.linspace(0, 1, 4 * 20 * 20).reshape(4, 20, 20, 1)] * 3
  titles = ['test image', 'reconstruction', 'rendered at 20x20']
  saved = images.save_grid(str(tmp_path / 'superres.png'), panels, 2, titles=titles)
  assert saved.shape[:2] == (images.TITLE_HEIGHT + 40, sum(map(images.title_width, titles)) + 4)
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / 'superres.png')), saved[..., 0])
