"""The public model API (gon_jax.load, gon_jax.Model) and the errors a client meets."""

import inspect
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gon_jax
from gon_jax.config import to_settings
from gon_jax import checkpoints, evaluate, generate, objectives, passes
from gon_jax.errors import DataError
from gon_jax.model import Model, load, save_bundle
from gon_jax.state import setup
from gon_jax.train import train_and_evaluate

from testing_utils import random_images, tiny_config, tiny_siren_model


def _conv_model(blob_dir) -> Model:
  config = tiny_config(blob_dir, norm='layer')  # 16x16x1, latent 8
  _, _, state = setup(to_settings(config))
  return Model(config, {'params': state.params})


def test_import_is_light_and_load_is_there():
  code = ('import sys, gon_jax\n'
          'assert "gon_jax.model" not in sys.modules and "orbax" not in sys.modules\n'
          'assert gon_jax.load is gon_jax.model.load and gon_jax.Model is gon_jax.model.Model\n')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]


def test_encode_reconstruct_decode_are_evals(blob_dir):
  model = _conv_model(blob_dir)
  images = random_images(5)
  latents = model.encode(images)
  chex.assert_shape(latents, (5, 8))
  expected_latents, expected = evaluate.make_encoder(
      model.objective, model.settings.evaluation.batch_size)(model.variables, images)
  np.testing.assert_array_equal(latents, expected_latents)
  reconstructions = model.reconstruct(images)
  np.testing.assert_array_equal(reconstructions, np.clip(expected, 0, 1))
  # uint8 and [0, 1] floats are the same images.
  np.testing.assert_array_equal(model.encode(images.astype(np.float32) / 255), latents)
  decoded = model.decode(latents)
  chex.assert_shape(decoded, (5, 16, 16, 1))
  np.testing.assert_allclose(decoded, reconstructions, atol=1e-5)
  metrics = model.evaluate(images)
  assert metrics['num_images'] == 5 and metrics['sse'] > 0


def test_sample_needs_a_gaussian_and_render_an_implicit_model(blob_dir):
  model = _conv_model(blob_dir)
  with pytest.raises(ValueError, match='no Gaussian of training latents'):
    model.sample(4)
  fitted = model.with_gaussian(random_images(40))
  chex.assert_shape(fitted.sample(4, jax.random.key(1)), (4, 16, 16, 1))
  np.testing.assert_array_equal(fitted.sample(4, 1), fitted.sample(4, jax.random.key(1)))
  with pytest.raises(ValueError, match="render needs an implicit model .*'conv' decodes at its "
                                       'training resolution only'):
    model.render(np.zeros((2, 8)), 64)
  with pytest.raises(TypeError, match='render takes the objective .*not a Conv'):
    generate.render(model.objective.model, model.variables, np.zeros((2, 8)), 64)


def test_render_an_implicit_model_at_any_size():
  model = tiny_siren_model()
  images = np.random.default_rng(0).random((3, 6, 6, 1), np.float32)
  high = model.render(model.encode(images), 20)
  chex.assert_shape(high, (3, 20, 20, 1))
  assert 0.0 <= high.min() and high.max() <= 1.0


@pytest.mark.parametrize('images,message', [
    (np.zeros((16, 16, 1), np.uint8), r'a batch \[n, 16, 16, 1\], got one image .*images\[None\]'),
    (np.zeros((2, 28, 28, 1), np.uint8), r'must be \[n, 16, 16, 1\] .*got \[2, 28, 28, 1\]'),
    (np.zeros((2, 16, 16, 1), np.int32), 'uint8 or floats in \\[0, 1\\], got dtype int32'),
    (np.full((2, 16, 16, 1), 255.0, np.float32),
     'in \\[0, 1\\], got values from 255.0 .* give uint8'),
    (np.full((2, 16, 16, 1), np.nan, np.float32), 'must be finite, got 512 NaN'),
    (np.zeros((0, 16, 16, 1), np.uint8), r'empty batch \[0, 16, 16, 1\]: give at least one'),
    (np.zeros((0, 16, 16, 1), np.float32), r'empty batch \[0, 16, 16, 1\]: give at least one'),
    # Binarised images stored as uint8 would be read as 0-255: nearly black.
    ((random_images(2) > 127).astype(np.uint8), r'uint8 images hold only 0 and 1, read as 0-255 .*'
                                          r'give images.astype\(np.float32\)'),
])
def test_bad_images_are_one_clear_error(blob_dir, images, message):
  model = _conv_model(blob_dir)
  for method in (model.encode, model.reconstruct, model.evaluate):
    with pytest.raises(DataError, match=message):
      method(images)


