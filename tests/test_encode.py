"""python -m gon_jax.encode: a whole split's latents and labels in one .npz, equal to
Model.encode's and eval.py's, written atomically; bad input is one `error:` line."""

import os
import subprocess
import sys

import chex
import numpy as np
import pytest

import gon_jax
from gon_jax import bundles, data, encode, evaluate, saved_config
from gon_jax.errors import ConfigError, DataError

from testing_utils import MNIST_DIR, NEEDS_MNIST, REPO, write_idx_folder


@pytest.fixture(scope='module')
def workdir(tiny_run):
  """conftest's `tiny_run` workdir (2 steps of tiny_config: 16x16 images, latent 8)."""
  return str(tiny_run[0])


def _encode_command(*flags: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', 'gon_jax.encode', *flags], capture_output=True,
                        text=True, cwd=REPO, timeout=300,
                        env=dict(os.environ, JAX_PLATFORMS='cpu'))


def test_the_command_writes_the_split_as_model_encode_and_eval_encode_it(workdir, tmp_path):
  out = tmp_path / 'latents' / 'test.npz'  # the folder is created
  result = _encode_command('--workdir', workdir, '--split', 'test', '--out', str(out))
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().splitlines()[-1] == (
      f'{out}: 64 latents of 8 dimensions and their labels, the test split of mnist encoded by '
      f'{workdir}')
  assert 'encoding test images: 100%' in result.stderr and '64/64' in result.stderr
  with np.load(out) as written:
    assert sorted(written) == ['labels', 'latents']
    latents, labels = written['latents'], written['labels']
  chex.assert_shape(latents, (64, 8))
  assert latents.dtype == np.float32 and labels.dtype == np.int32

  model = gon_jax.load(workdir)
  images, expected_labels = data.load_split(model.config.data, 'test', 16)
  np.testing.assert_array_equal(labels, expected_labels)
  np.testing.assert_array_equal(latents, model.encode(images))
  _, _, eval_latents = evaluate.make_evaluator(model.objective, model.settings.evaluation)(
      model.variables, images)
  np.testing.assert_array_equal(latents, eval_latents)
  assert not [name for name in os.listdir(out.parent) if name != 'test.npz']  # no temporaries


def test_encode_split_reads_the_data_override_and_leaves_out_labels_that_are_all_0(
    workdir, tmp_path):
  rng = np.random.default_rng(1)
  other = {split: rng.integers(0, 256, (n, 28, 28), np.uint8)
           for split, n in (('train', 40), ('test', 24))}
  folder = write_idx_folder(tmp_path / 'other', other,
                            {split: np.zeros(len(x), np.uint8) for split, x in other.items()},
                            gz=False)
  config = saved_config.load(workdir)
  config.data.dir = str(folder)
  out = tmp_path / 'train.npz'
  line = encode.encode_to_file(config, workdir, 'train', str(out))
  assert '40 latents of 8 dimensions (the split has no labels)' in line
  model = gon_jax.load(workdir)
  images, _ = data.load_split(config.data, 'train', 16)
  with np.load(out) as written:
    assert list(written) == ['latents']
    np.testing.assert_array_equal(written['latents'], model.encode(images))


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
  out = tmp_path / 'latents.npz'
  encode.write_npz(str(out), {'latents': np.ones((2, 3), np.float32)})

  def broken(*args, **kwargs):
    raise OSError('disk full')

  monkeypatch.setattr(np, 'savez', broken)
  with pytest.raises(OSError, match='disk full'):
    encode.write_npz(str(out), {'latents': np.zeros((2, 3), np.float32)})
  assert os.listdir(tmp_path) == ['latents.npz']
  with np.load(out) as kept:
    np.testing.assert_array_equal(kept['latents'], 1.0)


def test_bad_split_out_path_or_model_override_is_one_clear_error(workdir, tmp_path):
  config = saved_config.load(workdir)
  with pytest.raises(DataError, match="unknown split 'valid'; use one of train, test"):
    encode.encode_to_file(config, workdir, 'valid', str(tmp_path / 'x.npz'))
  with pytest.raises(DataError, match='give a file name ending in .npz'):
    encode.encode_to_file(config, workdir, 'test', str(tmp_path / 'x.npy'))
  (tmp_path / 'folder.npz').mkdir()
  with pytest.raises(DataError, match='folder.npz is a folder'):
    encode.encode_to_file(config, workdir, 'test', str(tmp_path / 'folder.npz'))
  (tmp_path / 'file').write_text('')
  with pytest.raises(DataError, match='file is a file, not a folder'):
    encode.encode_to_file(config, workdir, 'test', str(tmp_path / 'file' / 'x.npz'))
  config.model.latent_dim = 4
  with pytest.raises(ConfigError, match='config key model.latent_dim is 4 but the model was '
                     'trained with 8: encode takes only --config.data.. overrides'):
    encode.encode_to_file(config, workdir, 'test', str(tmp_path / 'x.npz'))
  config = saved_config.load(workdir)
  config.data.image_size = 28
  with pytest.raises(ConfigError, match="data.image_size 28 is not the model's 16"):
    encode.encode_to_file(config, workdir, 'test', str(tmp_path / 'x.npz'))
  empty = tmp_path / 'never_trained'
  saved_config.save(saved_config.load(workdir), str(empty))
  with pytest.raises(FileNotFoundError, match='no checkpoint in'):
    encode.encode_to_file(config, str(empty), 'test', str(tmp_path / 'x.npz'))
  assert not (tmp_path / 'x.npz').exists()


def test_a_pretrained_name_is_its_folder_and_an_unknown_name_one_error_line(tmp_path):
  folder = str(bundles.PRETRAINED_DIR / 'conv_mnist')
  assert encode._resolve_workdir(  # pylint: disable=protected-access
      ['encode', '--workdir', 'conv_mnist', '--workdir=conv_mnist']) == [
          'encode', '--workdir', folder, f'--workdir={folder}']
  result = _encode_command('--workdir', 'conv_mnsit', '--out', str(tmp_path / 'x.npz'))
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      'error: --workdir conv_mnsit: neither a folder nor a pretrained model; pretrained: '
      f'{", ".join(bundles.pretrained_names())}'], result.stderr


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=NEEDS_MNIST)
def test_pretrained_conv_mnist_encodes_the_real_test_split(tmp_path):
  out = tmp_path / 'test.npz'
  config = saved_config.load(str(bundles.PRETRAINED_DIR / 'conv_mnist'))
  config.data.dir = str(MNIST_DIR)
  encode.encode_to_file(config, 'conv_mnist', 'test', str(out))
  model = gon_jax.load('conv_mnist')
  with np.load(out) as written:
    latents, labels = written['latents'], written['labels']
  chex.assert_shape(latents, (10_000, 32))
  images, test_labels = data.load_split(config.data, 'test', 32)
  np.testing.assert_array_equal(labels, test_labels)
  np.testing.assert_array_equal(model.examples, images[:len(model.examples)])
  # Model.encode's latents of a batch of eval_batch_size, as the command encodes them (a
  # smaller batch, e.g. the 64 examples, is another program: its sums may round otherwise).
  batch = config.eval_batch_size
  np.testing.assert_array_equal(latents[:batch], model.encode(images[:batch]))
