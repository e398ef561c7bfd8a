"""Shared by the tests: tiny IDX data sets and tiny configs."""

import gzip
import io
import os
import pathlib
import pickle
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
MNIST_DIR = REPO.parent / 'shared' / 'data' / 'mnist'
NEEDS_MNIST = f'needs real MNIST in IDX form at {MNIST_DIR} (../shared/data/mnist)'
IDX_NAMES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte',
             't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')



def idx_bytes(array: np.ndarray) -> bytes:
  """Encodes a uint8 array as an IDX file: magic 0x0000080<ndim>, big-endian int32 dims, data."""
  header = bytes([0, 0, 8, array.ndim]) + b''.join(d.to_bytes(4, 'big') for d in array.shape)
  return header + array.astype(np.uint8).tobytes()


def write_idx_folder(folder: pathlib.Path, images: dict, labels: dict, gz: bool) -> pathlib.Path:
  """Writes the four IDX files; images/labels map 'train'/'test' to uint8 arrays."""
  folder.mkdir(parents=True, exist_ok=True)
  arrays = (images['train'], labels['train'], images['test'], labels['test'])
  for name, array in zip(IDX_NAMES, arrays):
    payload = idx_bytes(array)
    (folder / (name + '.gz' if gz else name)).write_bytes(gzip.compress(payload) if gz else payload)
  return folder


def cifar_batch_bytes(images: np.ndarray, labels: np.ndarray, name: str) -> bytes:
  """One CIFAR-10 python batch as its authors' Python 2 pickles hold it: a dict with b'data'
  uint8 [n, 3072] (each row the red, green then blue 32x32 planes) and b'labels' a list; the
  numpy module named numpy.core.multiarray, as in the published files."""
  batch = {b'batch_label': name.encode(), b'labels': [int(y) for y in labels],
           b'data': np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), -1),
           b'filenames': [f'{name}_{i}.png'.encode() for i in range(len(images))]}
  return pickle.dumps(batch, protocol=2).replace(b'numpy._core.multiarray',
                                                 b'numpy.core.multiarray')


def write_cifar_archive(path: pathlib.Path, images: dict, labels: dict) -> pathlib.Path:
  """Writes cifar-10-python.tar.gz's layout to `path`: cifar-10-batches-py/ with data_batch_1..5
  (the train images split in five), test_batch and batches.meta; images/labels map
  'train'/'test' to uint8 [n, 32, 32, 3] and [n]."""
  path.parent.mkdir(parents=True, exist_ok=True)
  members = {f'data_batch_{i + 1}': (x, y) for i, (x, y) in enumerate(
      zip(np.array_split(images['train'], 5), np.array_split(labels['train'], 5)))}
  members['test_batch'] = (images['test'], labels['test'])
  payloads = {n: cifar_batch_bytes(x, y, n) for n, (x, y) in members.items()}
  payloads['batches.meta'] = pickle.dumps({b'label_names': [b'airplane']}, 2)
  with tarfile.open(path, 'w:gz') as archive:  # Out of order, as the published archive is.
    for name in ('data_batch_4', 'test_batch', 'data_batch_3', 'batches.meta', 'data_batch_2',
                 'data_batch_5', 'data_batch_1'):
      payload = payloads[name]
      info = tarfile.TarInfo(f'cifar-10-batches-py/{name}')
      info.size = len(payload)
      archive.addfile(info, io.BytesIO(payload))
  return path


