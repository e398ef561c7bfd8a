"""The config: every default (`base_config`) and the one check of it (`validate`).

configs/*.py start from `base_config(model_name)` and set their recipe; every
entry point (train.py, eval.py, compare, bench) calls `validate` once, before
it loads data or writes anything. Speed switches live in `config.performance`:
each computes the same function as its plain setting (docs/performance.md).
"""

import dataclasses

import jax
import ml_collections

from gon_jax import losses, models, objectives
from gon_jax import settings as settings_lib
from gon_jax.data import SOURCES as DATA_SOURCES
from gon_jax.data import steps_per_epoch
from gon_jax.errors import ConfigError, check_choice
from gon_jax.settings import Settings

NONFINITE_POLICIES = ('stop', 'skip')
LR_SCHEDULES = ('constant', 'cosine')
PARALLEL_MODES = ('jit', 'pmap')
# The config's sizes that must be positive integers, and what they count.
SIZES = {'batch_size': 'examples per training step, over all devices',
         'eval_batch_size': 'images per evaluation batch',
         'grid_size': 'images per row of the image grids',
         'num_fit_examples': 'training images whose latents the sampled Gaussian fits'}


def base_config(model_name: str = 'conv') -> ml_collections.ConfigDict:
  """Every default; `config.model` is the registered model's own section.

  Defaults, not a recipe: e.g. Adam at 1e-4 (the official scripts'), where the recipe
  `gon_jax.configs.conv_mnist` learns at 1e-3. To train a model, start from a recipe,
  `gon_jax.configs.NAME.get_config()`, and change what differs.
  """
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.batch_size = 64  # global, over all devices and processes
  config.num_steps = 1000
  # Or the training length in epochs: num_epochs > 0 trains num_epochs * (n // batch_size)
  # steps, n the training split's images. An epoch is one permutation of the split in batches
  # of batch_size whose incomplete last batch is dropped (gon_jax.data.batch_indices), so
  # n // batch_size steps. num_epochs > 0 replaces num_steps (said as training starts; the
  # workdir's config.json records both, num_steps resolved: `steps_for`); 0: num_steps.
  config.num_epochs = 0
  config.learning_rate = 1e-4
  # 'constant', or 'cosine': decays to 0 at num_steps; both after a linear
  # warm-up from 0 over warmup_steps (0: none).
  config.lr_schedule = 'constant'
  config.warmup_steps = 0
  config.grad_clip_norm = 0.0  # clip gradients to this global norm; 0: off
  # A step with a non-finite loss or gradient norm changes nothing; then
  # 'stop': end the run with an error (the last checkpoint is kept), or
  # 'skip': go on, counting such steps (train/skipped_steps).
  config.nonfinite = 'stop'
  # 'jit': jax.jit over a NamedSharding data mesh; 'pmap': jax.pmap over local devices.
  config.parallel = 'jit'

  config.model = ml_collections.ConfigDict(
      {'name': model_name, **models.get_spec(model_name).default_options()})

  config.data = _data_defaults()

  config.gon = _gon_defaults()

  # A linear softmax classifier on the latents (Eq. 13): num_classes > 0 adds
  # it to GON models; the training loss is reconstruction_weight times the
  # reconstruction loss plus classification_weight times the cross-entropy.
  config.classifier = ml_collections.ConfigDict()
  config.classifier.num_classes = 0
  config.classifier.reconstruction_weight = 1.0
  config.classifier.classification_weight = 1.0

  # Model 'glo' only: the latent table's initial scale and Adam learning rate,
  # and the Adam steps and learning rate that fit the latents of unseen images.
  config.glo = ml_collections.ConfigDict()
  config.glo.init_sigma = 1.0
  config.glo.learning_rate = 1e-2
  config.glo.test_steps = 25
  config.glo.test_learning_rate = 0.1

  config.performance = performance_defaults()

  config.log_every = 50
  config.eval_every = 500
  config.checkpoint_every = 500
  config.eval_batch_size = 500
  config.train_eval_examples = -1  # test images evaluated during training; -1: all (eval.py: all)
  # The test loss of each epoch's record (epochs.jsonl) is on the first epoch_eval_examples of
  # those images; -1: all of them; 0: no test loss per epoch (a GLO's fits them: costly).
  config.epoch_eval_examples = -1
  config.grid_size = 8  # image grids show grid_size**2 images
  config.num_fit_examples = 2000  # eval.py: training latents of the Gaussian it samples (App. D)
  config.superres_size = 256  # eval.py, implicit models: resolution of the super-resolved grid
  config.elbo_samples = 10  # variational models: reparameterised samples per test image's ELBO
  return config


