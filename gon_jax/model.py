"""A trained GON as one object: `load` a pretrained model or a workdir, then encode,
reconstruct, decode, render and sample with numpy arrays.

    import gon_jax
    model = gon_jax.load('conv_mnist')               # pretrained, shipped in the package
    reconstructions = model.reconstruct(model.examples[:8])   # [8, 32, 32, 1] in [0, 1]

`load` takes a pretrained model's name (`PRETRAINED`, in gon_jax/pretrained/, docs/pretrained.md),
a workdir of train.py (its latest checkpoint and config.json), or a bundle folder written by
`save_bundle` (python -m gon_jax.export). Every method batches, pads and compiles as eval.py
does (gon_jax.evaluate.make_encoder, gon_jax.generate), so its numbers are eval.py's.
"""

import dataclasses
import functools
import hashlib
import json
import os
import pathlib

import flax.serialization
import jax
import ml_collections
import numpy as np

from gon_jax import checkpoints, evaluate, generate, saved_config
from gon_jax.config import validate
from gon_jax.errors import ConfigError, DataError
from gon_jax.models import make_objective
from gon_jax.objectives import Objective, model_variables
from gon_jax.state import setup

PRETRAINED_DIR = pathlib.Path(__file__).parent / 'pretrained'
MANIFEST = PRETRAINED_DIR / 'manifest.json'
# A bundle's files: what inference needs and nothing else.
VARIABLES = 'variables.msgpack'  # {'params': ..., ['batch_stats': ...]}, flax msgpack
GAUSSIAN = 'gaussian.npz'  # non-variational models: mean, covariance of training latents
EXAMPLES = 'examples.npz'  # images (uint8): the first test images of its data set


def manifest() -> dict:
  """The pretrained models' manifest, `{name: entry}` (docs/pretrained.md says what an entry
  holds: command, data, steps, seed, test metrics, parameters, files with sha256)."""
  with open(MANIFEST, encoding='utf-8') as f:
    return json.load(f)


def pretrained_names() -> list[str]:
  """The names `load` knows, sorted."""
  return sorted(manifest()) if MANIFEST.is_file() else []


