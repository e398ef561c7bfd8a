"""Pinned: each initialiser's distribution (`model.init` 'flax' and 'pytorch'), and the
official-recipe configs."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gon_jax import config as config_lib
from gon_jax.errors import ConfigError
from gon_jax.models import make_objective
from gon_jax.models.conv import UpConv


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
  return make_objective(config).init_variables(jax.random.key(0))['params']


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


def test_every_layer_of_each_conv_family_follows_model_init():
  from configs import conv_mnist, vae_mnist  # pylint: disable=import-outside-toplevel
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
  from configs import conv_mnist  # pylint: disable=import-outside-toplevel
  config = conv_mnist.get_config()
  config.model.init = 'xavier'
  with pytest.raises(ConfigError, match="unknown model.init 'xavier'; valid: flax, pytorch"):
    config_lib.validate(config)


def test_the_official_recipe_config_is_gon_py():
  from configs import conv_mnist_official  # pylint: disable=import-outside-toplevel
  config = conv_mnist_official.get_config()
  config_lib.validate(config)
  m = config.model
  assert (m.name, m.latent_dim, m.features, m.channels, m.activation, m.norm, m.init) == (
      'conv', 32, 16, 1, 'elu', 'batch', 'pytorch')
  assert (config.batch_size, config.learning_rate, config.grad_clip_norm) == (64, 1e-4, 0.0)
  assert (config.lr_schedule, config.warmup_steps) == ('constant', 0)
  assert (config.data.name, config.data.image_size, config.num_steps) == ('mnist', 32, 3000)
  assert config.gon.inner_reduction == 'official' and config.gon.num_steps == 1
  assert config.gon.step_size == 1.0 and config.gon.z0_sigma == 0.0


def test_the_official_variational_config_is_variational_gon_py():
  from configs import vgon_mnist_official  # pylint: disable=import-outside-toplevel
  config = vgon_mnist_official.get_config()
  config_lib.validate(config)
  m = config.model
  assert (m.name, m.latent_dim, m.features, m.channels, m.activation, m.norm, m.init) == (
      'vgon', 48, 32, 1, 'elu', 'batch', 'pytorch')
  assert (m.likelihood, m.kl_weight, m.kl_warmup_steps) == ('bernoulli', 1.0, 0)
  assert (config.batch_size, config.learning_rate, config.lr_schedule) == (64, 1e-4, 'constant')
  assert (config.data.image_size, config.num_steps, config.gon.inner_reduction) == (
      32, 1500, 'official')


def test_siren_mnist_is_implicit_gon_py():
  from configs import siren_mnist  # pylint: disable=import-outside-toplevel
  config = siren_mnist.get_config()
  m = config.model
  assert (m.name, m.latent_dim, tuple(m.widths), m.channels, m.w0) == (
      'siren', 32, (256, 256, 256, 256), 1, 30.0)
  assert (config.batch_size, config.learning_rate, config.warmup_steps) == (64, 1e-4, 0)
  assert (config.data.image_size, config.gon.inner_reduction, config.gon.step_size) == (
      28, 'official', 1.0)