def _gon_defaults() -> ml_collections.ConfigDict:
  """`config.gon`: how a GON's latents are computed (gon_jax.core.origin_latent)."""
  gon = ml_collections.ConfigDict()
  gon.num_steps = 1  # latent gradient steps
  gon.step_size = 1.0
  gon.detach = False
  gon.z0_sigma = 0.0  # z0 ~ N(0, sigma^2) in training; the origin at evaluation
  gon.start_from_z0 = True  # z = z0 - grad (True) or z = -grad
  # Learn the inner optimisation with the decoder: the step size ('none',
  # 'scalar', or 'per_dimension' of the latent: meta-SGD), starting at
  # step_size; and a start added to z0, starting at the origin.
  gon.learn_step_size = 'none'
  gon.learn_origin = False
  # Inner loss per example: 'sum' over pixels, 'mean' over pixels, or
  # 'official' (the official scripts' averages over the batch: latents then
  # shrink with 1 / batch_size).
  gon.inner_reduction = 'sum'
  # Implicit models: losses on this many random pixels per image and step
  # (Monte Carlo estimates); 0 for every pixel.
  gon.inner_points = 0
  gon.outer_points = 0
  # What the inner loss observes: 'all', 'lowres:K' (every K-th row and
  # column), 'hole:S' (all but a centred SxS square). The outer loss sees all.
  gon.observe = 'all'
  return gon


def _data_defaults() -> ml_collections.ConfigDict:
  """`config.data`: where the images come from."""
  data = ml_collections.ConfigDict()
  # The files as published, read without TensorFlow: 'idx', the four IDX files of an MNIST-like
  # set; 'cifar', CIFAR-10's python archive (or its extracted folder); 'celeba', CelebA's
  # img_align_celeba.zip (or its folder) and list_eval_partition.txt. 'folder': a folder of
  # one's own images (docs/data_own_images.md; read in model.channels' mode, data.name
  # unused). 'tfds': a TFDS data set.
  data.source = 'idx'
  data.name = 'mnist'
  # idx, cifar, celeba: the folder with the files; '' = the cache folder,
  # $XDG_CACHE_HOME/gon_jax/<name> or ~/.cache/gon_jax/<name>. folder: the folder of images.
  # tfds: its data_dir; '' = tfds's default.
  data.dir = ''
  data.image_size = 32
  # May the data arrive by itself? idx, cifar, celeba: mnist, fashion_mnist, cifar10 and celeb_a
  # are downloaded (checksummed) into a folder holding none of their files; tfds: tfds may
  # download and prepare.
  data.download = True
  data.mirror = ''  # idx, cifar, celeba: a base URL holding the set's files; '' = the usual ones
  # cifar, celeba, folder: keep each decoded split in $XDG_CACHE_HOME/gon_jax/decoded (or
  # ~/.cache/gon_jax/decoded), keyed by its files and the image size, and memory-map it from
  # there: later runs neither decode nor hold the split in memory. False: decode every run.
  data.cache = True
  return data


def performance_defaults() -> ml_collections.ConfigDict:
  """`config.performance`: the speed switches, each computing the same function as its
  plain setting (tests compare them; docs/performance.md measures them)."""
  performance = ml_collections.ConfigDict()
  # Examples per step of a scan over each device's batch (0: the whole batch
  # at once). Same gradients; small chunks keep activations in cache.
  performance.scan_chunk = 0
  # Rematerialise the decoder (jax.checkpoint): its activations are recomputed
  # in the backward passes instead of kept, for images too large to fit.
  performance.remat = False
  # XLA:CPU's YNNPACK fusions where the model runs (off: faster for GONs, and with them a
  # FiLM SIREN's latents changed from call to call; gon_jax.parallel.compiler_options).
  performance.cpu_ynn_fusions = False
  # Decode the origin once for the batch when every example starts there
  # (same latents, fewer passes). False: once per example.
  performance.shared_origin = True
  # Convolutional decoders: transposed convolutions as matrix products
  # ('matmul') or dilated convolutions ('conv'); the same function.
  performance.conv_method = 'matmul'
  # SIRENs: the latent's share of the first layer once per image (factorised),
  # sin and cos from one range reduction (fast_sine, gon_jax.models.siren.sincos).
  performance.factorised = True
  performance.fast_sine = True
  # Train steps per compiled call: a scan over K batches gathered on the device from the
  # training split, moved there once. The same steps; for accelerators that wait on
  # launches. log_every, eval_every, checkpoint_every and num_steps (as num_epochs resolves
  # it) must be multiples.
  performance.steps_per_call = 1
  return performance


