"""The comparisons' baselines (Table 1) and the GON classifier (Eq. 13)."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

import testing_utils
from gon_jax.config import to_settings
from gon_jax import evaluate
from gon_jax.models import make_objective
from gon_jax.models.conv import transposed_conv, transposed_conv_adjoint
from gon_jax.objectives import model_variables
from gon_jax.parallel import AXIS, Placement
from gon_jax.state import init_variables, setup

from gon_jax.configs import ae_mnist, conv_mnist, glo_mnist, tied_ae_mnist


def _num_params(config):
  # Shapes only: eval_shape runs no op.
  variables = jax.eval_shape(make_objective(to_settings(config)).init_variables, jax.random.key(0))
  return sum(x.size for x in jax.tree.leaves(variables['params']))


@pytest.mark.slow
def test_parameter_counts_relative_to_the_gon():
  gon = _num_params(conv_mnist.get_config())
  assert gon == 74_321
  # The mirrored encoder about doubles the parameters (Table 1: "half the parameters").
  assert _num_params(ae_mnist.get_config()) == 148_673
  assert 1.9 < _num_params(ae_mnist.get_config()) / gon < 2.1
  # Tied weights add only the encoder's biases and norm scales and offsets.
  assert _num_params(tied_ae_mnist.get_config()) == gon + (16 + 32 + 64 + 32) + 2 * (16 + 32 + 64)
  assert _num_params(glo_mnist.get_config()) == gon  # its latent table is not the network's


@pytest.mark.parametrize('first', [True, pytest.param(False, marks=pytest.mark.slow)])
def test_transposed_conv_adjoint(first):
  # <T x, y> = <x, T^T y>: what the tied encoder computes is the adjoint, the same as the
  # linear transpose of the plain (dilated convolution) form.
  keys = jax.random.split(jax.random.key(0), 3)
  shape = (2, 3) if first else (2, 4, 4, 3)
  x, kernel = jax.random.normal(keys[0], shape), jax.random.normal(keys[1], (4, 4, 3, 5))
  y = jax.random.normal(keys[2], transposed_conv(x, kernel, first).shape)
  x_adjoint = transposed_conv_adjoint(y, kernel, first)
  np.testing.assert_allclose(jnp.vdot(transposed_conv(x, kernel, first), y),
                             jnp.vdot(x, x_adjoint), rtol=1e-4)
  (plain,) = jax.linear_transpose(lambda v: transposed_conv(v, kernel, first, 'conv'), x)(y)
  np.testing.assert_allclose(x_adjoint, plain, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_tied_encoder_uses_the_decoders_kernels():
  config = tied_ae_mnist.get_config()
  objective = make_objective(to_settings(config))
  model, variables = objective.model, init_variables(objective, jax.random.key(0))
  encoder_params = variables['params']['TiedEncoder_0']
  assert all('kernel' not in '/'.join(map(str, path)) for path, _ in
             jax.tree_util.tree_flatten_with_path(encoder_params)[0])  # no kernels of its own
  images = jax.random.uniform(jax.random.key(1), (2, 32, 32, 1))

  def encode(params):
    return model.apply({'params': params}, images, True, method='encode')

  latents = encode(variables['params'])
  chex.assert_shape(latents, (2, config.model.latent_dim))
  grads = jax.grad(lambda p: jnp.sum(encode(p) ** 2))(variables['params'])
  for i in range(4):  # every decoder kernel shapes the encoding
    assert float(jnp.abs(grads[f'UpConv_{i}']['kernel']).max()) > 0
  changed = jax.tree.map(lambda x: x, variables['params'])
  changed['UpConv_3']['kernel'] = changed['UpConv_3']['kernel'] * 2.0
  assert not np.allclose(encode(changed), latents)


def _glo_config(blob_dir, parallel='jit'):
  config = testing_utils.tiny_config(blob_dir, norm='layer')
  config.model.name = 'glo'
  config.parallel = parallel
  return config


@pytest.mark.slow
def test_glo_updates_only_the_rows_of_the_batch(blob_dir):
  config = _glo_config(blob_dir)
  _, _, initial = setup(to_settings(config), num_train_examples=256)
  state, losses = testing_utils.run_steps(config, num_steps=2)
  assert np.all(np.isfinite(losses))
  from gon_jax import data  # pylint: disable=import-outside-toplevel
  seen = np.concatenate([data.batch_indices(256, config.batch_size, config.seed, s)
                         for s in range(2)])
  unseen = np.setdiff1d(np.arange(256), seen)
  for name in ('table', 'mu', 'nu', 'count'):
    np.testing.assert_array_equal(state.latents[name][unseen], initial.latents[name][unseen])
  assert np.all(state.latents['count'][seen] == 1)
  assert np.all(np.any(state.latents['table'][seen] != initial.latents['table'][seen], axis=1))
  # Unseen images are encoded by fitting latents to the trained decoder.
  objective, _, _ = setup(to_settings(config), num_train_examples=256)
  images, _ = data.load_split(config.data, 'test', config.data.image_size)
  metrics, recon, latents = evaluate.make_evaluator(objective, to_settings(config).evaluation)(
      model_variables(state.params, state.batch_stats), images[:16])
  chex.assert_shape((recon, latents), ((16, 16, 16, 1), (16, config.model.latent_dim)))
  assert np.isfinite(metrics['sse'])


@pytest.mark.slow
def test_glo_pmap_matches_jit(blob_dir):
  jit_state, _ = testing_utils.run_steps(_glo_config(blob_dir), num_steps=2)
  placement = Placement('pmap', Mesh(np.array(jax.devices()), (AXIS,)))
  pmap_state, _ = testing_utils.run_steps(_glo_config(blob_dir, 'pmap'), placement, num_steps=2)
  chex.assert_trees_all_close(pmap_state.latents, jit_state.latents, atol=1e-5)
  chex.assert_trees_all_close(pmap_state.params, jit_state.params, atol=1e-5)


def _write_halves(folder):
  """Two trivially separable classes: a bright left half (0) or right half (1)."""
  rng = np.random.default_rng(0)
  images, labels = {}, {}
  for split, n in (('train', 256), ('test', 64)):
    y = rng.integers(0, 2, n)
    x = np.zeros((n, 28, 28), np.uint8)
    x[y == 0, :, :14], x[y == 1, :, 14:] = 255, 255
    x = np.clip(x + rng.integers(0, 60, x.shape), 0, 255)
    images[split], labels[split] = x.astype(np.uint8), y.astype(np.uint8)
  return testing_utils.write_idx_folder(folder, images, labels, gz=False)


@pytest.mark.slow
def test_classifier_separates_a_separable_set(tmp_path):
  config = testing_utils.tiny_config(_write_halves(tmp_path / 'halves'), norm='layer')
  config.classifier.num_classes = 2
  config.learning_rate = 1e-2
  state, _ = testing_utils.run_steps(config, num_steps=30)
  from gon_jax import data  # pylint: disable=import-outside-toplevel
  images, labels = data.load_split(config.data, 'test', config.data.image_size)
  objective, _, _ = setup(to_settings(config))
  metrics, _, _ = evaluate.make_evaluator(objective, to_settings(config).evaluation)(
      model_variables(state.params, state.batch_stats), images, labels)
  assert metrics['accuracy'] >= 0.95, metrics


@pytest.mark.slow
def test_eval_reports_accuracy_and_plots_2d_latents(blob_dir, tmp_path):
  flags = [f'--config.data.dir={blob_dir}', '--config.model.latent_dim=2']
  for script in ('train.py', 'eval.py'):
    result = testing_utils.run_script(script, tmp_path, *flags,
                                      config='configs/gon_classifier_mnist_2d.py')
    assert result.returncode == 0, result.stderr
  metrics = json.loads((tmp_path / 'eval' / 'metrics.json').read_text())
  assert 0.0 <= metrics['accuracy'] <= 1.0 and metrics['num_images'] == 64
  assert (tmp_path / 'eval' / 'latents.png').stat().st_size > 1000