def write_celeba(folder: pathlib.Path, colours: dict, as_zip: bool = True) -> pathlib.Path:
  """Writes CelebA's published layout in `folder`: list_eval_partition.txt and
  img_align_celeba.zip (JPEGs under img_align_celeba/, written last to first) or, with
  `as_zip=False`, the extracted img_align_celeba/. `colours` maps 'train', 'valid' and 'test'
  to uint8 [n, 3]: each image is 178 wide and 218 tall like CelebA's, its centred 178x178
  square in its colour, the 20 rows above and below it in its complement (which the crop
  removes). JPEG quality 100 without chroma subsampling keeps colours within a few levels."""
  folder.mkdir(parents=True, exist_ok=True)
  codes, payloads = [], {}
  for split, code in (('train', 0), ('valid', 1), ('test', 2)):
    for colour in colours.get(split, ()):
      name = f'{len(codes) + 1:06d}.jpg'
      image = np.empty((218, 178, 3), np.uint8)
      image[:] = 255 - colour
      image[20:198] = colour
      buffer = io.BytesIO()
      Image.fromarray(image).save(buffer, 'JPEG', quality=100, subsampling=0)
      payloads[name], codes = buffer.getvalue(), codes + [f'{name} {code}']
  (folder / 'list_eval_partition.txt').write_text('\n'.join(codes) + '\n', encoding='ascii')
  if as_zip:
    with zipfile.ZipFile(folder / 'img_align_celeba.zip', 'w') as archive:
      for name in reversed(payloads):  # the reader must follow the partition file's order
        archive.writestr(f'img_align_celeba/{name}', payloads[name])
  else:
    (folder / 'img_align_celeba').mkdir()
    for name, payload in payloads.items():
      (folder / 'img_align_celeba' / name).write_bytes(payload)
  return folder


