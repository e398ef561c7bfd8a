"""gon_jax.probes: linear and MLP probes separate what is separable, learn nothing from
random labels, are deterministic given their seed, and refuse bad input in one line."""

import chex
import numpy as np
import pytest

from gon_jax import probes
from gon_jax.errors import ConfigError, DataError

STEPS = 300  # enough for these small problems; the probe table uses fit's defaults


def _clusters(n: int, seed: int, num_classes: int = 3, dim: int = 8):
  """Gaussian clusters of unit spread whose centres lie 10 apart: linearly separable."""
  rng = np.random.default_rng(seed)
  centres = np.random.default_rng(99).normal(size=(num_classes, dim))
  centres *= 10 / np.linalg.norm(centres[0] - centres[1])
  labels = rng.integers(0, num_classes, n)
  return (centres[labels] + rng.normal(size=(n, dim))).astype(np.float32), labels


def _xor(n: int, seed: int):
  """2-D points labelled by the sign of x * y: no linear probe beats chance by much."""
  rng = np.random.default_rng(seed)
  points = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
  return points, (points[:, 0] * points[:, 1] > 0).astype(np.int64)


@pytest.mark.parametrize('kind', probes.KINDS)
def test_separable_clusters_are_classified_perfectly(kind):
  train, test = _clusters(2000, 0), _clusters(1000, 1)
  probe = probes.fit(*train, kind=kind, steps=STEPS)
  assert probe.num_classes == 3
  assert probes.accuracy(probe, *test) >= 0.99


def test_only_the_mlp_learns_xor():
  train, test = _xor(4000, 0), _xor(2000, 1)
  mlp = probes.fit(*train, kind='mlp', steps=1000, hidden=32)
  linear = probes.fit(*train, kind='linear', steps=1000)
  assert probes.accuracy(mlp, *test) >= 0.95
  assert abs(probes.accuracy(linear, *test) - 0.5) < 0.1


@pytest.mark.parametrize('kind', probes.KINDS)
def test_random_labels_give_chance_on_test(kind):
  rng = np.random.default_rng(0)
  latents, labels = rng.normal(size=(3000, 16)), rng.integers(0, 4, 3000)
  probe = probes.fit(latents[:2000], labels[:2000], kind=kind, steps=STEPS)
  # Chance is 1/4; the standard deviation of 1000 test guesses around it is 0.014.
  assert abs(probes.accuracy(probe, latents[2000:], labels[2000:]) - 0.25) < 0.06


def test_the_same_seed_gives_the_same_probe_another_seed_another_mlp():
  latents, labels = _clusters(500, 0)
  first = probes.fit(latents, labels, kind='mlp', seed=3, steps=50)
  chex.assert_trees_all_equal(first, probes.fit(latents, labels, kind='mlp', seed=3, steps=50))
  other = probes.fit(latents, labels, kind='mlp', seed=4, steps=50)
  assert not np.array_equal(first.layers[0][0], other.layers[0][0])


def test_latents_are_standardised_so_scale_and_offset_do_not_matter():
  latents, labels = _clusters(1000, 0)
  probe = probes.fit(latents, labels, steps=STEPS)
  # Each dimension shifted and scaled differently, as latent dimensions of a model are.
  moved = latents * np.geomspace(1e-3, 1e3, 8, dtype=np.float32) + 50.0
  probe_moved = probes.fit(moved, labels, steps=STEPS)
  chex.assert_trees_all_close(probe_moved.layers, probe.layers, atol=1e-3)
  np.testing.assert_array_equal(probes.predict(probe_moved, moved), probes.predict(probe, latents))


def test_a_constant_dimension_is_harmless():
  latents, labels = _clusters(500, 0)
  latents[:, 3] = 7.0
  probe = probes.fit(latents, labels, steps=STEPS)
  assert probe.scale[3] == 1.0 and np.all(np.isfinite(probe.layers[0][0]))
  # Centred, the dimension is 0 everywhere: no gradient reaches its weights, which stay 0.
  np.testing.assert_array_equal(probe.layers[0][0][3], 0.0)
  assert probes.accuracy(probe, latents, labels) >= 0.95


