"""Pinned: each initialiser's distribution (`model.init` 'flax' and 'pytorch'), and the
official-recipe configs."""

import functools
import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gon_jax.config import to_settings
from gon_jax import config as config_lib
from gon_jax.errors import ConfigError
from gon_jax.models import make_objective
from gon_jax.models.conv import UpConv
from gon_jax.state import init_variables


def _uniform_like(values: np.ndarray, bound: float) -> None:
  """Values look like U(-bound, bound): inside it, reaching near its ends, with its mean
  and std (tolerances of about 5 standard errors for n values: each check fails by
  chance with probability below 1e-5)."""
  values = np.ravel(values)
  n, std = values.size, bound / math.sqrt(3)
  assert np.all(np.abs(values) <= bound)
  assert np.max(np.abs(values)) > (1 - 12 / n) * bound  # P(all below) = (1 - 12/n)^n < 1e-5
  np.testing.assert_allclose(np.std(values), std, rtol=5 * math.sqrt(0.2 / n))
  assert abs(np.mean(values)) < 5 * std / math.sqrt(n)


def _params(config):
  return init_variables(make_objective(to_settings(config)), jax.random.key(0))['params']


@pytest.mark.parametrize('first', [True, False])
def test_upconv_pytorch_init_is_conv_transpose2ds_default(first):
  # torch.nn.ConvTranspose2d(in, out, 4): weight [in, out, 4, 4], so PyTorch's
  # fan_in is out * 16; kaiming_uniform(a=sqrt(5)) and the bias: U(+-1/sqrt(fan_in)).
  c_in, c_out = 48, 64
  x = jnp.zeros((1, c_in) if first else (1, 4, 4, c_in))
  params = UpConv(c_out, first=first, param_init='pytorch').init(jax.random.key(1), x)['params']
  assert params['kernel'].shape == (4, 4, c_in, c_out) and params['bias'].shape == (c_out,)
  bound = 1 / math.sqrt(c_out * 16)
  _uniform_like(params['kernel'], bound)
  _uniform_like(params['bias'], bound)


def test_upconv_flax_init_is_lecun_normal_with_zero_biases():
  c_in, c_out = 48, 64
  params = UpConv(c_out, param_init='flax').init(jax.random.key(1), jnp.zeros((1, 4, 4, c_in)))
  kernel, bias = params['params']['kernel'], params['params']['bias']
  std = 1 / math.sqrt(16 * c_in)  # flax's fan_in of a kernel [4, 4, in, out]: 16 in
  np.testing.assert_allclose(np.std(kernel), std, rtol=0.02)
  # A normal truncated at 2 of its own standard deviations, rescaled to std.
  assert np.max(np.abs(kernel)) <= 2 * std / 0.87962566 * 1.0001
  np.testing.assert_array_equal(bias, 0.0)


@pytest.mark.slow
def test_every_layer_of_each_conv_family_follows_model_init():
  from gon_jax.configs import conv_mnist, vae_mnist  # pylint: disable=import-outside-toplevel
  config = vae_mnist.get_config()  # decoder, encoder and the stochastic layer's Dense
  params = _params(config)
  _uniform_like(params['mu']['kernel'], 1 / math.sqrt(48))  # Linear(48, 48)
  _uniform_like(params['logvar']['bias'], 1 / math.sqrt(48))
  _uniform_like(params['decoder']['UpConv_1']['kernel'], 1 / math.sqrt(64 * 16))
  _uniform_like(params['encoder']['Conv_1']['kernel'], 1 / math.sqrt(32 * 16))  # Conv2d(32, 64)
  _uniform_like(params['encoder']['Conv_3']['bias'], 1 / math.sqrt(128 * 16))  # Conv2d(128, 48)
  assert np.all(params['decoder']['GroupNorm_0']['scale'] == 1.0)  # norms: PyTorch's defaults too
  config = conv_mnist.get_config()  # the default
  _uniform_like(_params(config)['UpConv_2']['kernel'], 1 / math.sqrt(16 * 16))
  config.model.init = 'flax'
  np.testing.assert_array_equal(_params(config)['UpConv_2']['bias'], 0.0)


def test_unknown_init_is_a_config_error():
  from gon_jax.configs import conv_mnist  # pylint: disable=import-outside-toplevel
  config = conv_mnist.get_config()
  config.model.init = 'xavier'
  with pytest.raises(ConfigError, match="unknown model.init 'xavier'; valid: flax, pytorch"):
    config_lib.validate(config)


# The official scripts' recipes (cwkx/GON), as each config must keep them.
_RECIPE = {'batch_size': 64, 'learning_rate': 1e-4, 'lr_schedule': 'constant', 'warmup_steps': 0,
           'grad_clip_norm': 0.0, 'data.name': 'mnist', 'gon.num_steps': 1,
           'gon.step_size': 1.0, 'gon.z0_sigma': 0.0, 'gon.inner_reduction': 'official'}
OFFICIAL = {
    'conv_mnist_official': {  # GON.py
        **_RECIPE, 'model.name': 'conv', 'model.latent_dim': 32, 'model.features': 16,
        'model.activation': 'elu', 'model.norm': 'batch', 'model.init': 'pytorch',
        'data.image_size': 32, 'num_steps': 3000},
    'vgon_mnist_official': {  # Variational-GON.py
        **_RECIPE, 'model.name': 'vgon', 'model.latent_dim': 48, 'model.features': 32,
        'model.activation': 'elu', 'model.norm': 'batch', 'model.init': 'pytorch',
        'model.likelihood': 'bernoulli', 'model.kl_weight': 1.0, 'model.kl_warmup_steps': 0,
        'data.image_size': 32, 'num_steps': 1500},
    'siren_mnist': {  # Implicit-GON.py
        **_RECIPE, 'model.name': 'siren', 'model.latent_dim': 32,
        'model.widths': (256, 256, 256, 256), 'model.w0': 30.0, 'data.image_size': 28},
}


@pytest.mark.parametrize('name', OFFICIAL)
def test_the_official_recipe_configs_keep_the_official_recipe(name):
  config = importlib.import_module(f'gon_jax.configs.{name}').get_config()
  config_lib.validate(config)
  for key, value in OFFICIAL[name].items():
    actual = functools.reduce(getattr, key.split('.'), config)
    assert (tuple(actual) if isinstance(actual, tuple | list) else actual) == value, key
