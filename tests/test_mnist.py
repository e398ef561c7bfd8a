"""Integration: the conv GON learns real MNIST (../shared/data/mnist)."""

import pytest

from gon_jax.config import to_settings
from gon_jax import data
from gon_jax.evaluate import make_evaluator
from gon_jax.objectives import model_variables
from gon_jax.state import setup
from gon_jax.train import train_and_evaluate

from testing_utils import MNIST_DIR, NEEDS_MNIST

from gon_jax.configs import conv_mnist

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=NEEDS_MNIST)]


@pytest.mark.slow
def test_conv_gon_improves_on_its_initialisation(tmp_path):
  config = conv_mnist.get_config()
  config.data.source, config.data.dir = 'idx', str(MNIST_DIR)
  config.num_steps, config.eval_every, config.checkpoint_every = 60, 60, 60
  config.train_eval_examples = 1000
  objective, _, initial = setup(to_settings(config))
  test_images = data.load_split(config.data, 'test', config.data.image_size)[0][:1000]
  evaluate = make_evaluator(objective, to_settings(config).evaluation)
  before, _, _ = evaluate(model_variables(initial.params, initial.batch_stats), test_images)
  final = train_and_evaluate(config, str(tmp_path))
  after, _, _ = evaluate(model_variables(final.params, final.batch_stats), test_images)
  # A 32x32 MNIST digit is about 100 summed squared error from black; the
  # untrained sigmoid decoder outputs ~0.5 everywhere (~250).
  assert before['sse'] > 150
  assert after['sse'] < 0.6 * before['sse']