def write_blob_digits(folder: pathlib.Path, num_train: int = 256, num_test: int = 64) -> pathlib.Path:
  """A learnable stand-in for MNIST: 28x28 images of one bright square at random places."""
  rng = np.random.default_rng(0)
  images, labels = {}, {}
  for split, n in (('train', num_train), ('test', num_test)):
    x = np.zeros((n, 28, 28), np.uint8)
    corners = rng.integers(2, 18, (n, 2))
    for i, (r, c) in enumerate(corners):
      x[i, r:r + 8, c:c + 8] = 255
    images[split], labels[split] = x, (corners[:, 0] // 4).astype(np.uint8)
  return write_idx_folder(folder, images, labels, gz=True)


def run_steps(config, placement=None, num_steps: int = 3):
  """Trains `num_steps` steps from the seeded initial state, as train.py does.

  Args:
    config: experiment config, validated here (gon_jax.config.validate) as
      train.py validates it.
    placement: a gon_jax.parallel.Placement; None for one device under jit.

  Returns:
    `(final train state on the host, per-step losses)`.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from jax.sharding import Mesh  # pylint: disable=import-outside-toplevel
  from gon_jax import data  # pylint: disable=import-outside-toplevel
  from gon_jax.config import validate  # pylint: disable=import-outside-toplevel
  from gon_jax.parallel import AXIS, Placement  # pylint: disable=import-outside-toplevel
  from gon_jax.state import setup  # pylint: disable=import-outside-toplevel
  from gon_jax.train_step import compile_train_step  # pylint: disable=import-outside-toplevel
  if placement is None:
    placement = Placement('jit', Mesh(np.array(jax.devices()[:1]), (AXIS,)))
  settings = validate(config, placement.mesh.size)  # as train.py does, over its devices
  images, labels = data.load_split(config.data, 'train', config.data.image_size)
  _, tx, state = setup(settings, len(images))
  step = compile_train_step(settings, placement, tx)
  device_state = placement.put_state(state)
  batches = data.train_batches(images, labels, config.batch_size, config.seed)
  losses = []
  for _ in range(num_steps):
    device_state, metrics = step(device_state, placement.put_batch(next(batches)))
    losses.append(float(placement.get(metrics)['loss']))
  return placement.get(device_state), losses


def assert_runs_match(state, reference) -> None:
  """Asserts that two runs of tiny_config, summed in different orders, reached the same state.

  Devices, processes, rematerialisation and fusions change the order of float32 sums, and Adam
  magnifies the rounding: a gradient near 0 (a conv bias before BatchNorm has none at all) is
  normalised into a step of up to learning_rate=1e-2, so such a parameter or its moment can differ
  by 1e-5 after 4 steps (seen on AMD EPYC). atol=5e-5 is 0.5% of one step; a real error
  (BatchNorm statistics not shared, a wrong gradient) moves parameters by whole steps.
  """
  import chex  # pylint: disable=import-outside-toplevel
  chex.assert_trees_all_close(state, reference, rtol=1e-4, atol=5e-5)


def tiny_config(idx_dir, norm: str = 'batch'):
  """conv_mnist shrunk to a 16x16 decoder of width 4, for fast tests."""
  from gon_jax.configs import conv_mnist  # pylint: disable=import-outside-toplevel
  config = conv_mnist.get_config()
  config.data.source = 'idx'
  config.data.dir = str(idx_dir)
  config.data.image_size = 16
  config.model.latent_dim = 8
  config.model.features = 4
  config.model.norm = norm
  config.batch_size = 8
  config.num_steps = 4
  config.learning_rate = 1e-2
  config.log_every = 2
  config.eval_every = 4
  config.checkpoint_every = 2
  config.eval_batch_size = 32
  config.grid_size = 2
  return config


# Command-line overrides giving tiny_config's model and data (3 steps), for train.py and eval.py.
TINY_FLAGS = ['--config.data.source=idx', '--config.data.image_size=16',
              '--config.model.features=4', '--config.model.latent_dim=8',
              '--config.batch_size=8', '--config.num_steps=3', '--config.log_every=1',
              '--config.eval_every=3', '--config.checkpoint_every=3',
              '--config.eval_batch_size=16', '--config.grid_size=2',
              '--config.learning_rate=1e-2']


# The same for configs/siren_mnist_tiny.py: 8x8 images, two layers of 16.
TINY_SIREN_FLAGS = ['--config.data.source=idx', '--config.data.image_size=8',
                    '--config.model.latent_dim=4', '--config.model.widths=(16,16)',
                    '--config.batch_size=8', '--config.performance.scan_chunk=2',
                    '--config.num_steps=3', '--config.log_every=1',
                    '--config.eval_every=3', '--config.checkpoint_every=3',
                    '--config.eval_batch_size=16', '--config.grid_size=2',
                    '--config.num_fit_examples=32', '--config.superres_size=20']


def run_script(script, workdir, *flags, devices=1, background=False,
               config='configs/conv_mnist.py', tiny_flags=TINY_FLAGS, env=None, stderr_path=None):
  """Runs train.py or eval.py on `config` (a path in the repository, a packaged config's
  name, or None for none) with `tiny_flags` and `flags`.

  `background=True` returns the Popen at once; its stderr goes to
  `stderr_path` if given (a pipe nobody reads could fill and block it).
  """
  xla_flags = [flag for flag in os.environ.get('XLA_FLAGS', '').split()
               if not flag.startswith('--xla_force_host_platform_device_count')]
  xla_flags.append(f'--xla_force_host_platform_device_count={devices}')
  env = dict(os.environ, XLA_FLAGS=' '.join(xla_flags), JAX_PLATFORMS='cpu', **(env or {}))
  # A config path is the repository's; a bare name, a packaged config's; None: no --config.
  config_flag = [] if config is None else ['--config', str(REPO / config) if '/' in config
                                           else config]
  command = [sys.executable, str(REPO / script), *config_flag, '--workdir', str(workdir),
             *tiny_flags, *flags]
  if background:
    stderr = open(stderr_path, 'w', encoding='utf-8') if stderr_path else subprocess.PIPE
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True,
                            env=env, cwd=REPO)
  return subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def tiny_siren_model():
  """An untrained implicit GON (siren_mnist_tiny at 6x6, latent 4, two 16-unit layers) as a
  gon_jax.Model: the model API's tests of implicit models."""
  from gon_jax.config import to_settings  # pylint: disable=import-outside-toplevel
  from gon_jax.configs import siren_mnist_tiny  # pylint: disable=import-outside-toplevel
  from gon_jax.model import Model  # pylint: disable=import-outside-toplevel
  from gon_jax.state import setup  # pylint: disable=import-outside-toplevel
  config = siren_mnist_tiny.get_config()
  config.data.image_size = 6
  config.model.update(latent_dim=4, widths=(16, 16))
  return Model(config, {'params': setup(to_settings(config))[2].params})


def random_images(n: int, size: int = 16) -> np.ndarray:
  """uint8 `[n, size, size, 1]` of a fixed generator: images any model of that size takes."""
  return np.random.default_rng(0).integers(0, 256, (n, size, size, 1), np.uint8)
