"""The methods of the paper's comparisons and their recipes: each method is a packaged config
(gon_jax/configs) with a few changes (METHODS), grouped into the paper's table and ablations
(TABLE_1, ABLATIONS); RECIPES change every method alike; `run_config` makes one run's config."""

import importlib
import os

import ml_collections

from gon_jax import data
from gon_jax.config import steps_for, to_settings, validate
from gon_jax.errors import ConfigError
from gon_jax.flag_parsing import PACKAGED_CONFIGS

_TEN_STEPS = {'gon.num_steps': 10, 'gon.step_size': 0.1}  # 0.1 as in Nijkamp et al.
# name -> (config in configs/, overrides, description)
METHODS: dict[str, tuple[str, dict, str]] = {
    'gon': ('conv_mnist', {}, 'GON, one gradient step'),
    'ae': ('ae_mnist', {}, 'autoencoder, mirrored encoder'),
    'tied_ae': ('tied_ae_mnist', {}, 'autoencoder, tied weights'),
    'glo': ('glo_mnist', {}, 'GLO (test latents: glo.test_steps Adam steps)'),
    'detach_1': ('conv_mnist', {'gon.detach': True}, 'GON, latent detached'),
    'detach_10': ('conv_mnist', {'gon.detach': True, **_TEN_STEPS},
                  'GON, 10 steps of 0.1, detached'),
    'steps_10': ('conv_mnist', _TEN_STEPS, 'GON, 10 steps of 0.1'),
}
# Fig. 2b's other step counts, with the 10 steps' step size (the paper gives none).
METHODS.update({
    'steps_2': ('conv_mnist', {'gon.num_steps': 2, 'gon.step_size': 0.1}, 'GON, 2 steps of 0.1'),
    'steps_8': ('conv_mnist', {'gon.num_steps': 8, 'gon.step_size': 0.1}, 'GON, 8 steps of 0.1'),
    'detach_25': ('conv_mnist', {'gon.detach': True, 'gon.num_steps': 25, 'gon.step_size': 0.1},
                  'GON, 25 steps of 0.1, detached'),
})
ACTIVATIONS = ('sin', 'relu', 'leaky_relu', 'tanh', 'elu', 'softplus', 'swish')
METHODS.update({f'gon_{a}': ('conv_mnist', {'model.activation': a}, f'GON, {a}')
                for a in ACTIVATIONS})
SIGMAS = (0.01, 0.1, 1.0)
METHODS.update({f'gon_sigma{s:g}': ('conv_mnist', {'gon.z0_sigma': s, 'gon.start_from_z0': False},
                                    f'z = -grad, z0 ~ N(0, {s:g}^2)') for s in SIGMAS})
METHODS.update({f'gon_sigma{s:g}_step': ('conv_mnist', {'gon.z0_sigma': s},
                                         f'z = z0 - grad, z0 ~ N(0, {s:g}^2)') for s in SIGMAS})
