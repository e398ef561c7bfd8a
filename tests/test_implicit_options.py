"""Implicit GONs beyond the paper: modulations, coordinate encodings, a learnt inner
optimisation (step size, origin), each checked against a closed form."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gon_jax.config import to_settings
from gon_jax import config as config_lib
from gon_jax import parallel
from gon_jax.coordinates import grid
from gon_jax.core import origin_latent
from gon_jax.errors import ConfigError
from gon_jax.evaluate import evaluate_checkpoint
from gon_jax.models import make_objective
from gon_jax.models.siren import SirenDecoder, encode_coordinates
from gon_jax.state import init_variables
from gon_jax.train import train_and_evaluate

from gon_jax.configs import ae_mnist, siren_mnist_shift, siren_mnist_tiny


def _config(**model):
  config = siren_mnist_tiny.get_config()
  config.data.image_size = 6
  config.model.update(latent_dim=4, widths=(16, 16), **model)
  return config


def _count(config):
  # Shapes only: eval_shape runs no op.
  variables = jax.eval_shape(make_objective(to_settings(config)).init_variables, jax.random.key(0))
  return sum(x.size for x in jax.tree.leaves(variables['params']))


@pytest.mark.slow
def test_parameter_counts():
  rest = (16 * 16 + 16) + (16 + 1)  # the second sine layer and the linear output
  assert _count(_config()) == (2 + 4) * 16 + 16 + rest
  assert _count(_config(conditioning='shift')) == 2 * 16 + 16 + rest + (4 * 32 + 32)
  assert _count(_config(conditioning='film')) == 2 * 16 + 16 + rest + (4 * 64 + 64)
  assert _count(_config(conditioning='shift', modulation_widths=(8,))) == (
      2 * 16 + 16 + rest + (4 * 8 + 8) + (8 * 32 + 32))
  assert _count(_config(encoding='fourier', encoding_size=5)) == (10 + 4) * 16 + 16 + rest
  assert _count(_config(encoding='positional', encoding_size=3)) == (14 + 4) * 16 + 16 + rest
  learnt = _config()
  learnt.gon.update(learn_step_size='per_dimension', learn_origin=True)
  assert _count(learnt) == _count(_config()) + 4 + 4
  learnt.gon.update(learn_step_size='scalar', learn_origin=False)
  assert _count(learnt) == _count(_config()) + 1
  # The ablation's winner: the paper's 4,385 less the first layer's 34 latent rows of 32, plus
  # the map from the latent to 4 x 32 shifts.
  assert _count(siren_mnist_tiny.get_config()) == 4385
  assert _count(siren_mnist_shift.get_config()) == 4385 - 34 * 32 + (34 * 128 + 128)


def _plain_siren(params, coordinates, w0=30.0):
  """The SIREN of the coordinates alone, written out."""
  h = jnp.sin(w0 * (coordinates @ params['first_kernel'] + params['first_bias']))
  h = jnp.sin(w0 * (h @ params['Dense_0']['kernel'] + params['Dense_0']['bias']))
  return h @ params['Dense_1']['kernel'] + params['Dense_1']['bias']


@pytest.mark.parametrize('conditioning', ['shift', 'film'])
def test_zero_modulations_give_the_plain_siren(conditioning):
  model = SirenDecoder(latent_dim=4, widths=(16, 16), image_size=5, conditioning=conditioning)
  z = jax.random.normal(jax.random.key(1), (3, 4))
  params = model.init(jax.random.key(0), z)['params']
  # At initialisation the map's bias is zero: at the origin nothing is modulated.
  plain = _plain_siren(params, grid(5)).reshape(5, 5, 1)
  chex.assert_trees_all_close(model.apply({'params': params}, jnp.zeros((3, 4))),
                              jnp.broadcast_to(plain, (3, 5, 5, 1)), atol=1e-5)
  zero = jax.tree.map(jnp.zeros_like, params['to_modulations'])
  outputs = model.apply({'params': {**params, 'to_modulations': zero}}, z)
  chex.assert_trees_all_close(outputs, jnp.broadcast_to(plain, (3, 5, 5, 1)), atol=1e-5)
  assert not np.allclose(model.apply({'params': params}, z), outputs, atol=1e-3)  # z modulates


def test_concatenation_is_a_shift_of_the_first_layer():
  concat = SirenDecoder(latent_dim=4, widths=(16, 16), image_size=5)
  shift = concat.clone(conditioning='shift')
  z = jax.random.normal(jax.random.key(1), (3, 4))
  params = concat.init(jax.random.key(0), z)['params']
  to_modulations = {'kernel': jnp.zeros((4, 32)).at[:, :16].set(params['first_kernel'][2:]),
                    'bias': jnp.zeros(32)}
  shifted = {**params, 'first_kernel': params['first_kernel'][:2],
             'to_modulations': to_modulations}
  chex.assert_trees_all_close(shift.apply({'params': shifted}, z),
                              concat.apply({'params': params}, z), atol=1e-5)


@pytest.mark.parametrize('conditioning', ['shift', 'film'])
def test_modulated_fast_paths_compute_the_same_function(conditioning):
  model = SirenDecoder(latent_dim=4, widths=(16, 16), image_size=5, conditioning=conditioning,
                       modulation_widths=(8,), encoding='fourier', encoding_size=3)
  z = jax.random.normal(jax.random.key(1), (3, 4))
  variables = model.init(jax.random.key(0), z)
  for plain in (model.clone(fast_sine=False), model.clone(factorised=False)):
    chex.assert_trees_all_close(plain.apply(variables, z), model.apply(variables, z), atol=1e-5)
  per_image = jax.random.uniform(jax.random.key(2), (3, 7, 2), minval=-1, maxval=1)
  chex.assert_shape(model.apply(variables, z, coordinates=per_image), (3, 7, 1))


def test_fourier_features_frequencies():
  size, scale, delta = 4000, 10.0, 1e-3
  corners = jnp.array([[0.0, 0.0], [delta, 0.0], [0.0, delta]])
  features = encode_coordinates(corners, 'fourier', size, scale)
  chex.assert_shape(features, (3, 2 * size))
  np.testing.assert_allclose(features[0], np.r_[np.zeros(size), np.ones(size)], atol=1e-7)
  # Each angle is 2 pi c B: B's rows are the angles at c = delta e_i, over 2 pi delta.
  angles = np.arctan2(np.asarray(features[1:, :size]), np.asarray(features[1:, size:]))
  frequencies = angles / (2 * np.pi * delta)  # [2, size]
  assert abs(frequencies.std() / scale - 1) < 0.03
  assert abs(frequencies.mean()) < 0.03 * scale
  c = jax.random.uniform(jax.random.key(3), (9, 2), minval=-1, maxval=1)
  expected = 2 * np.pi * np.asarray(c) @ frequencies
  np.testing.assert_allclose(encode_coordinates(c, 'fourier', size, scale),
                             np.c_[np.sin(expected), np.cos(expected)], atol=2e-3)
  # Fixed: the same frequencies in every call (part of the architecture).
  chex.assert_trees_all_equal(encode_coordinates(c, 'fourier', size, scale),
                              encode_coordinates(c, 'fourier', size, scale))


def test_positional_encoding_octaves():
  c = np.random.default_rng(0).uniform(-1, 1, (7, 2)).astype(np.float32)
  angles = [np.pi * 2.0 ** k * c for k in range(3)]  # each [7, 2]
  expected = np.concatenate([c, *[np.sin(a) for a in angles], *[np.cos(a) for a in angles]], -1)
  got = np.asarray(encode_coordinates(jnp.asarray(c), 'positional', 3, 0.0))
  chex.assert_shape(got, (7, 2 + 2 * 2 * 3))
  # Same features, in the order [c, sin by octave and coordinate, cos likewise].
  order = lambda f: np.sort(f, axis=-1)
  np.testing.assert_allclose(order(got), order(expected), atol=1e-5)
  np.testing.assert_allclose(got[:, :2], c)


def _loss_and_grads(config, params=None, num_steps=1):
  config.gon.num_steps = num_steps
  objective = make_objective(to_settings(config))
  variables = init_variables(objective, jax.random.key(0))
  params = variables['params'] if params is None else params
  batch = {'image': jax.random.uniform(jax.random.key(1), (3, 6, 6, 1)),
           'label': jnp.zeros(3, jnp.int32)}
  loss_fn = lambda p: objective.loss(p, None, batch, jax.random.split(jax.random.key(2), 3),
                                     batch_stats={}, step=jnp.int32(0), mean_over=3)[0]
  return (*jax.value_and_grad(loss_fn)(params), params, objective, batch)


@pytest.mark.slow
@pytest.mark.parametrize('num_steps, step_size', [(1, 'scalar'), (3, 'per_dimension')])
def test_a_learnt_step_size_and_origin_start_as_the_fixed_ones_and_get_gradients(
    num_steps, step_size):
  fixed_loss, _, fixed_params, _, _ = _loss_and_grads(_config(), num_steps=num_steps)
  config = _config()
  config.gon.update(learn_step_size=step_size, learn_origin=True)
  loss, grads, params, _, _ = _loss_and_grads(config, num_steps=num_steps)
  chex.assert_shape(params['gon']['step_size'], () if step_size == 'scalar' else (4,))
  chex.assert_trees_all_equal(params['gon']['origin'], jnp.zeros(4))
  # At their initial values the learnt step and origin are the paper's.
  chex.assert_trees_all_close({k: v for k, v in params.items() if k != 'gon'}, fixed_params)
  np.testing.assert_allclose(loss, fixed_loss, rtol=1e-6)
  for name in ('step_size', 'origin'):
    assert np.all(np.isfinite(grads['gon'][name])) and np.any(grads['gon'][name] != 0), name


@pytest.mark.slow
def test_a_learnt_step_size_scales_each_dimension_and_the_origin_moves_the_start():
  config = _config()
  config.gon.update(learn_step_size='per_dimension', learn_origin=True)
  _, _, params, objective, batch = _loss_and_grads(config)
  images = batch['image']
  step = jnp.array([0.5, 1.0, 2.0, -1.0])
  start = jnp.array([0.1, -0.2, 0.0, 0.3])
  learnt = {**params, 'gon': {'step_size': step, 'origin': start}}
  z0 = jnp.zeros((3, 4))
  latents = objective.reconstruct({'params': learnt}, images, z0).latents
  decoder = {k: v for k, v in params.items() if k != 'gon'}
  decode = lambda z: objective.model.apply({'params': decoder}, z)
  expected = origin_latent(decode, images, start, step_size=step,
                           loss_scale=_inner_scale(objective))
  chex.assert_trees_all_close(latents, expected, rtol=1e-5, atol=1e-6)
  gradient = origin_latent(decode, images, start, step_size=1.0,
                           loss_scale=_inner_scale(objective)) - start
  chex.assert_trees_all_close(latents, start + step * gradient, rtol=1e-5, atol=1e-6)


def _inner_scale(objective):
  from gon_jax import losses  # pylint: disable=import-outside-toplevel
  return losses.inner_loss_scale(objective.gon.inner_reduction, objective.batch_size,
                                 objective.image_size ** 2, objective.official_average)


@pytest.mark.parametrize('ynn_fusions', [False, True])
def test_model_functions_compile_without_ynnpack_fusions_unless_asked(ynn_fusions):
  """jax 0.10.2's XLA:CPU with YNNPACK fusions gave a FiLM SIREN with Fourier features
  different latents for the same inputs from one call to the next; the train step, the
  encoder and the decoders compile without them (performance.cpu_ynn_fusions=False)."""
  if jax.default_backend() != 'cpu':
    pytest.skip('an XLA:CPU option')
  config = _config(conditioning='film', encoding='fourier')
  config.performance.cpu_ynn_fusions = ynn_fusions
  objective = make_objective(to_settings(config))
  variables = init_variables(objective, jax.random.key(0))
  images = jnp.zeros((4, 6, 6, 1))
  text = parallel.jit(objective.encode, objective.performance).lower(
      variables, images).compile().as_text()
  assert ('%ynn_fusion' in text) == ynn_fusions


def test_option_errors_are_one_line():
  for model, message in (({'conditioning': 'mod'}, 'unknown model.conditioning'),
                         ({'encoding': 'fourier', 'encoding_size': 0}, 'model.encoding_size=0'),
                         ({'encoding': 'fourier', 'encoding_scale': 0.0}, 'encoding_scale=0.0'),
                         ({'modulation_widths': (0,)}, 'modulation_widths')):
    with pytest.raises(ConfigError, match=message):
      config_lib.validate(_config(**model))
  config = _config()
  config.gon.learn_step_size = 'vector'
  with pytest.raises(ConfigError, match="unknown gon.learn_step_size 'vector'"):
    config_lib.validate(config)
  config = ae_mnist.get_config()
  config.gon.learn_origin = True
  with pytest.raises(ConfigError, match=r"gon.learn_origin .* needs a GON model .*not 'ae'"):
    config_lib.validate(config)


@pytest.mark.slow
def test_every_option_trains_resumes_and_evaluates(blob_dir, tmp_path):
  config = _config(conditioning='film', modulation_widths=(8,), encoding='fourier',
                   encoding_size=4, encoding_scale=1.0)
  config.gon.update(learn_step_size='per_dimension', learn_origin=True, num_steps=2)
  config.data.update(dir=str(blob_dir), image_size=12)
  config.update(batch_size=8, num_steps=6, eval_every=6, checkpoint_every=3, log_every=3,
                eval_batch_size=32, grid_size=2, num_fit_examples=16, superres_size=24,
                train_eval_examples=32)
  config.performance.scan_chunk = 4
  state = train_and_evaluate(config, str(tmp_path / 'run'))
  assert int(state.step) == 6
  trained = state.params['gon']
  assert not np.allclose(trained['step_size'], config.gon.step_size)  # it learnt
  metrics = evaluate_checkpoint(config, str(tmp_path / 'run'))
  assert np.isfinite(metrics['sse']) and metrics['sse'] > 0


@pytest.mark.parametrize('modulation_widths', [(), (8,)])
def test_the_modulation_map_starts_as_the_first_layer_s_latent_rows(modulation_widths):
  """Its last layer's weights are U(-1/fan_in, 1/fan_in), the latent's rows of the first layer
  under concatenation (a lecun_normal start throws the sines' phases about), its bias 0."""
  model = SirenDecoder(latent_dim=20, widths=(64, 64), image_size=3, conditioning='film',
                       modulation_widths=modulation_widths)
  params = model.init(jax.random.key(0), jnp.zeros((1, 20)))['params']
  kernel, fan_in = params['to_modulations']['kernel'], (modulation_widths or (20,))[-1]
  assert kernel.shape == (fan_in, 2 * 128)
  assert float(jnp.max(jnp.abs(kernel))) <= 1 / fan_in
  np.testing.assert_allclose(float(jnp.std(kernel)), 1 / fan_in / np.sqrt(3), rtol=0.1)
  np.testing.assert_array_equal(params['to_modulations']['bias'], 0)
