"""Variational GON and the VAE baseline: counts, ELBO terms, bits/dim, sampling."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gon_jax.config import to_settings
from gon_jax import data
from gon_jax.evaluate import make_evaluator
from gon_jax.losses import (binary_cross_entropy, bits_per_dim, gaussian_nll,
                            kl_to_standard_normal, negative_elbo)
from gon_jax.models import make_objective

from testing_utils import run_steps

from gon_jax.configs import vae_mnist, vgon_celeba, vgon_mnist


def _count(config):
  # Shapes only: eval_shape runs no op.
  variables = jax.eval_shape(make_objective(to_settings(config)).init_variables, jax.random.key(0))
  return sum(x.size for x in jax.tree.leaves(variables['params']))


def test_parameter_counts():
  assert _count(vgon_mnist.get_config()) == 268_033  # the official Variational-GON.py
  vae = _count(vae_mnist.get_config())
  assert 1.8 * 268_033 < vae < 2.2 * 268_033  # the encoder mirrors the decoder


@pytest.mark.slow
def test_shapes_and_sampler_range():
  config = vgon_celeba.get_config()
  objective = make_objective(to_settings(config))
  # Jitted: one compilation each, not one per operation of an eager 64x64 decoder.
  model, variables = objective.model, jax.jit(objective.init_variables)(jax.random.key(0))
  assert config.model.latent_dim == 48
  decoded, mu, logvar = jax.eval_shape(
      lambda z: model.apply(variables, z, True, noise=jnp.ones((2, 48))), jnp.ones((2, 48)))
  chex.assert_shape(decoded, (2, 64, 64, 3))
  chex.assert_shape([mu, logvar], [(2, 48), (2, 48)])
  samples = jax.jit(lambda z: model.apply(variables, z, True, method='generate'))(
      5 * jax.random.normal(jax.random.key(1), (16, 48)))
  chex.assert_shape(samples, (16, 64, 64, 3))
  assert float(samples.min()) >= 0.0 and float(samples.max()) <= 1.0
  vae_objective = make_objective(to_settings(vae_mnist.get_config()))
  vae, vae_vars = vae_objective.model, jax.eval_shape(vae_objective.init_variables,
                                                      jax.random.key(0))
  chex.assert_shape(jax.eval_shape(lambda v, x: vae.apply(v, x, True, method='encode'),
                                   vae_vars, jnp.ones((3, 32, 32, 1))), (3, 48))


def test_kl_matches_closed_form():
  mu, sigma = np.array([[1.0, -0.5]]), np.array([[2.0, 0.3]])
  expected = np.sum(0.5 * (sigma ** 2 + mu ** 2 - 1 - np.log(sigma ** 2)))
  np.testing.assert_allclose(kl_to_standard_normal(mu, np.log(sigma ** 2)), [expected], rtol=1e-5)
  np.testing.assert_allclose(kl_to_standard_normal(jnp.zeros((1, 3)), jnp.zeros((1, 3))), [0.0])


def test_bits_per_dim_of_known_likelihoods():
  # A fair coin per binary pixel value costs exactly one bit.
  images = jnp.asarray(np.random.default_rng(0).integers(0, 2, (4, 8, 8, 1)), jnp.float32)
  nats = binary_cross_entropy(jnp.full_like(images, 0.5), images)
  np.testing.assert_allclose(bits_per_dim(nats, 64), 1.0, rtol=1e-6)
  # A unit Gaussian at zero error: 0.5 log(2 pi) nats per value.
  nll = gaussian_nll(jnp.zeros((1, 10)), jnp.zeros((1, 10)), 1.0)
  np.testing.assert_allclose(nll, [5 * math.log(2 * math.pi)], rtol=1e-6)
  outputs = (jnp.full_like(images, 0.5), jnp.ones((4, 2)), jnp.zeros((4, 2)))
  np.testing.assert_allclose(negative_elbo(outputs, images, kl_weight=0.5),
                             nats + 0.5 * 1.0, rtol=1e-6)  # KL of N(1, 1) in 2-D is 1


def test_kl_warm_up():
  config = vgon_mnist.get_config()
  config.model.kl_weight, config.model.kl_warmup_steps = 2.0, 10
  kl_weight = make_objective(to_settings(config)).kl_weight
  np.testing.assert_allclose([kl_weight(s) for s in (0, 4, 9, 50)],
                             [0.2, 1.0, 2.0, 2.0], rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize('factory', [vgon_mnist, vae_mnist])
def test_training_lowers_the_negative_elbo(factory, blob_dir):
  config = factory.get_config()
  config.data.update(source='idx', dir=str(blob_dir), image_size=16)
  config.model.update(latent_dim=8, features=4)
  config.update(batch_size=16, learning_rate=3e-3, eval_batch_size=64, elbo_samples=2)
  state, losses = run_steps(config, num_steps=25)
  assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])
  metrics, recon, _ = make_evaluator(make_objective(to_settings(config)),
                                     to_settings(config).evaluation)(
      {'params': state.params}, data.load_split(config.data, 'test', 16)[0])
  assert 0 < metrics['bits_per_dim'] < 2 and recon.shape == (64, 16, 16, 1)