# The recipe study: the defaults (PyTorch's init, Adam 1e-3) against flax's
# init and the official learning rate 1e-4, with each norm.
_OFFICIAL_LR = {'learning_rate': 1e-4}
METHODS.update({
    'gon_flax_init': ('conv_mnist', {'model.init': 'flax'}, "GON, flax's initialisation"),
    'gon_lr1e-4': ('conv_mnist', _OFFICIAL_LR, 'GON, Adam 1e-4'),
    'gon_flax_init_lr1e-4': ('conv_mnist', {'model.init': 'flax', **_OFFICIAL_LR},
                             "GON, flax's initialisation, Adam 1e-4"),
    'gon_batchnorm': ('conv_mnist_batchnorm', {}, 'GON, BatchNorm'),
    'gon_batchnorm_flax_init': ('conv_mnist_batchnorm', {'model.init': 'flax'},
                                "GON, BatchNorm, flax's initialisation"),
    'gon_batchnorm_lr1e-4': ('conv_mnist_batchnorm', _OFFICIAL_LR, 'GON, BatchNorm, Adam 1e-4'),
    'gon_batchnorm_flax_init_lr1e-4': ('conv_mnist_batchnorm',
                                       {'model.init': 'flax', **_OFFICIAL_LR},
                                       "GON, BatchNorm, flax's initialisation, Adam 1e-4"),
    'gon_groupnorm': ('conv_mnist', {'model.norm': 'group'}, 'GON, GroupNorm (8 groups)'),
    'gon_no_norm': ('conv_mnist', {'model.norm': 'none'}, 'GON, no normalisation'),
    'gon_official_inner': ('conv_mnist', {'gon.inner_reduction': 'official'},
                           "GON, GON.py's inner-loss scale"),
    'gon_classifier': ('gon_classifier_mnist', {}, 'GON classifier, Eq. 13'),
})
# Implicit GONs beyond the paper, on siren_mnist_tiny's SIREN.
_SIREN = 'siren_mnist_tiny'
_FILM, _FOURIER = {'model.conditioning': 'film'}, {'model.encoding': 'fourier'}
_LEARNT_STEP = {'gon.learn_step_size': 'per_dimension'}
METHODS.update({
    'siren': (_SIREN, {}, 'implicit GON, latent concatenated'),
    'siren_shift': (_SIREN, {'model.conditioning': 'shift'}, 'shift modulations'),
    'siren_film': (_SIREN, _FILM, 'FiLM modulations'),
    'siren_fourier': (_SIREN, _FOURIER, 'Fourier features'),
    'siren_film_fourier': (_SIREN, {**_FILM, **_FOURIER}, 'FiLM and Fourier features'),
    'siren_learnt_step': (_SIREN, _LEARNT_STEP, 'step size learnt per latent dimension'),
    'siren_steps_3': (_SIREN, {'gon.num_steps': 3}, '3 inner steps'),
    'siren_steps_3_learnt': (_SIREN, {'gon.num_steps': 3, **_LEARNT_STEP},
                             '3 inner steps, step size learnt'),
})
TABLE_1 = ('gon', 'ae', 'tied_ae', 'glo', 'detach_1', 'detach_10', 'steps_10')
ABLATIONS = {
    # conv_mnist's activation is ELU: `gon` is the ELU row, not a second run of it
    'activation': tuple('gon' if a == 'elu' else f'gon_{a}' for a in ACTIVATIONS),
    # Fig. 2b: one step against several, joint or detached.
    'inner_steps': ('gon', 'detach_1', 'steps_2', 'steps_8', 'steps_10', 'detach_10', 'detach_25'),
    'z0_sigma': ('gon', *(f'gon_sigma{s:g}' for s in SIGMAS),
                 *(f'gon_sigma{s:g}_step' for s in SIGMAS)),
    'norm': ('gon', 'gon_batchnorm', 'gon_groupnorm', 'gon_no_norm', 'gon_official_inner'),
    'classifier': ('gon', 'gon_classifier'),
    'implicit': ('siren', 'siren_shift', 'siren_film', 'siren_fourier', 'siren_film_fourier',
                 'siren_learnt_step', 'siren_steps_3', 'siren_steps_3_learnt'),
    'init': ('gon', 'gon_flax_init', 'gon_lr1e-4', 'gon_flax_init_lr1e-4', 'gon_batchnorm',
             'gon_batchnorm_flax_init', 'gon_batchnorm_lr1e-4', 'gon_batchnorm_flax_init_lr1e-4'),
}
# --recipe: changes to every method's config, under the method's own (gon_no_norm stays
# without a norm). 'paper': the paper's networks all use BatchNorm, with Adam at 1e-4 and the
# official scripts' inner loss reduction.
RECIPES = {
    'default': {},
    'paper': {'model.norm': 'batch', 'learning_rate': 1e-4, 'gon.inner_reduction': 'official'},
}


