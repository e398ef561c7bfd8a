"""The convolutional decoder: shapes, parameter counts, BatchNorm at the origin."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gon_jax.config import to_settings, validate
from gon_jax.errors import ConfigError
from gon_jax.models import make_objective
from gon_jax.models.conv import ACTIVATIONS, ConvDecoder, UpConv, transposed_conv
from gon_jax.state import init_variables

from gon_jax.configs import conv_mnist
import testing_utils


def _num_params(variables):
  return sum(x.size for x in jax.tree.leaves(variables['params']))


def _init(module, latent_dim, key=jax.random.key(0)):
  """Initial variables of a bare decoder module."""
  return module.init(key, jnp.zeros((1, latent_dim)), use_running_average=False)


@pytest.mark.parametrize('norm', ['batch', 'layer', 'group'])
def test_official_parameter_count(norm):
  # GON.py with nz=32, ngf=16, nc=1 has 74,321 parameters. Shapes only: eval_shape runs no op.
  variables = jax.eval_shape(functools.partial(_init, ConvDecoder(norm=norm), 32))
  assert _num_params(variables) == 74_321


@pytest.mark.parametrize('image_size,channels', [
    (8, 1), pytest.param(32, 3, marks=pytest.mark.slow), pytest.param(64, 3, marks=pytest.mark.slow)])
def test_output_shape_and_range(image_size, channels):
  model = ConvDecoder(latent_dim=6, features=8, channels=channels, image_size=image_size,
                      activation='sin')
  variables = _init(model, 6)
  out = model.apply(variables, 3.0 * jnp.ones((2, 6)), use_running_average=True)
  chex.assert_shape(out, (2, image_size, image_size, channels))
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_config_errors_name_the_valid_choices():
  config = conv_mnist.get_config()
  validate(config)  # the recipe itself is valid
  config.model.activation = 'gelu'
  with pytest.raises(ConfigError, match='valid: elu'):
    validate(config)
  config = conv_mnist.get_config()
  config.performance.conv_method = 'fft'
  with pytest.raises(ConfigError, match='valid: matmul, conv'):
    validate(config)
  config = conv_mnist.get_config()
  config.data.image_size = 28
  with pytest.raises(ConfigError, match='image size 28'):
    validate(config)
  assert set(ACTIVATIONS) == {'elu', 'relu', 'leaky_relu', 'tanh', 'softplus', 'swish', 'sin'}


def _trained_batchnorm_stats(variables):
  """Running statistics as after some training: away from the (0, 1) of init."""
  stats = jax.tree.map(lambda s: s + 0.3 * jnp.ones_like(s), variables['batch_stats'])
  return {'params': variables['params'], 'batch_stats': stats}


def _small_config(norm):
  config = conv_mnist.get_config()
  config.model.update(norm=norm, features=4, latent_dim=8)
  config.data.image_size = 16
  return config


@pytest.mark.slow
@pytest.mark.parametrize('norm', ['batch', 'layer'])
def test_encoding_one_image_alone_equals_encoding_it_in_a_batch(norm):
  config = _small_config(norm)
  objective = make_objective(to_settings(config))
  variables = init_variables(objective, jax.random.key(0))
  if norm == 'batch':
    variables = _trained_batchnorm_stats(variables)
  images = jax.random.uniform(jax.random.key(1), (6, 16, 16, 1))
  encode = jax.jit(lambda x, z0, train: objective.reconstruct(variables, x, z0, train=train),
                   static_argnums=2)
  for train in (False, True):
    batch_recon, batch_z, _, _ = encode(images, jnp.zeros((6, 8)), train)
    alone_recon, alone_z, _, _ = encode(images[2:3], jnp.zeros((1, 8)), False)
    # The latent never sees the batch (inner pass on running averages), in
    # training too; the evaluation reconstruction does not either.
    chex.assert_trees_all_close(alone_z, batch_z[2:3], rtol=1e-4, atol=1e-4)
    if not train:
      chex.assert_trees_all_close(alone_recon, batch_recon[2:3], atol=1e-5)


@pytest.mark.slow
def test_batchnorm_training_pass_updates_running_statistics():
  config = _small_config('batch')
  objective = make_objective(to_settings(config))
  variables = init_variables(objective, jax.random.key(0))
  images = jax.random.uniform(jax.random.key(1), (4, 16, 16, 1))
  _, _, _, new_stats = objective.reconstruct(variables, images, jnp.zeros((4, 8)), train=True)
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), new_stats, variables['batch_stats'])
  assert all(jax.tree.leaves(changed))


def test_transposed_convolution_matches_pytorch_semantics():
  # ConvTranspose2d(k=4, s=2, p=1) scatters x[i] * w[t] to output 2i - 1 + t.
  x = jax.random.normal(jax.random.key(0), (2, 3, 3, 2))
  plain = UpConv(5)
  variables = plain.init(jax.random.key(1), x)
  kernel = np.asarray(variables['params']['kernel'])
  bias = np.asarray(variables['params']['bias'])  # PyTorch's init: not zero
  expected = np.zeros((2, 8, 8, 5), np.float32) + bias  # padded by 1 on each side
  for i in range(3):
    for j in range(3):
      expected[:, 2 * i:2 * i + 4, 2 * j:2 * j + 4] += np.einsum('bc,yxco->byxo', x[:, i, j], kernel)
  out = plain.apply(variables, x)
  chex.assert_trees_all_close(out, expected[:, 1:7, 1:7], atol=1e-5)
  chex.assert_trees_all_close(UpConv(5, method='conv').apply(variables, x), out, atol=1e-5)
  first = UpConv(5, first=True)
  z = jax.random.normal(jax.random.key(2), (2, 2))
  chex.assert_trees_all_close(first.apply(variables, z),
                              np.einsum('bc,yxco->byxo', z, kernel) + bias, atol=1e-5)


# Both of matmul_conv's forms (narrow, wide c_out). Order 0 is the GON's own (the gradient of a
# loss of an inner gradient); the orders above compile for a minute: the full suite's.
@pytest.mark.parametrize('c_out,orders', [
    (1, 1), pytest.param(9, 1, marks=pytest.mark.slow), pytest.param(1, 3, marks=pytest.mark.slow),
    pytest.param(9, 3, marks=pytest.mark.slow)])
def test_matmul_transposed_convolution_derivatives_of_every_order(c_out, orders):
  # Its derivatives are custom VJPs: first, second and third order against the dilated
  # convolution's (in float64, where both are exact to rounding), and the batched VJP of the
  # shared origin (jax.vmap over output errors).
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)  # numpy's draws: jax.random's compile for seconds in x64
    x, kernel, target = (jnp.asarray(rng.standard_normal(shape)) for shape in
                         ((2, 4, 4, 3), (4, 4, 3, c_out), (2, 8, 8, c_out)))

    def gon_like(method, kernel):  # an inner gradient, then a loss of it
      inner = lambda x: jnp.sum(jnp.tanh(transposed_conv(x, kernel, False, method)) * target)
      g = jax.grad(inner)(x)
      return jnp.sum(jnp.sin(transposed_conv(g, kernel, False, method)) * target) + jnp.sum(g ** 3)

    for order in range(orders):
      fns = {m: functools.partial(gon_like, m) for m in ('matmul', 'conv')}
      for _ in range(order):
        fns = {m: (lambda f: lambda k: jnp.sum(jax.grad(f)(k) ** 2))(f) for m, f in fns.items()}
      # Jitted: one compilation, not one per operation of an eager trace.
      chex.assert_trees_all_close(jax.jit(jax.grad(fns['matmul']))(kernel),
                                  jax.jit(jax.grad(fns['conv']))(kernel), rtol=1e-9)
    errors = jnp.broadcast_to(target[:, None], (2, 1, 8, 8, c_out))
    vjps = {m: jax.vjp(lambda v, m=m: transposed_conv(v, kernel, False, m), x[:1])[1]
            for m in ('matmul', 'conv')}
    chex.assert_trees_all_close(jax.vmap(vjps['matmul'])(errors), jax.vmap(vjps['conv'])(errors),
                                rtol=1e-9)


@pytest.mark.slow
def test_matmul_transposed_convolutions_give_the_gon_step_of_the_plain_ones():
  # The fast path (matrix product + overlap-add) against the dilated
  # convolution, through the GON's second-order gradient.
  from gon_jax.core import origin_latent, squared_error  # pylint: disable=import-outside-toplevel
  images = jax.random.uniform(jax.random.key(0), (3, 16, 16, 2))

  def gon_loss_and_grads(method):
    model = ConvDecoder(latent_dim=6, features=4, channels=2, image_size=16, norm='layer',
                        conv_method=method)
    params = model.init(jax.random.key(1), jnp.zeros((1, 6)), True)['params']

    def loss(params):
      decode = lambda z: model.apply({'params': params}, z, True)
      z = origin_latent(decode, images, jnp.zeros((3, 6)), squared_error)
      return jnp.mean(squared_error(decode(z), images))
    return jax.value_and_grad(loss)(params)

  plain, fast = gon_loss_and_grads('conv'), gon_loss_and_grads('matmul')
  chex.assert_trees_all_close(fast, plain, rtol=1e-4, atol=1e-5)
  assert plain[0] > 0


def test_official_inner_loss_scales():
  from gon_jax.losses import inner_loss_scale as scale  # pylint: disable=import-outside-toplevel
  from gon_jax.models import get_spec  # pylint: disable=import-outside-toplevel
  from gon_jax.configs import siren_mnist, vgon_mnist  # pylint: disable=import-outside-toplevel

  def inner_loss_scale(config):  # as the GON objective computes it from its config
    return scale(config.gon.inner_reduction, config.batch_size, config.data.image_size ** 2,
                 get_spec(config.model.name).official_average(to_settings(config)))

  config = conv_mnist.get_config()
  assert inner_loss_scale(config) == 1.0
  config.gon.inner_reduction = 'official'
  assert inner_loss_scale(config) == 1 / (64 * 32 * 32)  # GON.py: mean over batch, pixels
  assert inner_loss_scale(siren_mnist.get_config()) == 1 / 64  # Implicit-GON.py
  assert inner_loss_scale(vgon_mnist.get_config()) == 1 / 64  # Variational-GON.py


@pytest.mark.slow
def test_autoencoder_baseline_has_the_gon_decoder_and_twice_its_parameters(blob_dir):
  from gon_jax.configs import ae_mnist  # pylint: disable=import-outside-toplevel
  from testing_utils import run_steps  # pylint: disable=import-outside-toplevel
  config = ae_mnist.get_config()
  variables = jax.eval_shape(make_objective(to_settings(config)).init_variables, jax.random.key(0))
  decoder = {k: v for k, v in variables['params'].items() if k != 'ConvEncoder_0'}
  assert sum(x.size for x in jax.tree.leaves(decoder)) == 74_321
  assert sum(x.size for x in jax.tree.leaves(variables['params'])) == 148_673
  config.data.update(source='idx', dir=str(blob_dir), image_size=16)
  config.model.update(latent_dim=8, features=4)
  config.update(batch_size=16, learning_rate=3e-3)
  _, losses = run_steps(config, num_steps=20)
  assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])


@pytest.mark.parametrize('side,kernels', [
    (1, [(32, 64), (64, 32), (32, 16), (16, 1)]),  # GON.py: 1x1 -> 4x4 -> 8 -> 16 -> 32
    (2, [(8, 64), (64, 32), (32, 16), (16, 1)]),  # 2x2x8 -> 4x4: a stride-2 first layer
    (4, [(2, 32), (32, 16), (16, 1)]),  # 4x4x2 -> 8x8: the 4x4 layer is dropped
])
def test_a_spatial_latent_drops_the_first_layers_and_keeps_the_widths(side, kernels):
  from gon_jax.models.autoencoders import Autoencoder  # pylint: disable=import-outside-toplevel
  model = Autoencoder(latent_dim=32, features=16, image_size=32, norm='layer', latent_side=side)

  def encode_decode(module, images):
    return module(module.encode(images, True), True), module.encode(images, True)

  variables = model.init(jax.random.key(0), jnp.zeros((2, 32, 32, 1)), method=encode_decode)
  decoder = {k: v['kernel'].shape for k, v in variables['params'].items() if 'UpConv' in k}
  assert decoder == {f'UpConv_{i}': (4, 4, *io) for i, io in enumerate(kernels)}
  images = jax.random.uniform(jax.random.key(1), (2, 32, 32, 1))
  decoded, latents = model.apply(variables, images, method=encode_decode)
  chex.assert_shape(latents, (2, 32))
  chex.assert_shape(decoded, (2, 32, 32, 1))
  # The encoder mirrors the decoder: its last convolution makes the latent image.
  encoder = variables['params']['ConvEncoder_0']
  assert encoder[f'Conv_{len(kernels) - 1}']['kernel'].shape == (4, 4, kernels[0][1], kernels[0][0])


def test_a_spatial_latent_is_read_row_major_with_channels_last():
  # Only the latent's pixel (row 1, column 0) set: the first layer (stride 2, padding 1) puts
  # input row i on output rows 2i - 1 .. 2i + 2, so that pixel alone moves rows 1..3 and
  # columns 0..2 of the 4x4 output away from the bias (column-major would be the transpose).
  model = ConvDecoder(latent_dim=8, features=2, image_size=16, norm='none', latent_side=2)
  variables = _init(model, 8)
  z = jnp.zeros((1, 8)).at[0, 4:6].set(1.0)  # pixel (1, 0) of a 2x2x2 image
  first = model.apply(variables, z, True, capture_intermediates=lambda m, _: 'UpConv_0' in m.path)
  out = first[1]['intermediates']['UpConv_0']['__call__'][0]
  bias = variables['params']['UpConv_0']['bias']
  touched = np.argwhere(np.any(np.abs(np.asarray(out[0] - bias)) > 0, axis=-1))
  assert (touched[:, 0].min(), touched[:, 0].max()) == (1, 3)
  assert (touched[:, 1].min(), touched[:, 1].max()) == (0, 2)


def test_latent_side_errors_name_what_fits():
  config = conv_mnist.get_config()
  config.model.latent_side = 2
  assert validate(config).model['latent_side'] == 2
  for side, latent_dim, message in ((3, 32, 'is 1, 2, 4, 8 pixels a side'),
                                    (16, 32, 'is 1, 2, 4, 8 pixels a side'),
                                    (4, 24, 'latent_dim 24 is not a whole number of channels')):
    config.model.latent_side, config.model.latent_dim = side, latent_dim
    with pytest.raises(ConfigError, match=message):
      validate(config)


def test_forward_flops_of_a_spatial_latent():
  from gon_jax.flops import forward_flops  # pylint: disable=import-outside-toplevel
  config = conv_mnist.get_config()
  config.model.latent_side = 4  # 4x4x2 -> 8x8x32 -> 16x16x16 -> 32x32x1, 16 taps per input pixel
  per_image = 2 * 16 * (16 * 2 * 32 + 64 * 32 * 16 + 256 * 16 * 1)
  assert forward_flops(to_settings(config), 8) == 8 * per_image


@pytest.mark.parametrize('model', ['conv', 'ae', 'tied_ae'])
def test_each_conv_family_learns_with_a_spatial_latent(blob_dir, model):
  config = testing_utils.tiny_config(blob_dir, norm='layer')  # 16x16, latent 8: 2x2x2
  config.model.name, config.model.latent_side = model, 2
  _, losses = testing_utils.run_steps(config, num_steps=8)
  assert losses[-1] < 0.8 * losses[0], losses
