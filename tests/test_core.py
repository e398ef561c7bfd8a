"""The gradient-origin transform against closed forms and finite differences."""

import re

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
    # One start `[latent_dim]` for the batch, or one row per example `[batch, latent_dim]`.
    z0 = origin(1, 3)[0] if shared_z0 else origin(5, 3)
    z = origin_latent(decode, x, z0, squared_error, num_steps=num_steps, step_size=0.1)
    return jnp.sum(squared_error(decode(z), x)), z

  (plain, plain_z), plain_grads = jax.value_and_grad(outer_loss, has_aux=True)(params, False)
  (shared, shared_z), shared_grads = jax.value_and_grad(outer_loss, has_aux=True)(params, True)
  chex.assert_trees_all_close((shared, shared_z, shared_grads), (plain, plain_z, plain_grads),
                              rtol=1e-5, atol=1e-6)
  assert float(jnp.max(jnp.abs(plain_z))) > 0.1  # the latents moved from the origin


def _conv_like_problem(batch=32):
  """A decoder of 32x32 images and targets `[batch, 32, 32, 1]`."""
  w = jax.random.normal(jax.random.key(0), (3, 32 * 32)) / 10
  x = jax.random.uniform(jax.random.key(1), (batch, 32, 32, 1))
  return (lambda z: (z @ w).reshape(-1, 32, 32, 1)), x


# Inputs that used to run and give wrong latents: each must raise one clear error when traced.
MISUSE = {  # case: (arguments changed, text the error must contain)
    'z0_rows': (dict(z0=jnp.zeros((1, 3))), 'z0 has 1 rows but target has shape [8, 32, 32, 1]'),
    # A 1-D z0 is a start shared by the batch ([latent_dim]); other ranks are refused.
    'z0_rank': (dict(z0=jnp.zeros((8, 3, 1))), 'z0 must be [batch, latent_dim]'),
    'output_shape': (dict(decode='no_channel_axis'), 'differ in shape'),
    'uint8_target': (dict(target='uint8'), 'dtype uint8, expected floating point'),
    'integer_z0': (dict(z0=jnp.zeros((8, 3), jnp.int32)), 'z0 has dtype int32'),
    'zero_steps': (dict(num_steps=0), 'num_steps must be a positive integer'),
    'float_steps': (dict(num_steps=1.0), 'num_steps must be a positive integer'),
    'loss_not_per_example': (dict(inner_loss=lambda p, t: jnp.mean(jnp.square(p - t))),
                             'one loss per example, shape [8], got []'),
    # A loss of one's own that broadcasts: the outputs' shape is checked whatever the loss.
    'output_shape_own_loss': (
        dict(decode='no_channel_axis',
             inner_loss=lambda p, t: jnp.sum(jnp.square(p - t).reshape(8, -1), axis=1)),
        'decode(z): prediction [8, 32, 32] and target [8, 32, 32, 1] differ in shape'),
    'tuple_outputs_default_loss': (dict(decode='tuple'), 'prediction is a tuple of 2 values'),
    # Meant as [batch] (8 examples); read as one shared start of 8 values for a 3-D latent.
    'z0_1d_wrong_length': (dict(z0=jnp.zeros(8)), 'decode failed on z0 of shape [8]'),
}


@pytest.mark.parametrize('jit', [False, True])
@pytest.mark.parametrize('case', list(MISUSE))
def test_origin_latent_refuses_inputs_that_give_wrong_latents(case, jit):
  decode, x = _conv_like_problem(batch=8)
  arguments = dict(decode=decode, target=x, z0=jnp.zeros((8, 3)), inner_loss=squared_error,
                   num_steps=1)
  changes, message = MISUSE[case]
  arguments.update(changes)
  if arguments['decode'] == 'no_channel_axis':
    arguments['decode'] = lambda z: decode(z)[..., 0]  # [B, 32, 32] against [B, 32, 32, 1]
  if arguments['decode'] == 'tuple':
    arguments['decode'] = lambda z: (decode(z), z)  # several outputs, scored by squared_error
  if arguments['target'] == 'uint8':
    arguments['target'] = (x * 255).astype(jnp.uint8)
  a = arguments
  encode = lambda target, z0: origin_latent(a['decode'], target, z0, a['inner_loss'],
                                            num_steps=a['num_steps'])
  with pytest.raises(ValueError, match=re.escape(message)):
    (jax.jit(encode) if jit else encode)(a['target'], a['z0'])


def test_num_steps_may_be_a_numpy_integer():
  decode, x = _conv_like_problem(batch=4)
  z = origin_latent(decode, x, origin(4, 3), num_steps=np.int64(2), step_size=0.01)
  chex.assert_trees_all_close(
      z, origin_latent(decode, x, origin(4, 3), num_steps=2, step_size=0.01))


def test_the_integer_z0_error_gives_a_z0_hint_not_the_images_one():
  decode, x = _conv_like_problem(batch=4)
  with pytest.raises(ValueError) as error:
    origin_latent(decode, x, jnp.zeros((4, 3), jnp.int32))
  assert 'origin(batch, latent_dim)' in str(error.value)
  assert '/ 255' not in str(error.value)


def test_the_shape_error_is_the_broadcast_that_used_to_pass():
  # Batch 32 against 32 channels: [32, 32, 32] - [32, 32, 32, 1] broadcasts to
  # [32, 32, 32, 32] without the check, and the latents were far off.
  decode, x = _conv_like_problem(batch=32)
  with pytest.raises(ValueError, match='prediction \\[32, 32, 32\\] and target \\[32, 32, 32, 1\\]'):
    origin_latent(lambda z: decode(z)[..., 0], x, origin(32, 3))
  chex.assert_shape(origin_latent(decode, x, origin(32, 3)), (32, 3))


def test_squared_error_refuses_integers_and_shape_mismatch():
  a = jnp.array([[200, 10]], jnp.uint8)
  with pytest.raises(ValueError, match='dtype uint8'):
    squared_error(a, jnp.zeros_like(a))  # uint8 differences wrap around
  with pytest.raises(ValueError, match='differ in shape'):
    squared_error(jnp.zeros((4, 3)), jnp.zeros((4, 3, 1)))


def test_binary_cross_entropy_refuses_shape_mismatch():
  from gon_jax.losses import binary_cross_entropy  # pylint: disable=import-outside-toplevel
  with pytest.raises(ValueError, match='binary_cross_entropy: prediction'):
    binary_cross_entropy(jnp.full((2, 4, 4), 0.5), jnp.zeros((2, 4, 4, 1)))


def test_origin_and_latents_follow_x64():
  with jax.enable_x64(True):
    z0 = origin(4, 2)
    assert z0.dtype == jnp.float64
    assert origin(4, 2, 0.5, jax.random.split(jax.random.key(0), 4)).dtype == jnp.float64
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 5)))  # float64
    w = jnp.asarray(np.random.default_rng(1).normal(size=(2, 5)))
    z = origin_latent(lambda z: z @ w, x, z0)
    assert z.dtype == jnp.float64
    np.testing.assert_allclose(z, 2 * x @ w.T, rtol=1e-12)  # exact in float64
  assert origin(4, 2).dtype == jnp.float32
  assert origin(4, 2, dtype=jnp.bfloat16).dtype == jnp.bfloat16


def test_origin_with_sigma_needs_one_key_per_example():
  with pytest.raises(ValueError, match='one PRNG key per example'):
    origin(4, 2, 0.5)
  with pytest.raises(ValueError, match='one PRNG key per example'):
    origin(4, 2, 0.5, jax.random.split(jax.random.key(0), 3))
