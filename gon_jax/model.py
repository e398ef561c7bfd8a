"""A trained GON as one object: `load` a pretrained model or a workdir, then encode,
reconstruct, decode, render and sample with numpy arrays.

    import gon_jax
    model = gon_jax.load('conv_mnist')               # pretrained, shipped in the package
    reconstructions = model.reconstruct(model.examples[:8])   # [8, 32, 32, 1] in [0, 1]

`load` takes a pretrained model's name (`bundles.pretrained_names()`, gon_jax/pretrained/,
docs/pretrained.md), a workdir of train.py (its latest checkpoint and config.json), or a
bundle folder written by `save_bundle` (python -m gon_jax.export), whose files' sha256
(gon_jax.file_hashes) are checked before anything is read. Every method batches, pads and
compiles as eval.py does (gon_jax.evaluate.make_encoder, gon_jax.generate), once per model
and batch shape, so its numbers are eval.py's. `Model.functions` are the same computations
as pure functions of `(variables, inputs)`, for the user's own `jax.jit` and `jax.grad`.
"""

import dataclasses
import functools
import os
import pathlib
from typing import Any, Callable, NamedTuple

import jax
import ml_collections
import numpy as np

from gon_jax import bundles, checkpoints, evaluate, generate, saved_config
from gon_jax.config import to_settings, validate
from gon_jax.errors import ConfigError, DataError, check_count
from gon_jax.models import make_objective
from gon_jax.objectives import Objective, model_variables
from gon_jax.settings import EvalSettings, Settings
from gon_jax.state import setup

class Functions(NamedTuple):
  """A model's computations as pure functions of `(variables, inputs) -> jax.Array`, for
  the user's own `jax.jit`, `jax.grad` and `jax.vmap` (docs/pretrained.md).

  Nothing is batched, padded, checked or clipped: images are floats in [0, 1]
  `[n, height, width, channels]` (`gon_jax.data.to_float` converts uint8), latents
  `[n, latent_dim]`; BatchNorm uses its running averages, as in `Model`'s methods, which
  compile the same computations.

  Attributes:
    encode: `(variables, images) -> latents [n, latent_dim]`, from the origin.
    reconstruct: `(variables, images) -> reconstructions` like images.
    decode: `(variables, z) -> images` at the training resolution (a variational model:
      of the posterior mean the latents give).
    render: implicit models, else None: `(variables, z, coordinates [points, 2]) ->
      [n, points, channels]`, coordinates in [-1, 1]^2 (`gon_jax.coordinates.grid(size)`).
    generate: variational models, else None: `(variables, codes of N(0, I)) -> images`.
  """
  encode: Callable[[Any, jax.Array], jax.Array]
  reconstruct: Callable[[Any, jax.Array], jax.Array]
  decode: Callable[[Any, jax.Array], jax.Array]
  render: Callable[[Any, jax.Array, jax.Array], jax.Array] | None
  generate: Callable[[Any, jax.Array], jax.Array] | None


def functions(objective: Objective) -> Functions:
  """The pure functions (`Functions`) of the model of `objective`."""
  return Functions(
      encode=lambda variables, images: objective.encode(variables, images)[0],
      reconstruct=lambda variables, images: objective.encode(variables, images)[1],
      decode=functools.partial(generate.decoded, objective),
      render=(functools.partial(generate.rendered, objective) if objective.spec.implicit
              else None),
      generate=(functools.partial(generate.generated, objective) if objective.variational
                else None))


class _Compiled:
  """The jitted functions of one objective, evaluated as `evaluation` says, each built on its
  first use. Their variables are an argument, so jax.jit compiles each once per input shape
  for every call and every Model of an equal objective (`_compiled`)."""

  def __init__(self, objective: Objective, evaluation: EvalSettings):
    self.objective, self.evaluation = objective, evaluation

  @functools.cached_property
  def encoder(self) -> Callable:
    return evaluate.make_encoder(self.objective, self.evaluation.batch_size)

  @functools.cached_property
  def evaluator(self) -> Callable:
    return evaluate.make_evaluator(self.objective, self.evaluation, self.encoder)

  @functools.cached_property
  def decoder(self) -> Callable:
    return generate.make_decoder(self.objective)

  @functools.cached_property
  def generator(self) -> Callable:
    return generate.make_decoder(self.objective, 'generate')

  @functools.cached_property
  def renderer(self) -> Callable:
    return generate.make_renderer(self.objective)