def test_binarised_images_as_floats_are_taken(blob_dir):
  binary = (random_images(2) > 127).astype(np.float32)
  chex.assert_shape(_conv_model(blob_dir).encode(binary), (2, 8))


@pytest.mark.parametrize('z,message', [
    (np.zeros(8), r'latents must be a batch \[n, 8\], got one latent \[8\]: give z\[None\]'),
    (np.zeros((2, 5)), r'latents must be \[n, 8\] \(model.latent_dim 8\), got \[2, 5\]'),
    (np.zeros((0, 8)), r'latents are an empty batch \[0, 8\]: give at least one'),
    (np.full((2, 8), np.nan), 'latents must be finite, got 16 NaN or infinite values'),
    (np.array([[0.0] * 7 + [np.inf]]), 'latents must be finite, got 1 NaN or infinite'),
    (np.full((2, 8), 'a'), 'latents must be numbers, got dtype <U1'),
])
def test_bad_latents_are_one_clear_data_error(blob_dir, z, message):
  with pytest.raises(DataError, match=message):
    _conv_model(blob_dir).decode(z)


def test_render_checks_its_latents_as_decode_does():
  with pytest.raises(DataError, match='latents must be finite, got 1 NaN'):
    tiny_siren_model().render(np.array([[0.0, 0.0, np.nan, 0.0]]), 8)


def test_latents_that_overflow_the_decoder_are_an_error_not_nanrandom_images():
  model = tiny_siren_model()
  with pytest.raises(DataError, match=r'1 of 2 latents decode to non-finite pixels \(the first, '
                                      r'row 1, has \|z\| up to 3e\+38\): give smaller'):
    model.decode(np.array([[0.0] * 4, [3e38] * 4]))


@pytest.mark.parametrize('n,error,message', [
    (0, ValueError, 'n must be a positive integer, got 0'),
    (-1, ValueError, 'n must be a positive integer, got -1'),
    (2.0, TypeError, r'n must be a positive integer, got 2.0 \(float\)'),
    (True, TypeError, r'n must be a positive integer, got True \(bool\)'),
])
def test_sample_takes_a_positive_integer(blob_dir, n, error, message):
  model = _conv_model(blob_dir).with_gaussian(random_images(40))
  with pytest.raises(error, match=message):
    model.sample(n)


@pytest.mark.parametrize('key', [1.5, 'seed', None, np.zeros(3, np.uint32),
                                 jax.random.split(jax.random.key(0), 2)])
def test_sample_takes_an_int_or_one_prng_key(blob_dir, key):
  model = _conv_model(blob_dir).with_gaussian(random_images(40))
  with pytest.raises(TypeError, match='key must be an int or one PRNG key'):
    model.sample(2, key)


def test_sample_takes_raw_and_numpy_integer_keys(blob_dir):
  model = _conv_model(blob_dir).with_gaussian(random_images(40))
  expected = model.sample(2, 3)
  np.testing.assert_array_equal(model.sample(2, np.int64(3)), expected)
  np.testing.assert_array_equal(model.sample(2, jax.random.PRNGKey(3)), expected)


@pytest.mark.parametrize('size,batch_size,error,message', [
    (0, 4, ValueError, 'size must be a positive integer, got 0'),
    (-1, 4, ValueError, 'size must be a positive integer, got -1'),
    (64.0, 4, TypeError, r'size must be a positive integer, got 64.0 \(float\)'),
    (8, 0, ValueError, 'batch_size must be a positive integer, got 0'),
    (8, 2.0, TypeError, r'batch_size must be a positive integer, got 2.0 \(float\)'),
])
def test_render_takes_positive_integer_sizes(size, batch_size, error, message):
  with pytest.raises(error, match=message):
    tiny_siren_model().render(np.zeros((2, 4)), size, batch_size=batch_size)


def test_render_chunks_the_pixels_as_one_call_would_give_them(monkeypatch):
  model = tiny_siren_model()
  z = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
  whole = model.render(z, 20)
  monkeypatch.setattr(generate, 'RENDER_POINTS', 64)  # 400 pixels: 7 calls, the last padded
  chunked = generate.make_renderer(model.objective)(model.variables, z, 20)
  np.testing.assert_allclose(np.clip(chunked, 0, 1), whole, atol=1e-6)


