"""The implicit GON: SIREN shapes, initialisation, counts, factorised layer, subsets."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gon_jax.config import to_settings
from gon_jax.coordinates import grid
from gon_jax.core import squared_error
from gon_jax.generate import fit_gaussian, render, slerp
from gon_jax.losses import observation_mask
from gon_jax.models import make_objective
from gon_jax.models.siren import SirenDecoder
from gon_jax.passes import Draws, sample_points
from gon_jax.state import init_variables

from gon_jax.configs import siren_celeba, siren_cifar10, siren_mnist, siren_mnist_shift, siren_mnist_tiny


def _count(config):
  # Shapes only: eval_shape runs no op.
  variables = jax.eval_shape(make_objective(to_settings(config)).init_variables, jax.random.key(0))
  return sum(x.size for x in jax.tree.leaves(variables['params']))


def _init(module, latent_dim):
  """Initial variables of a bare decoder module."""
  return module.init(jax.random.key(0), jnp.zeros((1, latent_dim)), use_running_average=False)


def test_parameter_counts():
  assert _count(siren_mnist_tiny.get_config()) == 36 * 32 + 32 + 3 * (32 * 32 + 32) + 33 == 4_385
  assert _count(siren_mnist.get_config()) == 206_593  # the official Implicit-GON.py model


def test_grid_spans_the_square_at_every_resolution():
  for size in (1, 28, 256):
    coordinates = grid(size)
    chex.assert_shape(coordinates, (size * size, 2))
  np.testing.assert_allclose(grid(28)[[0, -1]], [[-1, -1], [1, 1]])
  np.testing.assert_allclose(grid(3)[:3], [[-1, -1], [-1, 0], [-1, 1]])  # row-major [y, x]


def test_shapes_and_initialisation_ranges():
  model = SirenDecoder(latent_dim=10, widths=(64, 64, 64), channels=3, image_size=8)
  variables = _init(model, 10)
  params = variables['params']
  first = params['first_kernel']
  chex.assert_shape(first, (12, 64))
  assert float(jnp.abs(first).max()) <= 1 / 12 and float(jnp.abs(first).max()) > 0.9 / 12
  for name in ('Dense_0', 'Dense_1', 'Dense_2'):
    kernel = params[name]['kernel']
    bound = np.sqrt(6 / kernel.shape[0]) / 30
    assert bound * 0.9 < float(jnp.abs(kernel).max()) <= bound
  chex.assert_shape(params['Dense_2']['kernel'], (64, 3))  # the linear output layer
  z = jax.random.normal(jax.random.key(1), (5, 10))
  chex.assert_shape(model.apply(variables, z), (5, 8, 8, 3))
  chex.assert_shape(model.apply(variables, z, coordinates=grid(3)), (5, 9, 3))
  chex.assert_shape(model.apply(variables, z, coordinates=jnp.zeros((5, 7, 2))), (5, 7, 3))


def test_factorised_first_layer_equals_the_concatenated_input():
  plain = SirenDecoder(latent_dim=6, widths=(32, 32), image_size=5, factorised=False)
  fast = plain.clone(factorised=True)
  variables = _init(plain, 6)
  z = jax.random.normal(jax.random.key(1), (4, 6))
  chex.assert_trees_all_close(fast.apply(variables, z), plain.apply(variables, z), atol=1e-5)
  per_image = jax.random.uniform(jax.random.key(2), (4, 9, 2), minval=-1, maxval=1)
  chex.assert_trees_all_close(fast.apply(variables, z, coordinates=per_image),
                              plain.apply(variables, z, coordinates=per_image), atol=1e-5)


def _tiny_siren_config():
  config = siren_mnist_tiny.get_config()
  config.data.image_size = 6
  config.model.update(latent_dim=4, widths=(16, 16))
  return config


@pytest.mark.slow
def test_losses_on_all_coordinates_as_a_subset_equal_the_full_losses():
  config = _tiny_siren_config()
  objective = make_objective(to_settings(config))
  variables = init_variables(objective, jax.random.key(0))
  images = jax.random.uniform(jax.random.key(1), (3, 6, 6, 1))
  z0 = jnp.zeros((3, 4))
  everything = sample_points(jax.random.split(jax.random.key(2), 3), 36, 36)
  assert not np.array_equal(everything[0], np.arange(36))  # really shuffled
  full, full_z, full_loss, _ = objective.reconstruct(variables, images, z0, train=True)
  part, part_z, part_loss, _ = objective.reconstruct(
      variables, images, z0, draws=Draws(everything, everything), train=True)
  chex.assert_shape(part, (3, 36, 1))
  chex.assert_trees_all_close(part_z, full_z, rtol=1e-5, atol=1e-5)
  chex.assert_trees_all_close(part_loss, full_loss, rtol=1e-5)
  np.testing.assert_allclose(full_loss, squared_error(full, images), rtol=1e-6)
  # A real subset changes the latent: the option is not a no-op.
  half = everything[:, :18]
  _, half_z, _, _ = objective.reconstruct(variables, images, z0, draws=Draws(half, half),
                                          train=True)
  assert not np.allclose(half_z, full_z, rtol=1e-3)


def test_observation_masks():
  config = _tiny_siren_config()
  size = config.data.image_size
  assert observation_mask('lowres:2', size)[..., 0].sum() == 9
  assert observation_mask('hole:2', size)[..., 0].sum() == 36 - 4
  # The inner loss ignores what it does not observe: changing hidden pixels
  # leaves the latent alone.
  config.gon.observe = 'hole:2'
  objective = make_objective(to_settings(config))  # the objective keeps the config it was made with
  variables = init_variables(objective, jax.random.key(0))
  images = jax.random.uniform(jax.random.key(1), (2, 6, 6, 1))
  changed = images.at[:, 2:4, 2:4].set(0.0)
  latent = lambda objective, x: objective.reconstruct(variables, x, jnp.zeros((2, 4))).latents
  chex.assert_trees_all_close(latent(objective, changed), latent(objective, images), atol=1e-6)
  config.gon.observe = 'all'
  sees_all = make_objective(to_settings(config))
  assert not np.allclose(latent(sees_all, changed), latent(sees_all, images), atol=1e-6)


def test_render_slerp_and_gaussian():
  config = _tiny_siren_config()
  objective = make_objective(to_settings(config))
  model, variables = objective.model, init_variables(objective, jax.random.key(0))
  z = np.asarray(jax.random.normal(jax.random.key(1), (3, 4)))
  high = render(objective, variables, z, 16, batch_size=2)
  chex.assert_shape(high, (3, 16, 16, 1))
  # The corners of every grid are the same coordinates: same values.
  chex.assert_trees_all_close(high[:, 0, 0], model.apply(variables, z)[:, 0, 0], atol=1e-5)
  path = slerp(z[0], z[1], jnp.linspace(0, 1, 5))
  chex.assert_shape(path, (5, 4))
  chex.assert_trees_all_close(path[0], z[0], atol=1e-5)
  chex.assert_trees_all_close(path[-1], z[1], atol=1e-5)
  norms = np.linalg.norm(slerp(z[0] / np.linalg.norm(z[0]), z[1] / np.linalg.norm(z[1]),
                               jnp.linspace(0, 1, 5)), axis=-1)
  np.testing.assert_allclose(norms, 1.0, rtol=1e-5)  # stays on the sphere
  samples = np.random.default_rng(0).multivariate_normal([1, -2], [[2, 0.5], [0.5, 1]], 20000)
  mean, covariance = fit_gaussian(samples)
  np.testing.assert_allclose(mean, [1, -2], atol=0.05)
  np.testing.assert_allclose(covariance, [[2, 0.5], [0.5, 1]], atol=0.06)


@pytest.mark.parametrize('factory', [siren_mnist, siren_mnist_shift, siren_cifar10, siren_celeba])
def test_colour_and_grey_configs_decode_their_image_shape(factory):
  config = factory.get_config()
  objective = make_objective(to_settings(config))
  # Shapes only: eval_shape traces the decoder and runs no op.
  out = jax.eval_shape(lambda key: objective.model.apply(
      objective.init_variables(key), jnp.zeros((1, config.model.latent_dim))), jax.random.key(0))
  size = config.data.image_size
  chex.assert_shape(out, (1, size, size, config.model.channels))


def test_fast_sine_and_its_derivatives_match_jnp():
  from gon_jax.models.siren import fast_sin, sincos  # pylint: disable=import-outside-toplevel
  x = jnp.linspace(-1000.0, 1000.0, 200_001)
  sin, cos = sincos(x)
  assert float(jnp.abs(sin - jnp.sin(x)).max()) < 1e-6
  assert float(jnp.abs(cos - jnp.cos(x)).max()) < 1e-6
  d1, d2, d3 = jax.grad(fast_sin), jax.grad(jax.grad(fast_sin)), jax.grad(jax.grad(jax.grad(fast_sin)))
  for point in (0.3, -2.0, 97.5):
    np.testing.assert_allclose([d1(point), d2(point), d3(point)],
                               [np.cos(point), -np.sin(point), -np.cos(point)], atol=1e-6)


def test_fast_sine_decoder_equals_the_plain_one():
  plain = SirenDecoder(latent_dim=6, widths=(32, 32), image_size=5, fast_sine=False)
  variables = _init(plain, 6)
  z = jax.random.normal(jax.random.key(1), (4, 6))
  chex.assert_trees_all_close(plain.clone(fast_sine=True).apply(variables, z),
                              plain.apply(variables, z), atol=1e-5)


def test_flop_count_of_a_step():
  from gon_jax.flops import forward_flops, train_step_flops  # pylint: disable=import-outside-toplevel
  config = siren_mnist.get_config()
  per_image = 2 * 784 * (3 * 256 * 256 + 256)  # sine layers after the first, and the output
  first = 2 * 784 * 2 * 256 + 64 * 2 * 32 * 256  # coordinates once, latents once per image
  assert forward_flops(to_settings(config), 64) == 64 * per_image + first
  assert train_step_flops(to_settings(config)) == 9 * forward_flops(to_settings(config), 64)
  config.gon.inner_points = config.gon.outer_points = 196
  assert train_step_flops(to_settings(config)) == 9 * forward_flops(to_settings(config), 64, 196)