def _load_config(name: str) -> ml_collections.ConfigDict:
  """`get_config()` of the packaged config `name` (gon_jax/configs/<name>.py)."""
  return importlib.import_module(f'gon_jax.configs.{name}').get_config()


def _config_exists(name: str) -> bool:
  return os.path.isfile(os.path.join(PACKAGED_CONFIGS, f'{name}.py'))


def config_name(name: str, dataset: str) -> str:
  """The packaged config a method's `name` (an MNIST config) stands for on `dataset`: for
  cifar10, the name with 'mnist' as 'cifar10' where configs/ has it (ae_mnist ->
  ae_cifar10: the same method for 3 channels), else `name` itself."""
  if dataset == 'cifar10' and 'mnist' in name:
    candidate = name.replace('mnist', 'cifar10')
    if _config_exists(candidate):
      return candidate
  return name


def run_config(method: str, dataset: str, seed: int, steps: int | None, data_source: str,
               data_dir: str, overrides: dict, *, epochs: int = 0, num_train: int = 0,
               recipe: str = 'default') -> ml_collections.ConfigDict:
  """The config of one run: the method's recipe on `dataset`, trained `steps` steps, or with
  `epochs` > 0 that many epochs (num_epochs) of the `num_train` training images.

  Changes apply in this order, a later one winning: `RECIPES[recipe]`, the method's,
  `overrides`; then the run's seed, data and length. The run evaluates at its end and logs
  100 times; it checkpoints at its end, and in epochs also at every epoch's end (to the
  multiple of steps_per_call below it), so that a long run killed midway resumes from its last
  epoch rather than from step 0.

  Raises:
    ConfigError: an unknown method or override, or a config that does not validate.
  """
  config = method_config(method, dataset, seed, data_source, data_dir, overrides, recipe)
  _update(config, {'num_epochs': epochs}, method)
  steps = steps_for(config, num_train) if epochs else steps
  checkpoint_every = steps
  if epochs:
    per_call = config.performance.steps_per_call
    checkpoint_every = max(per_call, data.steps_per_epoch(num_train, config.batch_size)
                           // per_call * per_call)
  _update(config, {'num_steps': steps, 'eval_every': steps, 'checkpoint_every': checkpoint_every,
                   'log_every': max(1, steps // 100)}, method)
  validate(config)  # every run's config, before any of them trains
  return config


def method_config(method: str, dataset: str, seed: int, data_source: str, data_dir: str,
                   overrides: dict, recipe: str) -> ml_collections.ConfigDict:
  """`run_config`'s config before its length is set: the recipe's, the method's and
  `overrides`' changes, the seed and the data; locked, not validated."""
  if method not in METHODS:
    raise ConfigError(f'unknown method {method!r}; valid: {", ".join(METHODS)}')
  name, method_overrides, _ = METHODS[method]
  config = _load_config(config_name(name, dataset))
  config.lock()  # an unknown key is an error, not a new entry
  _update(config, {**RECIPES[recipe], **method_overrides, **overrides, 'seed': seed,
                   'data.name': dataset, 'data.source': data_source, 'data.dir': data_dir,
                   'train_eval_examples': -1}, method)
  return config


def _update(config: ml_collections.ConfigDict, changes: dict, method: str) -> None:
  for key, value in changes.items():
    try:
      config.update_from_flattened_dict({key: value})
    except KeyError:
      raise ConfigError(f'unknown config key {key!r} (method {method})') from None
    except TypeError as err:
      raise ConfigError(f'{key}={value!r}: {str(err).splitlines()[0]}') from None


def train_size(config: ml_collections.ConfigDict) -> int:
  """The training images of `config.data`, loaded as training loads them (once more)."""
  images_, _ = data.load_split(to_settings(config).data, 'train', config.data.image_size,
                               config.model.channels)
  return len(images_)
