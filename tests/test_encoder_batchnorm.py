"""BatchNorm in the encoder models (the autoencoders and the VAE of Tables 1 and 2), and
the paper's recipe (BatchNorm, Adam 1e-4, the official inner loss reduction) for every
method of the tables.

Training normalises the encoder and the decoder with batch statistics and moves each
layer's running averages once a step; evaluation normalises with the running averages,
so an image encodes and reconstructs alike alone or in any batch.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from gon_jax.config import to_settings, validate
from gon_jax.experiments.compare import RECIPES, TABLE_1, run_config
from gon_jax.models import make_objective
from gon_jax.parallel import AXIS, Placement, make_placement
from gon_jax.state import init_variables, setup

from testing_utils import run_steps, tiny_config

from gon_jax.configs import vae_mnist, vgon_mnist

ENCODER_MODELS = ('ae', 'tied_ae', 'vae')


def _tiny(blob_dir, name):
  """tiny_config with BatchNorm as model `name`, shrunk to 8x8 images (one BatchNorm layer in
  the encoder, one in the decoder), latent 4; the VAE with vae_mnist's likelihood and KL."""
  config = tiny_config(blob_dir, norm='batch')
  if name == 'vae':
    config.model = vae_mnist.get_config().model
  config.model.update(name=name, norm='batch', latent_dim=4, features=4)
  config.data.image_size = 8
  return config


def _moved_from(batch_stats, initial):
  """Asserts that `batch_stats` holds an encoder's and a decoder's BatchNorm statistics, and
  that every one of them differs from `initial`."""
  paths = [jax.tree_util.keystr(path)
           for path, _ in jax.tree_util.tree_flatten_with_path(batch_stats)[0]]
  assert any('ncoder' in path for path in paths) and any('ncoder' not in path for path in paths)
  moved = jax.tree.map(lambda new, old: bool(jnp.all(new != old)), batch_stats, initial)
  assert all(jax.tree.leaves(moved)), moved


def _assert_encodes_alone_as_in_batch(objective, variables):
  """Asserts that evaluation (running averages) encodes and reconstructs an image alone as in
  a batch of 4: with the batch's statistics, an image alone would have zero variance."""
  encode = jax.jit(objective.encode)
  images = jax.random.uniform(jax.random.key(1), (4, 8, 8, 1))
  latents, recon = encode(variables, images)
  alone_latents, alone_recon = encode(variables, images[2:3])
  np.testing.assert_allclose(alone_latents[0], latents[2], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(alone_recon[0], recon[2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('name', ENCODER_MODELS)
def test_a_training_pass_updates_each_layer_once(blob_dir, name):
  # The statistics of one training pass equal those of a single forward pass of the whole
  # model in training mode (encode, then decode): the encoder's not dropped when the decoder
  # updates its own, none moved twice (the tied encoder reads the decoder's kernels, not
  # its statistics).
  objective = make_objective(to_settings(_tiny(blob_dir, name)))
  variables = init_variables(objective, jax.random.key(0))
  images = jax.random.uniform(jax.random.key(1), (6, 8, 8, 1))

  @jax.jit
  def both(variables, images):
    result = objective.reconstruct(variables, images, train=True)
    outputs, updates = objective.model.apply(
        variables, images, method=lambda m, x: m(m.encode(x, False), False),
        mutable=('batch_stats',))
    return (result.outputs, result.batch_stats), (outputs, updates['batch_stats'])

  trained_pass, forward_pass = both(variables, images)
  chex.assert_trees_all_close(trained_pass, forward_pass, rtol=1e-6, atol=1e-7)
  batch_stats = trained_pass[1]
  _moved_from(batch_stats, variables['batch_stats'])
  _assert_encodes_alone_as_in_batch(objective, {**variables, 'batch_stats': batch_stats})


@pytest.mark.slow
@pytest.mark.parametrize('name', ENCODER_MODELS)
def test_training_steps_move_the_running_averages(blob_dir, name):
  # train.py's step: gradients through the encoder's batch statistics, both collections
  # carried from step to step.
  config = _tiny(blob_dir, name)
  _, _, initial = setup(to_settings(config))
  state, losses = run_steps(config, num_steps=2)
  assert np.isfinite(losses).all()
  _moved_from(state.batch_stats, initial.batch_stats)
  _assert_encodes_alone_as_in_batch(make_objective(to_settings(config)),
                                    {'params': state.params, 'batch_stats': state.batch_stats})


@pytest.mark.slow
@pytest.mark.parametrize('name', ENCODER_MODELS)
def test_two_devices_match_one_device(blob_dir, name):
  # BatchNorm averages the encoder's statistics over the devices too (the axis_name the
  # train step checks, Objective.check_axis_name): the global batch's statistics, and the
  # global batch's gradients (Adam's moments after one step; not the parameters: a bias
  # before BatchNorm has a zero gradient up to rounding, which Adam scales to a full step,
  # and its first moment is rounding too: up to about 1e-6, hence atol).
  assert jax.device_count() == 2
  config = _tiny(blob_dir, name)
  one_device = Placement('jit', Mesh(np.array(jax.devices()[:1]), (AXIS,)))
  reference, losses = run_steps(config, one_device, num_steps=1)
  for mode in ('jit', 'pmap'):
    state, mode_losses = run_steps(config, make_placement(mode), num_steps=1)
    np.testing.assert_allclose(mode_losses, losses, rtol=1e-5)
    chex.assert_trees_all_close((state.batch_stats, state.opt_state),
                                (reference.batch_stats, reference.opt_state), rtol=1e-4,
                                atol=1e-5)


def _recipe_configs(blob_dir):
  """`{method: config}`: every method of Table 1 (compare's) and Table 2 (vgon_mnist,
  vae_mnist) with the paper's recipe, on the blob digits."""
  configs = {method: run_config(method, 'mnist', 0, 2, 'idx', str(blob_dir), {},
                                recipe='paper')
             for method in TABLE_1}
  for module in (vgon_mnist, vae_mnist):
    config = module.get_config()
    config.update_from_flattened_dict({**RECIPES['paper'], 'data.source': 'idx',
                                       'data.dir': str(blob_dir)})
    configs[config.model.name] = config
  return configs


def test_every_method_of_the_tables_takes_the_papers_recipe(blob_dir):
  configs = _recipe_configs(blob_dir)
  assert sorted(configs) == sorted([*TABLE_1, 'vgon', 'vae'])
  for config in configs.values():
    validate(config)
    assert config.model.norm == 'batch' and config.learning_rate == 1e-4
    assert config.gon.inner_reduction == 'official'  # read by the GONs only, refused by none


@pytest.mark.slow
@pytest.mark.parametrize('method', ['steps_10', 'glo', 'vgon'])
def test_the_papers_recipe_trains(blob_dir, method):
  # One method per model beside the encoder models (trained above): the GON (its inner loop
  # with the official reduction), GLO and the variational GON.
  config = _recipe_configs(blob_dir)[method]
  config.update_from_flattened_dict({'data.image_size': 8, 'model.features': 4,
                                     'model.latent_dim': 4, 'batch_size': 8})
  state, losses = run_steps(config, num_steps=2)
  assert np.isfinite(losses).all()
  assert jax.tree.leaves(state.batch_stats)  # BatchNorm is on
