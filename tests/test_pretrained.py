"""The pretrained models shipped in gon_jax/pretrained: their files, and their numbers.

Each manifest entry records the metrics of the first test images of its data set (500; 100
of CIFAR-10's, to keep the colour images in tests/data small) as
`Model.evaluate` gave them when the bundle was written (python -m gon_jax.export); those
images are in tests/data/, so the numbers are reproduced here without the data set.
Tolerance: 1e-4 relative. Nothing is trained: the same float32 forward and backward passes
on the same images, and only the order of XLA's sums may differ between CPUs (about 1e-6
relative on a mean over 500 images of sums over 1,024 pixels); a wrong file, a changed model
or a changed metric moves them by far more.
"""

import json
import pathlib
import shlex

import numpy as np
import pytest

import gon_jax
from gon_jax import bundles, file_hashes
from gon_jax.demo import main as demo_main

from testing_utils import REPO

DATA = pathlib.Path(__file__).parent / 'data'
MANIFEST = bundles.manifest()
NAMES = sorted(MANIFEST)
MIB = 2 ** 20


def test_the_manifest_names_the_models_and_their_files_fit():
  assert NAMES == ['conv_cifar10', 'conv_fashion', 'conv_mnist', 'siren_cifar10',
                   'siren_mnist_shift', 'vgon_mnist']
  total = 0
  for name, entry in MANIFEST.items():
    for file, info in entry['files'].items():
      path = bundles.PRETRAINED_DIR / name / file
      assert path.stat().st_size == info['bytes'] <= 3 * MIB, (name, file)
      assert file_hashes.sha256(path) == info['sha256'], (name, file)
      total += info['bytes']
    for key in ('command', 'eval_command', 'data', 'steps', 'epochs', 'seed', 'parameters',
                'test', 'test_subset'):
      assert key in entry, (name, key)
    assert entry['test']['num_images'] == 10_000 and entry['test']['step'] == entry['steps']
    assert entry['epochs'] >= 10, name  # trained for at least 10 epochs of its data set
  assert total <= 10_000_000  # 10 MB in all


def _subset(name: str) -> tuple[np.ndarray, np.ndarray]:
  subset = MANIFEST[name]['test_subset']
  path = DATA / subset['file']
  assert file_hashes.sha256(path) == subset['sha256'], path
  with np.load(path) as stored:
    return stored['images'], stored['labels']


# vgon_mnist's ELBO draws 10 samples an image: a minute on a CPU, the full suite's.
@pytest.mark.parametrize('name', [pytest.param(name, marks=pytest.mark.slow)
                                  if name == 'vgon_mnist' else name for name in NAMES])
def test_each_model_reproduces_its_test_subset_metrics(name):
  model = gon_jax.load(name)
  images, _ = _subset(name)
  expected = MANIFEST[name]['test_subset']['metrics']
  assert len(images) == expected['num_images'] >= 100
  metrics = model.evaluate(images)
  assert set(metrics) == set(expected)
  for key, value in expected.items():
    np.testing.assert_allclose(metrics[key], value, rtol=1e-4, err_msg=f'{name}: {key}')
  # The bundle's examples are the first test images, as stored here.
  np.testing.assert_array_equal(model.examples, images[:len(model.examples)])


@pytest.mark.slow
def test_sampling_and_rendering_of_the_pretrained_models():
  for name, size, channels in (('siren_mnist_shift', 256, 1), ('siren_cifar10', 96, 3)):
    implicit = gon_jax.load(name)
    high = implicit.render(implicit.encode(implicit.examples[:2]), size)
    assert high.shape == (2, size, size, channels), name
  for name, channels in (('conv_mnist', 1), ('vgon_mnist', 1), ('conv_cifar10', 3)):
    samples = gon_jax.load(name).sample(4, 0)  # a Gaussian fit; the prior; in colour
    assert samples.shape == (4, 32, 32, channels), name
    assert 0 <= samples.min() <= samples.max() <= 1, name


@pytest.mark.slow
def test_the_demo_of_all_shows_each_pretrained_model(tmp_path, capsys):
  demo_main(['--name', 'all', '--size', '64', '--out', str(tmp_path)])
  assert sorted(p.stem for p in tmp_path.glob('*.png')) == NAMES
  lines = dict(line.split('.png: ') for line in capsys.readouterr().out.strip().splitlines())
  assert sorted(pathlib.Path(path).name for path in lines) == NAMES
  for name, line in ((pathlib.Path(path).name, line) for path, line in lines.items()):
    assert 'SSE' in line, line
    # An implicit model renders its latents; the others show samples instead.
    assert line.endswith('rendered at 64x64' if name.startswith('siren') else 'samples'), line


def test_the_quick_start_demo_runs_as_written(tmp_path, monkeypatch, capsys):
  """README's quick start: the pretrained model reconstructing and rendering at 256x256."""
  section = (REPO / 'README.md').read_text().split('\n## Quick start', 1)[1].split('\n## ')[0]
  (words,) = [shlex.split(line) for line in section.splitlines()
              if line.startswith('python -m gon_jax.demo')]
  monkeypatch.chdir(tmp_path)
  demo_main(words[3:])
  out = words[words.index('--out') + 1]
  assert (tmp_path / out / 'siren_mnist_shift.png').is_file()
  assert 'rendered at 256x256' in capsys.readouterr().out


def test_the_manifest_is_the_json_it_was_written_as():
  text = bundles.MANIFEST.read_text()
  assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + '\n'
