"""The package as a user installs it: the wheel, in a fresh venv outside the repository."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from testing_utils import REPO, TINY_FLAGS

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
  """A venv with the built wheel installed (not editable), and the wheel's path.

  The venv gets this environment's site-packages for the dependencies (jax, flax, ...)
  through a .pth file, after its own: gon_jax itself comes from the wheel, and the
  editable install's finder here (run by a .pth file of this environment) is not loaded.
  """
  root = tmp_path_factory.mktemp('packaging')
  # Built from a copy: setuptools' build/ folder in the tree could hold stale modules.
  source = root / 'source'
  shutil.copytree(REPO / 'gon_jax', source / 'gon_jax',
                  ignore=shutil.ignore_patterns('__pycache__'))
  for name in ('pyproject.toml', 'README.md', 'LICENSE'):
    shutil.copy(REPO / name, source / name)
  subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps',
                  '--no-build-isolation', '--wheel-dir', str(root / 'wheel'), str(source)],
                 check=True, capture_output=True, timeout=300, cwd=root)
  (wheel,) = (root / 'wheel').glob('gon_jax-*.whl')
  venv = root / 'venv'
  subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True,
                 timeout=120)
  python = venv / 'bin' / 'python'
  site = subprocess.run(
      [str(python), '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))'],
      check=True, capture_output=True, text=True).stdout.strip()
  here = {sysconfig.get_path('purelib'), sysconfig.get_path('platlib')}
  pathlib.Path(site, 'dependencies.pth').write_text(''.join(f'{path}\n' for path in here))
  subprocess.run([sys.executable, '-m', 'pip', '--python', str(python), 'install', '--quiet',
                  '--no-deps', '--no-index', str(wheel)], check=True, capture_output=True,
                 timeout=300)
  return venv, wheel


def _run(venv: pathlib.Path, *command: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
  env = {key: value for key, value in os.environ.items() if key != 'PYTHONPATH'}
  env.update(PATH=f'{venv / "bin"}:{env.get("PATH", "")}', JAX_PLATFORMS='cpu')
  return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_the_wheel_holds_every_package_and_config(installed):
  _, wheel = installed
  names = set(zipfile.ZipFile(wheel).namelist())
  sources = {str(path.relative_to(REPO)) for path in (REPO / 'gon_jax').rglob('*.py')}
  assert sources <= names, sorted(sources - names)
  assert 'gon_jax/configs/siren_mnist.py' in names and 'gon_jax/models/__init__.py' in names
  assert not [name for name in names if name.startswith(('tests/', 'benchmarks/', 'configs/'))]


def test_the_wheel_ships_the_pretrained_models_and_loads_them(installed, tmp_path):
  venv, wheel = installed
  names = set(zipfile.ZipFile(wheel).namelist())
  bundles = {str(path.relative_to(REPO)) for path in (REPO / 'gon_jax' / 'pretrained').rglob('*')
             if path.is_file() and '__pycache__' not in path.parts}
  assert 'gon_jax/pretrained/manifest.json' in bundles and bundles <= names, sorted(
      bundles - names)
  loaded = _run(venv, 'python', '-c', (
      'import gon_jax\n'
      'from gon_jax.configs import conv_fashion\n'  # recipes import from any folder
      'assert conv_fashion.get_config().data.name == "fashion_mnist"\n'
      'model = gon_jax.load("conv_mnist")\n'
      'print(model.source, model.reconstruct(model.examples[:2]).shape)'), cwd=tmp_path)
  assert loaded.returncode == 0, loaded.stderr[-2000:]
  assert loaded.stdout.startswith(str(venv)) and '(2, 32, 32, 1)' in loaded.stdout, loaded.stdout


def test_installed_package_imports_without_flags_and_trains_and_evaluates(installed, blob_dir,
                                                                         tmp_path):
  venv, _ = installed
  imported = _run(venv, 'python', '-c', (
      'import gon_jax, gon_jax.config, gon_jax.train, gon_jax.evaluate\n'
      'import gon_jax.experiments.compare, gon_jax.experiments.superres\n'
      'from absl import flags\n'
      'assert "config" not in flags.FLAGS and "workdir" not in flags.FLAGS, "flags on import"\n'
      'print(gon_jax.__file__)'), cwd=tmp_path)
  assert imported.returncode == 0, imported.stderr[-2000:]
  assert imported.stdout.strip().startswith(str(venv)), imported.stdout  # the wheel's, not REPO's

  for command in (['gon-train', '--help'], ['gon-eval', '--help']):
    helped = _run(venv, *command, cwd=tmp_path)
    assert helped.returncode == 0 and '--config NAME_OR_FILE' in helped.stdout, (
        command, helped.stderr[-2000:])

  trained = _run(venv, 'gon-train', '--config', 'conv_mnist', '--workdir', 'run', *TINY_FLAGS,
                 '--config.num_steps=2', f'--config.data.dir={blob_dir}', cwd=tmp_path)
  assert trained.returncode == 0, trained.stderr[-2000:]
  assert 'trained 2 steps' in trained.stderr.strip().splitlines()[-1], trained.stderr[-2000:]
  evaluated = _run(venv, 'gon-eval', '--workdir', 'run', cwd=tmp_path)
  assert evaluated.returncode == 0, evaluated.stderr[-2000:]
  metrics = json.loads(evaluated.stdout.strip().splitlines()[-1])
  assert metrics['step'] == 2 and metrics['num_images'] == 64 and metrics['sse'] > 0