@functools.lru_cache(maxsize=8)
def _compiled(objective: Objective, evaluation: EvalSettings) -> _Compiled:
  """One `_Compiled` per objective and evaluation (equal configs give equal ones): models
  loaded twice, or `with_gaussian`'s copies, share their compilations."""
  return _Compiled(objective, evaluation)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Model:
  """A trained model and what it can do, on host numpy arrays.

  Each method compiles once per batch shape (the first call on a shape takes seconds, the
  next milliseconds); fewer images or latents than a batch are padded to the next power of
  two only (gon_jax.data.in_batches). Bad input is one DataError (images, latents, labels),
  TypeError or ValueError (arguments) naming what is wrong and what is expected.

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
  def settings(self) -> Settings:
    """The config's settings (gon_jax.settings), what the modules below take."""
    return to_settings(self.config)

  @functools.cached_property
  def objective(self) -> Objective:
    """The model family's objective (gon_jax.objectives) around the config's module."""
    return make_objective(self.settings)

  @functools.cached_property
  def functions(self) -> Functions:
    """The model's pure functions of `(variables, inputs)`, for `jax.jit` and `jax.grad`."""
    return functions(self.objective)

  @functools.cached_property
  def _compiled(self) -> _Compiled:
    return _compiled(self.objective, self.settings.evaluation)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """`(height, width, channels)` of the images the model takes and makes."""
    size = self.config.data.image_size
    return size, size, self.config.model.channels

  @property
  def num_parameters(self) -> int:
    """The number of parameters (`variables['params']`'s numbers)."""
    return int(sum(np.size(p) for p in jax.tree.leaves(self.variables['params'])))

  def __repr__(self) -> str:
    return (f'Model(model={self.config.model.name!r}, data={self.config.data.name!r}, '
            f'latent_dim={self.config.model.latent_dim}, image_shape={self.image_shape}, '
            f'parameters={self.num_parameters:,}, source={self.source!r})')

  def encode(self, images: np.ndarray, *, progress: str | None = None) -> np.ndarray:
    """Latents `[n, latent_dim]` of images `[n, height, width, channels]` (uint8, or floats
    in [0, 1]), from the origin as eval.py encodes them; `progress`, a progress bar's
    description (data.in_batches), or None for none."""
    return self._compiled.encoder(self.variables, self._checked(images), progress)[0]

  def reconstruct(self, images: np.ndarray) -> np.ndarray:
    """Reconstructions float32 `[n, height, width, channels]` in [0, 1] (clipped, as eval.py
    scores them) of images as `encode` takes them."""
    return np.clip(self._compiled.encoder(self.variables, self._checked(images))[1], 0.0, 1.0)

  def decode(self, z: np.ndarray) -> np.ndarray:
    """Images float32 `[n, height, width, channels]` in [0, 1] of latents `[n, latent_dim]`
    (a variational model decodes the posterior mean the latents give)."""
    z = self._checked_latents(z)
    return _clipped(self._compiled.decoder(self.variables, z), z)

  def render(self, z: np.ndarray, size: int, *, batch_size: int = 4) -> np.ndarray:
    """Images float32 `[n, size, size, channels]` in [0, 1] of latents `[n, latent_dim]` on a
    `size x size` grid, any resolution: `batch_size` latents and at most
    `generate.RENDER_POINTS` pixels per call, so memory stays small at any size.

    Raises:
      ValueError: the model is not implicit; a size or batch_size below 1.
      TypeError: a size or batch_size that is not an integer (64.0).
      DataError: latents that are not `[n, latent_dim]`, an empty batch, or not finite.
    """
    render = self._compiled.renderer
    z = self._checked_latents(z)
    return _clipped(render(self.variables, z, size, batch_size), z)

  def sample(self, n: int, key: jax.Array | int = 0) -> np.ndarray:
    """`n` new images float32 `[n, height, width, channels]` in [0, 1], as eval.py's
    samples.png: a variational model decodes codes of its prior N(0, I), another model
    draws of `gaussian` (the same images as eval.py's for `key = config.seed`).

    Args:
      n: how many, a positive integer (TypeError or ValueError otherwise).
      key: an int seed or a PRNG key (`jax.random.key(0)`, or a raw `jax.random.PRNGKey`);
        TypeError otherwise.
    """
    check_count('n', n)
    key = _prng_key(key)
    if self.objective.variational:
      codes = np.asarray(jax.random.normal(key, (n, self.config.model.latent_dim)))
      return _clipped(self._compiled.generator(self.variables, codes), codes)
    if self.gaussian is None:
      raise ValueError('this model has no Gaussian of training latents to sample from: '
                       'model.with_gaussian(training_images) fits one')
    codes = generate.sample_gaussian(key, *self.gaussian, n)
    return _clipped(self._compiled.decoder(self.variables, codes), codes)

  def with_gaussian(self, images: np.ndarray) -> 'Model':
    """This model with `gaussian` fitted to the latents of `images` (training images: eval.py
    fits the first `config.num_fit_examples`), for `sample`."""
    return dataclasses.replace(self, gaussian=generate.fit_gaussian(self.encode(images)))

  def evaluate(self, images: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """eval.py's metrics of these images (`sse`, `psnr`, `num_images`; `bits_per_dim`,
    `negative_elbo_nats`, `elbo_samples` for variational models; `accuracy` for a classifier
    given labels `[n]`): gon_jax.evaluate.make_evaluator.

    Raises:
      DataError: bad images (as `encode`), labels for a model without a classifier, or
        labels that are not one per image.
    """
    images = self._checked(images)
    if labels is not None and not self.config.classifier.num_classes:
      raise DataError('labels given, but this model has no classifier (classifier.num_classes '
                      'is 0): give labels=None')
    metrics, _, _ = self._compiled.evaluator(self.variables, images, labels)
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
    if not len(images):
      raise DataError(f'images are an empty batch {list(images.shape)}: give at least one image')
    if images.dtype == np.uint8 and images.max() == 1:
      # uint8 is read as 0-255: binarised images stored as uint8 would be nearly black.
      raise DataError('uint8 images hold only 0 and 1, read as 0-255 (nearly black); '
                      'binarised images in {0, 1}: give images.astype(np.float32)')
    if np.issubdtype(images.dtype, np.floating):
      nonfinite = int(np.sum(~np.isfinite(images)))
      if nonfinite:
        raise DataError(f'float images must be finite, got {nonfinite} NaN or infinite values')
      if images.min() < 0.0 or images.max() > 1.0:
        raise DataError(f'float images must be in [0, 1], got values from {images.min()} to '
                        f'{images.max()}; for 0-255 pixels give uint8')
    return images

  def _checked_latents(self, z: np.ndarray) -> np.ndarray:
    """`z` as float32 `[n, latent_dim]`, or a DataError (one line) saying what is wrong."""
    z = np.asarray(z)
    latent_dim = self.config.model.latent_dim
    if z.shape == (latent_dim,):
      raise DataError(f'latents must be a batch [n, {latent_dim}], got one latent '
                      f'[{latent_dim}]: give z[None]')
    if z.ndim != 2 or z.shape[1] != latent_dim:
      raise DataError(f'latents must be [n, {latent_dim}] (model.latent_dim {latent_dim}), got '
                      f'{list(z.shape)}')
    if not (np.issubdtype(z.dtype, np.floating) or np.issubdtype(z.dtype, np.integer)):
      raise DataError(f'latents must be numbers, got dtype {z.dtype}')
    if not len(z):
      raise DataError(f'latents are an empty batch [0, {latent_dim}]: give at least one')
    nonfinite = int(np.sum(~np.isfinite(z)))
    if nonfinite:
      raise DataError(f'latents must be finite, got {nonfinite} NaN or infinite values')
    return z.astype(np.float32)


def _clipped(images: np.ndarray, z: np.ndarray) -> np.ndarray:
  """Decoded images clipped to [0, 1], or a DataError if the latents `z` overflowed the
  decoder (finite latents can: the methods promise images in [0, 1], never NaN)."""
  bad = ~np.isfinite(images.reshape(len(images), -1)).all(axis=1)
  if bad.any():
    first = int(np.argmax(bad))
    raise DataError(f'{int(bad.sum())} of {len(images)} latents decode to non-finite pixels '
                    f'(the first, row {first}, has |z| up to {np.max(np.abs(z[first])):.3g}): '
                    'give smaller latents')
  return np.clip(images, 0.0, 1.0)


def _prng_key(key: Any) -> jax.Array:
  """`key` as a PRNG key: an int seeds `jax.random.key`; a PRNG key (typed, or a raw uint32
  `[2]` of `jax.random.PRNGKey`) is itself; anything else is a TypeError."""
  if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
    return jax.random.key(key)
  if isinstance(key, (jax.Array, np.ndarray)):
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
      return key
    if key.dtype == np.uint32 and key.shape == (2,):
      return key
  shape = f' {list(np.shape(key))} {key.dtype}' if hasattr(key, 'dtype') else ''
  raise TypeError(f'key must be an int or one PRNG key (jax.random.key(0)), got '
                  f'{type(key).__name__}{shape}')


def load(workdir_or_name: str | os.PathLike) -> Model:
  """A trained model: a pretrained one's name, a workdir of train.py, or a bundle folder.

  A folder that exists is read as what it holds (a bundle's `variables.msgpack` and
  `sha256.json`, or a workdir's `checkpoints/` and `config.json`); otherwise the name is a
  pretrained model's.

  Raises:
    FileNotFoundError: a workdir without a checkpoint, or a name that is neither a folder nor
      a pretrained model (the message lists the pretrained names).
    DamagedFileError: a bundle file whose size or sha256 is not the one recorded when it was
      written (the message names it), a bundle without its record (`bundles.read`), or a
      pretrained model's file that is not the manifest's.
    ConfigError: the folder's config or variables do not fit this version of gon_jax.
  """
  path = pathlib.Path(workdir_or_name).expanduser()
  if path.is_dir():
    return _load_bundle(path) if bundles.is_bundle(path) else _load_workdir(path)
  folder = bundles.pretrained_folder(str(workdir_or_name))
  if folder is None:
    raise FileNotFoundError(f'{str(workdir_or_name)!r} is neither a folder nor a pretrained '
                            f'model; pretrained: {", ".join(bundles.pretrained_names())}')
  bundles.check_pretrained(folder)
  return _load_bundle(folder)


def _load_bundle(folder: pathlib.Path) -> Model:
  """The model of a bundle (gon_jax.bundles.read), its variables checked against its config."""
  config, variables, gaussian, examples = bundles.read(folder)
  settings = validate(config, num_devices=1)
  template = jax.eval_shape(make_objective(settings).init_variables, jax.random.key(0))
  there, here = checkpoints.shapes(variables), checkpoints.shapes(template)
  if there != here:
    raise ConfigError(f'{folder / bundles.VARIABLES} does not fit its config.json: '
                      f'{checkpoints.first_difference(there, here)}')
  return Model(config, variables, gaussian, examples, str(folder))


def _load_workdir(workdir: pathlib.Path) -> Model:
  """The latest checkpoint of a workdir, with the config it recorded."""
  with checkpoints.manager(str(workdir), read_only=True) as manager:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {workdir / "checkpoints"}: train a model in '
                              f'this workdir first (train.py, or train_and_evaluate)')
    config = saved_config.load(str(workdir))
    settings = validate(config, num_devices=1)
    # GLO's latent table has a row per training image: its template needs their number,
    # which the checkpoint's metadata gives without reading the training split.
    rows = checkpoints.stored_shapes(manager, step).get('latents/table', (0,))[0]
    _, _, template = setup(settings, rows)
    state, _ = checkpoints.restore_latest(manager, template)
  return Model(config, model_variables(state.params, state.batch_stats), source=str(workdir))


def save_bundle(model: Model, folder: str | os.PathLike,
                examples: np.ndarray | None = None) -> dict[str, dict]:
  """Writes `model` as a bundle that `load` reads (gon_jax.bundles.write): its config,
  variables and Gaussian (if fitted), and `examples` (uint8 images, if given).

  Returns:
    `{file name: {'bytes': size, 'sha256': hex digest}}` of the files written.
  """
  return bundles.write(folder, bundles.Bundle(model.config, model.variables, model.gaussian,
                                              examples))
