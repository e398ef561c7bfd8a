"""Sample quality: the Fréchet distance in closed form, the feature classifier and its cache,
the command on a tiny workdir, its one-line errors."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gon_jax import feature_classifier, sample_quality
from gon_jax.errors import DamagedFileError, DataError


def _rotation(d: int, seed: int) -> np.ndarray:
  """A random orthogonal matrix [d, d]."""
  q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
  return q


def test_frechet_distance_of_two_gaussians_in_closed_form():
  # N(m1, a I) against N(m2, R diag(b) R^T): cov1 commutes with everything, so
  # tr((cov1 cov2)^1/2) = sqrt(a) sum sqrt(b), though cov2 is not diagonal.
  d, a = 6, 2.5
  b = np.array([0.1, 0.5, 1.0, 2.0, 4.0, 9.0])
  rotation = _rotation(d, 0)
  mean1, mean2 = np.arange(d, dtype=float), np.arange(d, dtype=float)[::-1] * 0.5
  cov1, cov2 = a * np.eye(d), rotation @ np.diag(b) @ rotation.T
  expected = (np.sum((mean1 - mean2) ** 2) + d * a + b.sum()
              - 2 * np.sqrt(a) * np.sqrt(b).sum())
  assert sample_quality.frechet_distance(mean1, cov1, mean2, cov2) == pytest.approx(expected,
                                                                                     rel=1e-10)
  assert sample_quality.frechet_distance(mean2, cov2, mean1, cov1) == pytest.approx(expected,
                                                                                     rel=1e-10)
  # Diagonal covariances: the sum of (sqrt(a_i) - sqrt(b_i))^2 and the means' distance.
  a_diag = np.array([1.0, 4.0, 0.25, 0.0, 2.0, 3.0])
  expected = np.sum((mean1 - mean2) ** 2) + np.sum((np.sqrt(a_diag) - np.sqrt(b)) ** 2)
  assert sample_quality.frechet_distance(mean1, np.diag(a_diag), mean2,
                                         np.diag(b)) == pytest.approx(expected, rel=1e-10)
  assert sample_quality.frechet_distance(mean2, cov2, mean2, cov2) == pytest.approx(0, abs=1e-9)


def test_frechet_distance_agrees_with_scipy_sqrtm_on_random_covariances():
  linalg = pytest.importorskip('scipy.linalg', reason='scipy is not installed')
  rng = np.random.default_rng(1)
  d = 20
  x, y = rng.normal(size=(d, d)), rng.normal(size=(d, 2 * d))
  cov1, cov2 = x @ x.T / d, y @ y.T / (2 * d)
  mean1, mean2 = rng.normal(size=d), rng.normal(size=d)
  root = linalg.sqrtm(cov1 @ cov2).real
  expected = np.sum((mean1 - mean2) ** 2) + np.trace(cov1 + cov2 - 2 * root)
  assert sample_quality.frechet_distance(mean1, cov1, mean2, cov2) == pytest.approx(expected,
                                                                                     rel=1e-8)


def test_features_distance_of_singular_features_is_finite_and_zero_for_the_same_set():
  rng = np.random.default_rng(2)
  features = rng.random((50, 8))
  features[:, 3] = 0.0  # a ReLU unit off for every image: singular covariance
  assert sample_quality.features_distance(features, features) == pytest.approx(0, abs=1e-9)
  shifted = features + 1.0
  shifted[:, 3] = 0.0
  assert sample_quality.features_distance(features, shifted) == pytest.approx(7.0, rel=1e-9)
  with pytest.raises(DataError, match='features must be'):
    sample_quality.features_distance(features[:1], features)


def test_subset_is_seeded_and_whole_when_asked_for_more():
  assert np.array_equal(sample_quality.subset(5, 9, 0), np.arange(5))
  first, again = sample_quality.subset(100, 10, 3), sample_quality.subset(100, 10, 3)
  assert np.array_equal(first, again) and len(np.unique(first)) == 10
  assert not np.array_equal(first, sample_quality.subset(100, 10, 4))


def _halves(n: int, size: int = 8, seed: int = 0):
  """uint8 [n, size, size, 1] images bright in their left (class 0) or right half (class 1),
  with noise: a data set a classifier learns in a few steps."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, n).astype(np.int32)
  images = rng.integers(0, 60, (n, size, size, 1)).astype(np.uint8)
  for i, label in enumerate(labels):
    columns = slice(0, size // 2) if label == 0 else slice(size // 2, size)
    images[i, :, columns] += 180
  return images, labels


@pytest.fixture(scope='module')
def halves_splits():
  train_images, train_labels = _halves(256, seed=0)
  test_images, test_labels = _halves(64, seed=1)
  return train_images, train_labels, test_images, test_labels


def test_feature_classifier_shapes():
  module = feature_classifier.FeatureClassifier(num_classes=7)
  variables = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
  logits, features = jax.eval_shape(module.apply, variables, jnp.zeros((5, 16, 16, 3)))
  assert logits.shape == (5, 7)
  assert features.shape == (5, feature_classifier.NUM_FEATURES)


def test_cache_entry_round_trip_and_a_damaged_file_is_not_loaded(tmp_path):
  module = feature_classifier.FeatureClassifier(num_classes=3)
  shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
  rng = np.random.default_rng(0)
  variables = jax.tree.map(lambda x: rng.normal(size=x.shape).astype(np.float32), shapes)
  info = dict(test_accuracy=0.5, num_classes=3, num_features=feature_classifier.NUM_FEATURES,
              image_shape=[8, 8, 1])
  entry = tmp_path / 'entry'
  saved = feature_classifier.save_entry(
      feature_classifier.Classifier(module, variables, info), entry)
  assert saved.path == str(entry) and not list(tmp_path.glob('.*.tmp'))  # renamed into place
  loaded = feature_classifier.load_entry(entry)
  assert loaded.test_accuracy == 0.5
  jax.tree.map(np.testing.assert_array_equal, loaded.variables, variables)
  (entry / feature_classifier.INFO).write_text(json.dumps({**info, 'test_accuracy': 0.99}))
  with pytest.raises(DamagedFileError, match=f'is damaged: {entry / "info.json"}'):
    feature_classifier.load_entry(entry)
  with pytest.raises(FileNotFoundError):
    feature_classifier.load_entry(tmp_path / 'missing')


@pytest.mark.slow  # trains twice, compiles the step and the features: ~30 s on a busy CPU
def test_classifier_trains_caches_and_detects_a_damaged_entry(halves_splits, capsys):
  classifier = feature_classifier.trained(halves_splits, 'halves', 'idx', seed=0, epochs=2,
                                          progress=False)
  assert classifier.test_accuracy > 0.9  # a task a linear model solves
  assert classifier.info['steps'] == 2 * (256 // feature_classifier.BATCH_SIZE)
  features = classifier.features(halves_splits[2])
  assert features.shape == (64, feature_classifier.NUM_FEATURES)
  assert features.dtype == np.float32 and np.all(features >= 0)  # ReLU activations
  entry = pathlib.Path(classifier.path)
  assert entry.parent == feature_classifier.cache_dir()
  assert entry.name.startswith('halves-idx-8x8x1-seed0-epochs2-v')
  assert json.loads((entry / 'info.json').read_text())['test_accuracy'] == classifier.test_accuracy

  cached = feature_classifier.trained(halves_splits, 'halves', 'idx', seed=0, epochs=2,
                                      progress=False)
  assert np.array_equal(cached.features(halves_splits[2]), features)

  variables = entry / feature_classifier.VARIABLES
  damaged = bytearray(variables.read_bytes())
  damaged[len(damaged) // 2] ^= 0xFF
  variables.write_bytes(bytes(damaged))
  with pytest.raises(DamagedFileError, match='is not the file that was written'):
    feature_classifier.load_entry(entry)
  capsys.readouterr()
  retrained = feature_classifier.trained(halves_splits, 'halves', 'idx', seed=0, epochs=2,
                                         progress=False)
  assert 'training it again' in capsys.readouterr().err
  # Deterministic given the seed: the same classifier as the first.
  assert np.array_equal(retrained.features(halves_splits[2]), features)
  feature_classifier.load_entry(entry)  # intact again


def test_classifier_refuses_data_without_classes(halves_splits):
  images, _, test_images, test_labels = halves_splits
  with pytest.raises(DataError, match='no classes'):
    feature_classifier.train(images, np.zeros(len(images), np.int32), test_images, test_labels,
                             epochs=1, progress=False)


@pytest.mark.slow  # compiles the GON's encoder and decoder and the classifier: ~20 s
def test_command_on_a_tiny_workdir(tiny_run, tmp_path, capsys):
  workdir, _ = tiny_run
  out = tmp_path / 'quality.json'
  sample_quality.main(['--workdir', str(workdir), '--num_samples', '40',
                       '--classifier_epochs', '1', '--out', str(out)])
  printed = capsys.readouterr().out
  assert 'FD samples vs test' in printed and 'FD floor train vs test' in printed
  result = json.loads(out.read_text())
  assert result['num_samples'] == 40  # fewer than the 64 test images
  assert result['fd_samples'] > 0 and result['fd_floor_train_vs_test'] > 0
  assert 0 <= result['classifier']['test_accuracy'] <= 1
  assert result['samples'].startswith('Gaussian fitted')  # not variational
  assert result['data']['image_shape'] == [16, 16, 1]
  assert f"{result['fd_samples']:.3f}" in printed


@pytest.mark.parametrize('argv, message', [
    (['--model', 'no_such_model'], "'no_such_model' is neither a folder nor a pretrained model"),
    (['--workdir', 'no/such/folder'], 'is not a folder'),
    (['--dataset', 'celeb_a'], "--dataset 'celeb_a': give one of mnist"),
    ([], 'give one of --workdir, --model and --dataset'),
    (['--model', 'vgon_mnist', '--num_samples', '1'], 'num_samples 1'),
    (['--dataset', 'mnist', '--classifier_epochs', '0'], '--classifier_epochs 0: give at least 1'),
])
def test_command_errors_are_one_line(argv, message, capsys):
  with pytest.raises(SystemExit) as exit_info:
    sample_quality.main(argv)
  assert exit_info.value.code == 1
  err = capsys.readouterr().err
  assert err.startswith('error: ') and err.count('\n') == 1 and message in err


def test_command_refuses_a_workdir_without_checkpoint(tmp_path, capsys):
  with pytest.raises(SystemExit):
    sample_quality.main(['--workdir', str(tmp_path)])
  err = capsys.readouterr().err
  assert err.startswith('error: no checkpoint in') and err.count('\n') == 1


def test_celeba_is_refused_before_reading_data():
  config = sample_quality.dataset_config('celeb_a', 'celeba', '/nonexistent', 64, 3)
  with pytest.raises(DataError, match='CelebA has no classes'):
    sample_quality.measure(config)