def sha256(path: str | os.PathLike) -> str:
  """The hex SHA-256 of a file's bytes."""
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
  """A trained model and what it can do, on host numpy arrays.

  Attributes:
    config: the config it was trained with (config.json).
    variables: `{'params': ..., ['batch_stats': ...]}` of the module.
    gaussian: `(mean [latent_dim], covariance [latent_dim, latent_dim])` of training
      latents, what `sample` draws from (non-variational models); None if not fitted
      (`with_gaussian` fits one).
    examples: uint8 `[n, height, width, channels]`, the first test images of the data set
      (pretrained bundles; None for a workdir).
    source: where it was loaded from.
  """
  config: ml_collections.ConfigDict
  variables: dict
  gaussian: tuple[np.ndarray, np.ndarray] | None = None
  examples: np.ndarray | None = None
  source: str = ''

  @functools.cached_property
  def objective(self) -> Objective:
    """The model family's objective (gon_jax.objectives) around the config's module."""
    return make_objective(self.config)

  @functools.cached_property
  def _encoder(self):
    return evaluate.make_encoder(self.objective)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """`(height, width, channels)` of the images the model takes and makes."""
    size = self.config.data.image_size
    return size, size, self.config.model.channels

  def encode(self, images: np.ndarray, *, progress: str | None = None) -> np.ndarray:
    """Latents `[n, latent_dim]` of images `[n, height, width, channels]` (uint8, or floats
    in [0, 1]), from the origin as eval.py encodes them; `progress`, a progress bar's
    description (data.in_batches), or None for none."""
    return self._encoder(self.variables, self._checked(images), progress)[0]

  def reconstruct(self, images: np.ndarray) -> np.ndarray:
    """Reconstructions float32 `[n, height, width, channels]` in [0, 1] (clipped, as eval.py
    scores them) of images as `encode` takes them."""
    return np.clip(self._encoder(self.variables, self._checked(images))[1], 0.0, 1.0)

  def decode(self, z: np.ndarray) -> np.ndarray:
    """Images float32 `[n, height, width, channels]` in [0, 1] of latents `[n, latent_dim]`
    (a variational model decodes the posterior mean the latents give)."""
    return np.clip(generate.decode(self.objective, self.variables, self._checked_latents(z)),
                   0.0, 1.0)

  def render(self, z: np.ndarray, size: int, *, batch_size: int = 4) -> np.ndarray:
    """Images float32 `[n, size, size, channels]` in [0, 1] of latents `[n, latent_dim]` on a
    `size x size` grid, any resolution (implicit models only: ValueError otherwise)."""
    return np.clip(generate.render(self.objective, self.variables, self._checked_latents(z),
                                   size, batch_size), 0.0, 1.0)

  def sample(self, n: int, key: jax.Array | int = 0) -> np.ndarray:
    """`n` new images float32 `[n, height, width, channels]` in [0, 1], as eval.py's
    samples.png: a variational model decodes codes of its prior N(0, I), another model
    draws of `gaussian` (the same images as eval.py's for `key = config.seed`)."""
    key = jax.random.key(key) if isinstance(key, (int, np.integer)) else key
    if self.objective.variational:
      codes = np.asarray(jax.random.normal(key, (n, self.config.model.latent_dim)))
      images = generate.decode(self.objective, self.variables, codes, method='generate')
    elif self.gaussian is None:
      raise ValueError('this model has no Gaussian of training latents to sample from: '
                       'model.with_gaussian(training_images) fits one')
    else:
      codes = generate.sample_gaussian(key, *self.gaussian, n)
      images = generate.decode(self.objective, self.variables, codes)
    return np.clip(images, 0.0, 1.0)

  def with_gaussian(self, images: np.ndarray) -> 'Model':
    """This model with `gaussian` fitted to the latents of `images` (training images: eval.py
    fits the first `config.num_fit_examples`), for `sample`."""
    return dataclasses.replace(self, gaussian=generate.fit_gaussian(self.encode(images)))

  def evaluate(self, images: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """eval.py's metrics of these images (`sse`, `psnr`, `num_images`; `bits_per_dim`,
    `negative_elbo_nats`, `elbo_samples` for variational models; `accuracy` for a classifier
    given labels): gon_jax.evaluate.make_evaluator."""
    metrics, _, _ = evaluate.make_evaluator(self.objective)(self.variables,
                                                            self._checked(images), labels)
    return metrics

  def _checked(self, images: np.ndarray) -> np.ndarray:
    """`images` as a host array, or a DataError (one line) saying what is wrong with them."""
    images = np.asarray(images)
    expected = f'[n, {", ".join(map(str, self.image_shape))}]'
    if images.ndim == 3 and images.shape == self.image_shape:
      raise DataError(f'images must be a batch {expected}, got one image {list(images.shape)}: '
                      'give images[None]')
    if images.ndim != 4 or images.shape[1:] != self.image_shape:
      raise DataError(f'images must be {expected} (data.image_size, model.channels of the '
                      f'model), got {list(images.shape)}; resize them first (load_split '
                      'resizes a data set)')
    if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
      raise DataError(f'images must be uint8 or floats in [0, 1], got dtype {images.dtype}')
    if np.issubdtype(images.dtype, np.floating) and images.size:
      nonfinite = int(np.sum(~np.isfinite(images)))
      if nonfinite:
        raise DataError(f'float images must be finite, got {nonfinite} NaN or infinite values')
      if images.min() < 0.0 or images.max() > 1.0:
        raise DataError(f'float images must be in [0, 1], got values from {images.min()} to '
                        f'{images.max()}; for 0-255 pixels give uint8')
    return images

  def _checked_latents(self, z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float32)
    latent_dim = self.config.model.latent_dim
    if z.ndim != 2 or z.shape[1] != latent_dim:
      raise ValueError(f'latents must be [n, {latent_dim}], got {list(z.shape)}')
    return z


def pretrained_folder(name: str) -> pathlib.Path | None:
  """The folder in the package of the pretrained model `name`, or None if there is none."""
  return PRETRAINED_DIR / name if name in pretrained_names() else None


def load(workdir_or_name: str | os.PathLike) -> Model:
  """A trained model: a pretrained one's name, a workdir of train.py, or a bundle folder.

  A folder that exists is read as what it holds (a bundle's `variables.msgpack`, or a
  workdir's `checkpoints/` and `config.json`); otherwise the name is a pretrained model's.

  Raises:
    FileNotFoundError: a workdir without a checkpoint, or a name that is neither a folder nor
      a pretrained model (the message lists the pretrained names).
    ConfigError: the folder's config or variables do not fit this version of gon_jax.
  """
  path = pathlib.Path(workdir_or_name).expanduser()
  if path.is_dir():
    return _load_bundle(path) if (path / VARIABLES).is_file() else _load_workdir(path)
  folder = pretrained_folder(str(workdir_or_name))
  if folder is None:
    raise FileNotFoundError(f'{str(workdir_or_name)!r} is neither a folder nor a pretrained '
                            f'model; pretrained: {", ".join(pretrained_names())}')
  for file, entry in manifest()[folder.name]['files'].items():
    if sha256(folder / file) != entry['sha256']:
      raise DataError(f'{folder / file} is not the file the manifest names (sha256 '
                      f'{entry["sha256"][:12]}...); reinstall gon_jax')
  return _load_bundle(folder)


def _load_workdir(workdir: pathlib.Path) -> Model:
  """The latest checkpoint of a workdir, with the config it recorded."""
  manager = checkpoints.manager(str(workdir), read_only=True)
  step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f'no checkpoint in {workdir / "checkpoints"}: train first, e.g. '
                            f'python train.py --config configs/conv_mnist.py --workdir {workdir}')
  config = saved_config.load(str(workdir))
  validate(config, num_devices=1)
  # GLO's latent table has a row per training image: its template needs their number,
  # which the checkpoint's metadata gives without reading the training split.
  rows = checkpoints.stored_shapes(manager, step).get('latents/table', (0,))[0]
  _, _, template = setup(config, rows)
  state, _ = checkpoints.restore_latest(manager, template)
  return Model(config, model_variables(state.params, state.batch_stats), source=str(workdir))


