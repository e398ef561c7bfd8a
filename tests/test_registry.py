"""Adding a decoder is one module and one registry line: a toy decoder defined only
here trains through train.py's code path and is evaluated by eval.py's."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from gon_jax import config as config_lib
from gon_jax.config import to_settings
from gon_jax import data, models, objectives
from gon_jax.errors import ConfigError
from gon_jax.settings import PerformanceSettings, Settings
from gon_jax.evaluate import evaluate_checkpoint, make_evaluator
from gon_jax.state import setup
from gon_jax.train import train_and_evaluate


class ToyDecoder(nn.Module):
  """latent -> one hidden layer -> image in (0, 1)."""
  hidden: int
  image_size: int
  channels: int

  @nn.compact
  def __call__(self, z: jax.Array, use_running_average: bool) -> jax.Array:
    del use_running_average  # no batch statistics
    h = jnp.tanh(nn.Dense(self.hidden)(z))
    pixels = nn.Dense(self.image_size * self.image_size * self.channels)(h)
    return nn.sigmoid(pixels).reshape(z.shape[0], self.image_size, self.image_size,
                                      self.channels)


def _default_options() -> dict:
  return dict(latent_dim=6, hidden=32, channels=1)


def _check(settings: Settings) -> None:
  if settings.model['hidden'] < 1:
    raise ConfigError(f'model.hidden={settings.model["hidden"]}: use at least 1 unit')


def _forward_flops(settings: Settings, batch_size: int, points: int = 0) -> int:
  del points
  m, pixels = settings.model, settings.data.image_size ** 2
  return batch_size * 2 * m['hidden'] * (m['latent_dim'] + pixels * m['channels'])


def _build(*, latent_dim: int, hidden: int, channels: int, image_size: int,
           performance: PerformanceSettings, axis_name: str | None) -> ToyDecoder:
  del latent_dim, performance, axis_name  # sized by its input; no options, no batch statistics
  return ToyDecoder(hidden, image_size, channels)


TOY = models.ModelSpec(objective=objectives.GON, default_options=_default_options, check=_check,
                       forward_flops=_forward_flops, build=_build)


@pytest.fixture(name='toy_registered')
def _toy_registered():
  models.register('toy', TOY)  # the one registry line
  yield
  del models.MODELS['toy']


def _toy_config(blob_dir):
  config = config_lib.base_config('toy')
  config.data.dir = str(blob_dir)
  config.data.image_size = 12
  config.batch_size = 16
  config.num_steps = 30
  config.learning_rate = 1e-2
  config.log_every = config.eval_every = config.checkpoint_every = 30
  config.eval_batch_size = 32
  config.grid_size = 2
  config.num_fit_examples = 64
  return config


@pytest.mark.slow
@pytest.mark.usefixtures('toy_registered')
def test_a_registered_toy_decoder_trains_and_evaluates(blob_dir, tmp_path):
  config = _toy_config(blob_dir)
  workdir = tmp_path / 'toy'
  state = train_and_evaluate(config, str(workdir))
  assert int(state.step) == 30
  assert set(state.params) == {'Dense_0', 'Dense_1'}
  metrics = evaluate_checkpoint(config, str(workdir))
  assert metrics['step'] == 30 and metrics['num_images'] == 64
  for name in ('reconstructions', 'interpolation', 'samples'):
    assert (workdir / 'eval' / f'{name}.png').is_file()
  # It learnt through the GON's latents: the test SSE fell well below the
  # untrained decoder's.
  _, _, test_images, _ = data.load_data(
      config.data, config.model.channels, config.classifier.num_classes)
  objective, _, initial = setup(to_settings(config))
  untrained, _, _ = make_evaluator(objective, to_settings(config).evaluation)(
      objectives.model_variables(initial.params, initial.batch_stats), test_images)
  assert metrics['sse'] < 0.8 * untrained['sse'], (metrics['sse'], untrained['sse'])


@pytest.mark.usefixtures('toy_registered')
def test_the_toy_decoders_options_are_checked_by_the_one_config_check(blob_dir):
  config = _toy_config(blob_dir)
  config_lib.validate(config)
  config.model.hidden = 0
  with pytest.raises(ConfigError, match='model.hidden=0'):
    config_lib.validate(config)
  config.model.hidden = 8
  config.gon.inner_points = 10  # coordinate subsets need an implicit model
  with pytest.raises(ConfigError, match="needs an implicit model .*siren.*, not 'toy'"):
    config_lib.validate(config)
  config.gon.inner_points = 0
  config.classifier.num_classes = 4  # the spec does not take a classifier head
  with pytest.raises(ConfigError, match="classifier.num_classes needs a GON model"):
    config_lib.validate(config)


def test_an_unregistered_model_lists_the_registered_ones():
  with pytest.raises(ConfigError, match="unknown model 'toy'; valid: conv, siren, vgon"):
    config_lib.base_config('toy')


def test_every_config_file_names_a_registered_model_and_validates():
  import importlib  # pylint: disable=import-outside-toplevel
  import pathlib  # pylint: disable=import-outside-toplevel
  names = sorted(p.stem for p in (pathlib.Path(__file__).parents[1] / 'configs').glob('*.py')
                 if p.stem not in ('__init__', 'common'))
  assert len(names) >= 17
  for name in names:
    config = importlib.import_module(f'gon_jax.configs.{name}').get_config()
    assert config.model.name in models.MODELS, name
    config_lib.validate(config)
