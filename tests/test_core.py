"""The gradient-origin transform against closed forms and finite differences."""

import chex
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from gon_jax.core import origin, origin_latent, squared_error


def _linear_problem(batch=5, latent_dim=3, pixels=7, seed=0):
  k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
  w = jax.random.normal(k1, (pixels, latent_dim))
  b = jax.random.normal(k2, (pixels,))
  x = jax.random.normal(k3, (batch, pixels))
  return w, b, x


def test_linear_decoder_latent_is_closed_form():
  # F(z) = Wz + b with summed squared error: z = -grad at 0 = 2 W^T (x - b).
  w, b, x = _linear_problem()
  z = origin_latent(lambda z: z @ w.T + b, x, origin(5, 3), squared_error)
  chex.assert_shape(z, (5, 3))
  chex.assert_trees_all_close(z, 2 * (x - b) @ w, rtol=1e-5)


def test_options_follow_their_formulas():
  w, b, x = _linear_problem()
  decode = lambda z: z @ w.T + b
  grad_at = lambda z: 2 * (decode(z) - x) @ w  # gradient of the summed inner loss
  z0 = 0.3 * jax.random.normal(jax.random.key(1), (5, 3))
  chex.assert_trees_all_close(
      origin_latent(decode, x, z0, squared_error, step_size=0.1, loss_scale=0.5),
      z0 - 0.1 * 0.5 * grad_at(z0), rtol=1e-5)
  chex.assert_trees_all_close(
      origin_latent(decode, x, z0, squared_error, start_from_z0=False), -grad_at(z0), rtol=1e-5)
  z1 = z0 - 0.01 * grad_at(z0)
  chex.assert_trees_all_close(
      origin_latent(decode, x, z0, squared_error, num_steps=2, step_size=0.01),
      z1 - 0.01 * grad_at(z1), rtol=1e-5)


def _tanh_decoder(params, z):
  return jnp.tanh(z @ params['w1']) @ params['w2']


def _outer_loss(params, x, **options):
  decode = lambda z: _tanh_decoder(params, z)
  z = origin_latent(decode, x, jnp.zeros((x.shape[0], 2), x.dtype), squared_error, **options)
  return jnp.mean(squared_error(decode(z), x))


def test_nested_gradient_matches_finite_differences():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    params = {'w1': jnp.asarray(rng.normal(size=(2, 6))), 'w2': jnp.asarray(rng.normal(size=(6, 4)))}
    x = jnp.asarray(rng.normal(size=(3, 4)))
    grads = jax.grad(_outer_loss)(params, x)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    eps = 1e-6
    numeric = np.array([
        (_outer_loss(unravel(flat.at[i].add(eps)), x) - _outer_loss(unravel(flat.at[i].add(-eps)), x))
        / (2 * eps) for i in range(flat.size)])
    np.testing.assert_allclose(jax.flatten_util.ravel_pytree(grads)[0], numeric, rtol=1e-6, atol=1e-8)
    # The outer gradient really flows through the latent: detaching changes it.
    detached = jax.grad(lambda p: _outer_loss(p, x, detach=True))(params)
    assert not np.allclose(jax.flatten_util.ravel_pytree(detached)[0], numeric, rtol=1e-3)


@pytest.mark.parametrize('batch', [1, 4])
def test_latent_of_an_example_does_not_depend_on_its_batch(batch):
  rng = np.random.default_rng(1)
  params = {'w1': jnp.asarray(rng.normal(size=(2, 6)), jnp.float32),
            'w2': jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)}
  x = jnp.asarray(rng.normal(size=(8, 4)), jnp.float32)
  decode = lambda z: _tanh_decoder(params, z)
  whole = origin_latent(decode, x, origin(8, 2), squared_error)
  part = origin_latent(decode, x[:batch], origin(batch, 2), squared_error)
  chex.assert_trees_all_close(part, whole[:batch], rtol=1e-5, atol=1e-5)


def test_origin_sampling():
  chex.assert_trees_all_equal(origin(2, 3), jnp.zeros((2, 3)))
  z0 = origin(4000, 3, sigma=0.5, keys=jax.random.split(jax.random.key(0), 4000))
  chex.assert_shape(z0, (4000, 3))
  assert abs(float(jnp.std(z0)) - 0.5) < 0.02


@pytest.mark.parametrize('num_steps', [1, 2])
def test_shared_z0_gives_the_latents_and_gradients_of_per_example_passes(num_steps):
  # One forward pass at the origin for the whole batch, against one per example,
  # through the second-order gradient that trains the decoder.
  k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
  params = {'w1': jax.random.normal(k1, (3, 8)), 'w2': jax.random.normal(k2, (8, 7)) / 3}
  x = jax.random.normal(k3, (5, 7))

  def outer_loss(params, shared_z0):
    decode = lambda z: jnp.tanh(jnp.tanh(z @ params['w1'] + 0.1) @ params['w2'])
    z = origin_latent(decode, x, origin(5, 3), squared_error, num_steps=num_steps,
                      step_size=0.1, shared_z0=shared_z0)
    return jnp.sum(squared_error(decode(z), x)), z

  (plain, plain_z), plain_grads = jax.value_and_grad(outer_loss, has_aux=True)(params, False)
  (shared, shared_z), shared_grads = jax.value_and_grad(outer_loss, has_aux=True)(params, True)
  chex.assert_trees_all_close((shared, shared_z, shared_grads), (plain, plain_z, plain_grads),
                              rtol=1e-5, atol=1e-6)
  assert float(jnp.max(jnp.abs(plain_z))) > 0.1  # the latents moved from the origin
