"""The Model API compiles once per model and batch shape, pads small calls only to the next
power of two, and offers pure functions for the user's own jit and grad."""

import contextlib
import logging
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gon_jax.config import to_settings
from gon_jax import data
from gon_jax.coordinates import grid
from gon_jax.model import Model
from gon_jax.state import setup

from testing_utils import random_images, tiny_config, tiny_siren_model


@contextlib.contextmanager
def compilations():
  """The jitted programs lowered for XLA inside the block, as jax_log_compiles names them
  (a program found in the persistent compilation cache is lowered, and counted, too)."""
  messages = []
  handler = logging.Handler(logging.WARNING)
  handler.emit = lambda record: messages.append(record.getMessage())
  logger = logging.getLogger('jax._src.interpreters.pxla')
  previous = jax.config.jax_log_compiles
  jax.config.update('jax_log_compiles', True)
  logger.addHandler(handler)
  try:
    yield messages
  finally:
    logger.removeHandler(handler)
    jax.config.update('jax_log_compiles', previous)


@pytest.fixture(scope='module')
def conv_model(blob_dir) -> Model:
  config = tiny_config(blob_dir, norm='batch')  # 16x16x1, latent 8, BatchNorm
  _, _, state = setup(to_settings(config))
  model = Model(config, {'params': state.params, 'batch_stats': state.batch_stats})
  return model.with_gaussian(random_images(40))


def test_the_counter_sees_a_compilation():
  with compilations() as compiled:
    jax.jit(lambda x: x * 3 + 1)(np.arange(7.0))
  assert len(compiled) == 1 and 'Compiling' in compiled[0]


def test_a_second_call_on_the_same_shape_compiles_nothing(conv_model):
  images = random_images(5)
  z = conv_model.encode(images)
  calls = {'encode': lambda: conv_model.encode(images),
           'reconstruct': lambda: conv_model.reconstruct(images),
           'decode': lambda: conv_model.decode(z),
           'sample': lambda: conv_model.sample(5, 1),
           'evaluate': lambda: conv_model.evaluate(images)}
  for name, call in calls.items():
    call()
    with compilations() as compiled:
      call()
    assert not compiled, (name, compiled)
  # Other values of the same shapes, and a copy with another Gaussian, compile nothing either.
  refitted = conv_model.with_gaussian(random_images(30))
  with compilations() as compiled:
    conv_model.decode(z + 1)
    conv_model.sample(5, jax.random.key(9))
    conv_model.encode(images[::-1])
    refitted.sample(5, 2)
  assert not compiled, compiled


def test_render_compiles_once_per_shape():
  model = tiny_siren_model()
  z = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
  first = model.render(z, 12)
  with compilations() as compiled:
    second = model.render(z, 12)
  assert not compiled, compiled
  np.testing.assert_array_equal(first, second)


def test_small_calls_are_padded_to_the_next_power_of_two_only():
  sizes = []

  def fn(batch):
    sizes.append(len(batch))
    return (batch * 2, batch[:, :1])

  for n, expected in [(1, [1]), (3, [4]), (5, [8]), (32, [32]), (33, [32, 32]),
                      (70, [32, 32, 32])]:
    sizes.clear()
    doubled, first = data.in_batches(fn, np.arange(n * 2.0).reshape(n, 2), 32)
    assert sizes == expected, n
    np.testing.assert_array_equal(doubled, np.arange(n * 2.0).reshape(n, 2) * 2)
    chex.assert_shape(first, (n, 1))
  # No rows: one call on a row of zeros gives the outputs' shapes, with 0 rows.
  sizes.clear()
  doubled, first = data.in_batches(fn, np.zeros((0, 2), np.float32), 32)
  assert sizes == [1] and doubled.shape == (0, 2) and doubled.dtype == np.float32
  with pytest.raises(ValueError, match='batch_size must be a positive integer, got 0'):
    data.in_batches(fn, np.zeros((3, 2)), 0)


def test_a_small_decode_compiles_a_small_batch(conv_model):
  with compilations() as compiled:
    conv_model.decode(np.zeros((3, 8), np.float32))  # a shape no other test decodes
  assert any('float32[4,8]' in line or 'f32[4,8]' in line for line in compiled), compiled


@pytest.mark.slow
def test_the_pure_functions_work_in_jit_and_grad(conv_model):
  fns, variables = conv_model.functions, conv_model.variables
  images = data.to_float(random_images(4))
  latents = jax.jit(fns.encode)(variables, images)
  np.testing.assert_allclose(latents, conv_model.encode(random_images(4)), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(jax.jit(fns.decode)(variables, latents),
                             conv_model.decode(latents), atol=1e-5)
  assert fns.render is None and fns.generate is None  # a convolutional GON, not variational

  def loss(x):  # a reconstruction loss, through the GON's own inner gradient
    return jnp.sum((fns.reconstruct(variables, x) - x) ** 2)

  gradient = jax.jit(jax.grad(loss))(images)
  chex.assert_shape(gradient, images.shape)
  direction = np.random.default_rng(1).normal(size=images.shape).astype(np.float32)
  direction /= np.linalg.norm(direction)
  step = 1e-2
  finite_difference = (loss(images + step * direction) - loss(images - step * direction)) / (
      2 * step)
  np.testing.assert_allclose(jnp.vdot(gradient, direction), finite_difference, rtol=2e-2)
  # The gradient of a decoded image's brightness with respect to its latent.
  grad_z = jax.jit(jax.grad(lambda z: jnp.sum(fns.decode(variables, z))))(latents)
  chex.assert_shape(grad_z, latents.shape)
  assert np.all(np.isfinite(grad_z)) and np.any(grad_z != 0)


def test_the_pure_render_is_the_methods():
  model = tiny_siren_model()
  z = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
  coordinates = grid(10)
  pixels = jax.jit(model.functions.render)(model.variables, z, coordinates)
  np.testing.assert_allclose(np.clip(pixels, 0, 1).reshape(2, 10, 10, 1), model.render(z, 10),
                             atol=1e-6)


def test_the_repr_is_one_short_line(conv_model):
  text = repr(conv_model)
  assert text == ("Model(model='conv', data='mnist', latent_dim=8, image_shape=(16, 16, 1), "
                  f"parameters={conv_model.num_parameters:,}, source='')")
  assert conv_model.num_parameters == sum(np.size(p) for p in
                                          jax.tree.leaves(conv_model.variables['params']))


@pytest.mark.slow  # a fresh interpreter
def test_load_imports_neither_tensorboardx_nor_torch():
  code = ('import sys, gon_jax\n'
          'model = gon_jax.load("conv_mnist")\n'
          'model.reconstruct(model.examples[:2])\n'
          'loaded = sorted(m for m in ("torch", "tensorboardX") if m in sys.modules)\n'
          'assert not loaded, loaded\n')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