def test_num_classes_beyond_the_labels_seen():
  latents, labels = _clusters(200, 0)
  probe = probes.fit(latents, labels, steps=10, num_classes=10)
  assert probes.logits(probe, latents).shape == (200, 10)


@pytest.mark.parametrize('latents,labels,message', [
    (np.zeros((4,)), np.zeros(4, int), r'latents must be numbers \[num_examples, latent_dim\]'),
    (np.zeros((0, 3)), np.zeros(0, int), 'with at least one row'),
    (np.array([[0.0, np.nan]] * 4), np.zeros(4, int), 'latents hold 4 non-finite values'),
    (np.zeros((4, 2)), np.zeros(3, int), r'labels must be integers \[4\]'),
    (np.zeros((4, 2)), np.zeros(4), r'labels must be integers \[4\] .*not float64'),
    (np.zeros((4, 2)), np.array([0, 1, -1, 2]), r'labels go from -1 to 2'),
])
def test_bad_latents_or_labels_are_one_clear_error(latents, labels, message):
  with pytest.raises(DataError, match=message):
    probes.fit(latents, labels, steps=1)


def test_bad_settings_and_mismatched_latents_are_one_clear_error():
  latents, labels = _clusters(100, 0)
  with pytest.raises(ConfigError, match="unknown probe kind 'svm'; valid: linear, mlp"):
    probes.fit(latents, labels, kind='svm')
  with pytest.raises(ConfigError, match='probe steps must be at least 1, not 0'):
    probes.fit(latents, labels, steps=0)
  with pytest.raises(DataError, match=r'labels go from 0 to 2; they must lie in \[0, 2\)'):
    probes.fit(latents, labels, num_classes=2)
  probe = probes.fit(latents, labels, steps=1)
  with pytest.raises(DataError, match='latents have 4 dimensions but the probe was fitted on 8'):
    probes.accuracy(probe, latents[:, :4], labels)
  with pytest.raises(DataError, match=r'labels go from 0 to 5; they must lie in \[0, 3\)'):
    probes.accuracy(probe, latents, np.where(labels == 1, 5, labels))


def test_the_command_scores_encoded_files_as_fit_and_accuracy_do(tmp_path, capsys):
  (train_x, train_y), (test_x, test_y) = _clusters(300, 0), _clusters(100, 1)
  np.savez(tmp_path / 'train.npz', latents=train_x, labels=train_y.astype(np.int32))
  np.savez(tmp_path / 'test.npz', latents=test_x, labels=test_y.astype(np.int32))
  probes.main(['--train', str(tmp_path / 'train.npz'), '--test', str(tmp_path / 'test.npz'),
               '--kind', 'linear', '--seed', '3', '--steps', str(STEPS)])
  expected = probes.accuracy(probes.fit(train_x, train_y, kind='linear', seed=3, steps=STEPS),
                             test_x, test_y)
  assert capsys.readouterr().out.splitlines() == [
      f'linear: test accuracy {100 * expected:.2f}% (100 test latents; fitted on 300 of 8 '
      f'dimensions, {STEPS} steps, seed 3)']


def test_the_command_refuses_a_file_without_labels_or_missing_in_one_line(tmp_path, capsys):
  np.savez(tmp_path / 'unlabelled.npz', latents=np.zeros((4, 2), np.float32))
  for train, message in (('unlabelled.npz', 'unlabelled.npz has no labels (it holds latents)'),
                         ('absent.npz', 'cannot read')):
    with pytest.raises(SystemExit) as stopped:
      probes.main(['--train', str(tmp_path / train), '--test', str(tmp_path / train)])
    assert stopped.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith('error: ') and message in error[0], error