def validate(config: ml_collections.ConfigDict, num_devices: int | None = None) -> Settings:
  """The settings of `config` (`to_settings`), checked: ConfigError (one line for the user) for
  a config that cannot work.

  `num_devices`: the devices the global batch is split over (default: all of
  jax.device_count()).
  """
  num_devices = jax.device_count() if num_devices is None else num_devices
  check_choice('parallel mode', config.parallel, PARALLEL_MODES)
  for name, what in SIZES.items():
    value = config[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ConfigError(f'{name}={value!r}: use a positive integer ({what})')
  if config.batch_size % num_devices:
    raise ConfigError(f'batch_size {config.batch_size} does not divide over {num_devices} '
                      f'devices; use a multiple of {num_devices}')
  chunk = config.performance.scan_chunk
  if chunk and (config.batch_size // num_devices) % chunk:
    raise ConfigError(f'performance.scan_chunk {chunk} does not divide the batch of each '
                      f'device ({config.batch_size // num_devices})')
  per_call = config.performance.steps_per_call
  if per_call < 1:
    raise ConfigError(f'performance.steps_per_call={per_call}: use 1 or more train steps a call')
  epochs = config.num_epochs
  if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
    raise ConfigError(f'num_epochs={epochs!r}: use a whole number of epochs, or 0 to train '
                      'num_steps steps')
  if not epochs:  # else num_steps is known once the data is: `with_resolved_steps` checks it
    _validate_num_steps(config, '')
  for name in ('log_every', 'eval_every', 'checkpoint_every'):
    if config[name] % per_call:
      raise ConfigError(f'{name}={config[name]} is not a multiple of '
                        f'performance.steps_per_call={per_call}')
  count = config.epoch_eval_examples
  if isinstance(count, bool) or not isinstance(count, int) or count < -1:
    raise ConfigError(f'epoch_eval_examples={count!r}: use -1 (all the test images training '
                      'evaluates), 0 (no test loss per epoch) or a number of images')
  check_choice('nonfinite', config.nonfinite, NONFINITE_POLICIES)
  check_choice('lr_schedule', config.lr_schedule, LR_SCHEDULES)
  if config.grad_clip_norm < 0:
    raise ConfigError(f'grad_clip_norm {config.grad_clip_norm}: use 0 (off) or a positive norm')
  check_choice('data source', config.data.source, DATA_SOURCES)
  spec = models.get_spec(config.model.name)
  if config.classifier.num_classes and not spec.classifiable:
    classifiable = [name for name, other in models.MODELS.items() if other.classifiable]
    raise ConfigError(f'classifier.num_classes needs a GON model '
                      f'({", ".join(classifiable)}), not {config.model.name!r}')
  checked = to_settings(config)
  spec.check(checked)
  _validate_gon(config, spec)
  return checked


def to_settings(config: ml_collections.ConfigDict) -> Settings:
  """`config` as frozen settings (gon_jax.settings), not checked (`validate` checks them).

  Raises:
    ConfigError: a section holds a key its settings do not know, or lacks one.
  """
  sections = {'data': settings_lib.DataSettings, 'gon': settings_lib.GonSettings,
              'classifier': settings_lib.ClassifierSettings, 'glo': settings_lib.GloSettings,
              'performance': settings_lib.PerformanceSettings}
  made = {}
  for name, section in sections.items():
    given, known = config[name].to_dict(), {field.name for field in dataclasses.fields(section)}
    unknown, missing = sorted(set(given) - known), sorted(known - set(given))
    if unknown:
      raise ConfigError(f'unknown config key {name}.{unknown[0]}')
    if missing:
      raise ConfigError(f'config key {name}.{missing[0]} missing: start from '
                        'gon_jax.config.base_config, which has every key')
    made[name] = section(**given)
  optimizer = settings_lib.OptimizerSettings(**{
      field.name: config[field.name]
      for field in dataclasses.fields(settings_lib.OptimizerSettings)})
  evaluation = settings_lib.EvalSettings(config.eval_batch_size, config.elbo_samples,
                                         config.seed)
  options = {key: value for key, value in config.model.to_dict().items() if key != 'name'}
  return Settings(seed=config.seed, batch_size=config.batch_size, model_name=config.model.name,
                  model=settings_lib.model_options(options), optimizer=optimizer,
                  evaluation=evaluation, **made)


def _validate_num_steps(config: ml_collections.ConfigDict, origin: str) -> None:
  """The checks of `num_steps`; `origin` says where it came from ('' for the key itself)."""
  per_call = config.performance.steps_per_call
  if config.num_steps % per_call:
    raise ConfigError(f'num_steps={config.num_steps}{origin} is not a multiple of '
                      f'performance.steps_per_call={per_call}')
  if not 0 <= config.warmup_steps <= config.num_steps:
    raise ConfigError(f'warmup_steps {config.warmup_steps} must be in [0, num_steps '
                      f'{config.num_steps}{origin}]')


def steps_for(config: ml_collections.ConfigDict, num_train: int) -> int:
  """The train steps `config` asks for: `num_epochs * steps_per_epoch(num_train, batch_size)`
  when num_epochs > 0 (it replaces num_steps), else `num_steps`.

  Args:
    config: a validated config.
    num_train: the examples of the training split.

  Raises:
    ConfigError: num_epochs > 0 and an epoch has no step (batch_size > num_train).
  """
  if not config.num_epochs:
    return config.num_steps
  per_epoch = steps_per_epoch(num_train, config.batch_size)
  if per_epoch < 1:
    raise ConfigError(f'num_epochs={config.num_epochs}: an epoch of {num_train} training '
                      f'images has no step of batch_size {config.batch_size}')
  return config.num_epochs * per_epoch


def with_resolved_steps(config: ml_collections.ConfigDict,
                        num_train: int) -> ml_collections.ConfigDict:
  """A copy of `config` whose num_steps is `steps_for(config, num_train)`, checked as
  `validate` checks num_steps: what training, its schedule, cadences, resumption and
  config.json see. `config` itself when num_epochs is 0.

  Raises:
    ConfigError: as `steps_for`; or the resolved num_steps is no multiple of
      performance.steps_per_call, or below warmup_steps.
  """
  if not config.num_epochs:
    return config
  resolved = config.copy_and_resolve_references()
  resolved.num_steps = steps_for(config, num_train)
  per_epoch = steps_per_epoch(num_train, config.batch_size)
  _validate_num_steps(resolved, f' ({config.num_epochs} epochs of {per_epoch} steps)')
  return resolved


def _validate_gon(config: ml_collections.ConfigDict, spec: models.ModelSpec) -> None:
  gon, pixels = config.gon, config.data.image_size ** 2
  check_choice('gon.inner_reduction', gon.inner_reduction, losses.INNER_REDUCTIONS)
  losses.observation_mask(gon.observe, config.data.image_size)
  if gon.num_steps < 1:
    raise ConfigError(f'gon.num_steps={gon.num_steps}: the latent needs at least 1 gradient step')
  check_choice('gon.learn_step_size', gon.learn_step_size, objectives.LEARNED_STEP_SIZES)
  learned = [f'gon.{key}' for key, off in (('learn_step_size', 'none'), ('learn_origin', False))
             if gon[key] != off]
  if learned and not issubclass(spec.objective, objectives.GON):
    gons = [name for name, other in models.MODELS.items()
            if issubclass(other.objective, objectives.GON)]
    raise ConfigError(f'{" and ".join(learned)} (a learnt inner optimisation) needs a GON '
                      f'model ({", ".join(gons)}), not {config.model.name!r}')
  for name in ('inner_points', 'outer_points'):
    if gon[name] and not spec.implicit:
      implicit = [name for name, other in models.MODELS.items() if other.implicit]
      raise ConfigError(f'gon.{name} (coordinate subsets) needs an implicit model '
                        f'({", ".join(implicit)}), not {config.model.name!r}')
    if not 0 <= gon[name] <= pixels:
      raise ConfigError(f'gon.{name}={gon[name]}: use 0 (every pixel) to {pixels}')