def _load_bundle(folder: pathlib.Path) -> Model:
  """A bundle written by `save_bundle`."""
  config = saved_config.load(str(folder))
  validate(config, num_devices=1)
  objective = make_objective(config)
  template = jax.eval_shape(objective.init_variables, jax.random.key(0))
  variables = flax.serialization.msgpack_restore((folder / VARIABLES).read_bytes())
  there, here = checkpoints.shapes(variables), checkpoints.shapes(template)
  if there != here:
    raise ConfigError(f'{folder / VARIABLES} does not fit its config.json: '
                      f'{checkpoints.first_difference(there, here)}')
  gaussian = None
  if (folder / GAUSSIAN).is_file():
    with np.load(folder / GAUSSIAN) as fitted:
      gaussian = (fitted['mean'], fitted['covariance'])
  examples = None
  if (folder / EXAMPLES).is_file():
    with np.load(folder / EXAMPLES) as stored:
      examples = stored['images']
  return Model(config, variables, gaussian, examples, str(folder))


def save_bundle(model: Model, folder: str | os.PathLike,
                examples: np.ndarray | None = None) -> dict[str, dict]:
  """Writes what inference needs: config.json, the variables as flax msgpack, the Gaussian
  (if fitted) and `examples` (uint8 images, if given).

  Returns:
    `{file name: {'bytes': size, 'sha256': hex digest}}` of the files written.
  """
  folder = pathlib.Path(folder)
  saved_config.save(model.config, str(folder))
  variables = jax.tree.map(np.asarray, model.variables)
  (folder / VARIABLES).write_bytes(flax.serialization.msgpack_serialize(variables))
  optional = {GAUSSIAN: model.gaussian, EXAMPLES: examples}
  for name in [name for name, value in optional.items() if value is None]:
    (folder / name).unlink(missing_ok=True)  # a bundle written before must not leave its own
  if model.gaussian is not None:
    mean, covariance = model.gaussian
    np.savez(folder / GAUSSIAN, mean=mean, covariance=covariance)
  if examples is not None:
    np.savez_compressed(folder / EXAMPLES, images=np.asarray(examples, np.uint8))
  written = [saved_config.FILENAME, VARIABLES, *(name for name, value in optional.items()
                                                 if value is not None)]
  return {name: {'bytes': (folder / name).stat().st_size, 'sha256': sha256(folder / name)}
          for name in written}