def test_evaluate_checks_its_labels(blob_dir):
  images = random_images(4)
  with pytest.raises(DataError, match=r'labels given, but this model has no classifier '
                                      r'\(classifier.num_classes is 0\): give labels=None'):
    _conv_model(blob_dir).evaluate(images, np.zeros(4, np.int32))
  config = tiny_config(blob_dir, norm='layer')
  config.classifier.num_classes = 10
  model = Model(config, {'params': setup(to_settings(config))[2].params})
  with pytest.raises(DataError, match=r'labels must be \[n\] = \[4\], one per image, got \[3\]'):
    model.evaluate(images, np.zeros(3, np.int32))
  assert 0 <= model.evaluate(images, np.arange(4))['accuracy'] <= 1


def test_a_bundle_round_trips(blob_dir, tmp_path):
  model = _conv_model(blob_dir).with_gaussian(random_images(40))
  files = save_bundle(model, tmp_path / 'bundle', examples=random_images(3))
  assert set(files) == {'config.json', 'variables.msgpack', 'gaussian.npz', 'examples.npz'}
  loaded = load(tmp_path / 'bundle')
  chex.assert_trees_all_equal(loaded.variables, jax.tree.map(np.asarray, model.variables))
  np.testing.assert_array_equal(loaded.examples, random_images(3))
  np.testing.assert_array_equal(loaded.encode(random_images(4)), model.encode(random_images(4)))
  np.testing.assert_array_equal(loaded.sample(3, 7), model.sample(3, 7))
  # Written again without the optional parts: none of the old ones stay behind.
  assert set(save_bundle(_conv_model(blob_dir), tmp_path / 'bundle')) == {
      'config.json', 'variables.msgpack'}
  assert load(tmp_path / 'bundle').gaussian is None


def test_a_workdir_loads_as_trained_and_an_empty_one_is_an_error(blob_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match='no checkpoint in .*empty/checkpoints: train a '
                                              'model in this workdir first'):
    (tmp_path / 'empty').mkdir()
    load(tmp_path / 'empty')
  config = tiny_config(blob_dir, norm='layer')
  config.num_steps = 2
  state = train_and_evaluate(config, str(tmp_path / 'run'))
  model = load(tmp_path / 'run')
  chex.assert_trees_all_equal(model.variables['params'], state.params)
  assert model.source == str(tmp_path / 'run')
  # restore_latest itself: the error, unless the caller starts from scratch on purpose.
  manager = checkpoints.manager(str(tmp_path / 'empty'), read_only=True)
  with pytest.raises(FileNotFoundError, match='no checkpoint'):
    checkpoints.restore_latest(manager, state)
  assert checkpoints.restore_latest(manager, state, missing_ok=True)[1] == 0


def test_an_unknown_name_lists_the_pretrained_models():
  with pytest.raises(FileNotFoundError, match='neither a folder nor a pretrained model; '
                                              'pretrained: conv_cifar10, conv_fashion, conv_mnist'):
    load('conv_mnistt')


def test_each_family_takes_only_the_latent_inputs_it_uses():
  def keyword_only(family):
    return [name for name, p in inspect.signature(family.latents).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY]
  assert keyword_only(objectives.GON) == ['z0', 'draws', 'train', 'loss']
  assert keyword_only(objectives.Encoded) == ['train']
  assert keyword_only(objectives.GLO) == ['z0', 'rows', 'loss']
  with pytest.raises(TypeError, match='takes seed; a family'):
    type('Bad', (objectives.GON,), {'latents': lambda self, variables, images, *, seed: None})


@pytest.mark.slow
def test_reconstruct_takes_its_options_by_keyword_and_checks_z0(blob_dir):
  model = _conv_model(blob_dir)
  images = jnp.asarray(random_images(2), jnp.float32) / 255
  with pytest.raises(TypeError, match='positional'):
    model.objective.reconstruct(model.variables, images, None, passes.Draws(), True)
  default = model.objective.reconstruct(model.variables, images)
  given = model.objective.reconstruct(model.variables, images, gon_jax.origin(2, 8))
  chex.assert_trees_all_equal(default.latents, given.latents)
  with pytest.raises(ValueError, match=r'z0 has shape \[2, 5\].*origin\(2, 8\)'):
    model.objective.reconstruct(model.variables, images, jnp.zeros((2, 5)))
