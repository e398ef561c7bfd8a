"""gon_jax's GON step against the official recipe in eager PyTorch, from the same parameters.

benchmarks/pytorch_reference.py writes GON.py's network and step with torch.nn; started
from the same parameters on the same batches, gon_jax's jitted step must follow the same
trajectory: then a gap between the two at equal steps (docs/results.md, "Fidelity") comes from the
draw of initial parameters, not from the implementation.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from testing_utils import REPO

torch = pytest.importorskip('torch', reason='needs torch, the yardstick (pip install torch)')
sys.path.insert(0, str(REPO / 'benchmarks'))

import pytorch_reference  # pylint: disable=wrong-import-position

from gon_jax.config import to_settings
from gon_jax.configs import (ae_mnist, conv_mnist, siren_mnist_tiny, vae_mnist,  # pylint: disable=wrong-import-position
                     vgon_mnist)
from gon_jax.coordinates import grid  # pylint: disable=wrong-import-position
from gon_jax.core import origin  # pylint: disable=wrong-import-position
from gon_jax.passes import Draws  # pylint: disable=wrong-import-position
from gon_jax.parallel import make_placement  # pylint: disable=wrong-import-position
from gon_jax.state import setup  # pylint: disable=wrong-import-position
from gon_jax.train_step import compile_train_step  # pylint: disable=wrong-import-position


def _config(model: str):
  if model == 'siren':
    config = siren_mnist_tiny.get_config()
    config.data.image_size, config.performance.scan_chunk = 12, 0
    config.performance.fast_sine = False  # jnp.sin: the fast one differs in the 5th digit
  else:  # conv_mnist's inner loss, per example summed: PyTorch's outer loss is then 8 times
    # gon_jax's (a sum over the batch, not a mean), which Adam does not see. (With GON.py's
    # 'official' scale, 1024 times smaller than gon_jax's, Adam's epsilon makes parameters
    # with tiny gradients move differently: the losses still agree to 1e-4.)
    config = (ae_mnist if model.startswith('ae') else conv_mnist).get_config()
    config.model.norm = model.split('_', 1)[1]
  config.batch_size, config.learning_rate = 8, 1e-4
  return config


@pytest.mark.parametrize('model', ['conv_layer', 'conv_none', 'siren', 'ae_layer'])
def test_gon_follows_pytorch_from_the_same_parameters(model):
  config = _config(model)
  recipe = pytorch_reference.Recipe(config)
  if model == 'siren':  # both linspace(-1, 1), but torch and numpy round some in the last bit
    recipe.coordinates = torch.tensor(grid(12).reshape(-1, 2))
  _, tx, state = setup(to_settings(config), num_train_examples=8)
  params = jax.tree.map(jnp.asarray, recipe.flax_params())
  assert jax.tree.structure(params) == jax.tree.structure(state.params)
  state = state.replace(params=params, opt_state=tx.init(params))
  placement = make_placement(config.parallel)
  step = compile_train_step(to_settings(config), placement, tx)
  device_state = placement.put_state(state)
  rng = np.random.default_rng(0)
  for _ in range(10):
    size = config.data.image_size
    batch = {'image': rng.random((8, size, size, 1), np.float32), 'label': np.zeros(8, np.int32),
             'index': np.arange(8, dtype=np.int32)}
    device_state, metrics = step(device_state, placement.put_batch(batch))
    torch_loss = float(recipe.step(batch['image'])) / recipe.scale / 8  # per image, summed
    np.testing.assert_allclose(float(metrics['reconstruction']), torch_loss, rtol=1e-4)
  # Adam moves a parameter by up to the learning rate whatever its gradient's size, so the
  # few whose gradients are float-rounding small may differ by a step; the rest agree.
  trained = jax.tree.map(np.asarray, placement.get(device_state).params)
  for ours, theirs in zip(jax.tree.leaves(trained), jax.tree.leaves(recipe.flax_params())):
    assert np.max(np.abs(ours - theirs)) <= config.learning_rate
    assert np.mean(np.abs(ours - theirs)) < 1e-5


@pytest.mark.parametrize('model', ['vgon', 'vae'])
def test_variational_loss_and_gradients_follow_pytorch(model):
  """The variational GON and the VAE: from the same parameters, batch and noise of the
  stochastic layer (inner and outer pass), each example's negative ELBO and the gradients
  of their mean agree with Variational-GON.py's computation in PyTorch."""
  config = (vgon_mnist if model == 'vgon' else vae_mnist).get_config()
  config.batch_size = 8
  recipe = pytorch_reference.Recipe(config)
  objective, _, state = setup(to_settings(config), num_train_examples=8)
  params = jax.tree.map(jnp.asarray, recipe.flax_params())
  assert jax.tree.structure(params) == jax.tree.structure(state.params)
  rng = np.random.default_rng(0)
  images = rng.random((8, 32, 32, 1), np.float32)
  inner, outer = rng.standard_normal((2, 8, config.model.latent_dim), np.float32)

  def mean_loss(params):
    draws = Draws(inner_noise=inner, outer_noise=outer)
    losses = objective.reconstruct({'params': params}, images, origin(8, 48), draws=draws,
                                   train=True).losses
    return jnp.mean(losses), losses

  (_, ours), gradients = jax.value_and_grad(mean_loss, has_aux=True)(params)
  x = recipe.as_tensor(images)
  theirs = recipe.per_example_loss(
      recipe.decode(recipe.latents(x, True, torch.tensor(inner)), torch.tensor(outer)), x)
  theirs.mean().backward()
  np.testing.assert_allclose(np.asarray(ours), theirs.detach().numpy(), rtol=1e-5)
  flat = lambda tree: jax.tree_util.tree_flatten_with_path(tree)[0]
  for (path, ours), (_, theirs) in zip(flat(gradients), flat(recipe.flax_params(True))):
    scale = np.max(np.abs(theirs))
    np.testing.assert_allclose(ours, theirs, atol=1e-4 * scale, rtol=1e-3, err_msg=str(path))
