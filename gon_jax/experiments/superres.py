"""Super-resolution, measured: an implicit GON trained only on images downsampled
by --factor renders their test latents at full size, scored against the true
images next to bicubic and nearest-neighbour upsampling of the same inputs.

  python -m gon_jax.experiments.superres --config configs/siren_mnist_tiny.py \\
      --workdir runs/superres_mnist [--factor 2]

The config's data.image_size is the full size (28 for MNIST); the GON trains
(train.py's loop, resuming) at image_size / factor into --workdir, on the data
pipeline's own downsampling (bilinear with antialiasing, centred on blocks of
factor x factor pixels). Its latents are rendered on the full-size pixel
centres in the small grid's frame (gon_jax.coordinates.upsampling_grid).
Writes WORKDIR/superres/metrics.json (SSE and PSNR per method over the test
split) and superres.png (input, bicubic, GON, truth), and prints the table.
"""

import os

import jax
import ml_collections
import numpy as np
from absl import flags

from gon_jax import data, generate, images
from gon_jax.config import to_settings, validate
from gon_jax.coordinates import upsampling_grid
from gon_jax.errors import ConfigError
from gon_jax.evaluate import image_metrics, make_encoder, write_json
from gon_jax.models import get_spec
from gon_jax.objectives import model_variables
from gon_jax.state import setup
from gon_jax.train import train_and_evaluate

BASELINES = ('bicubic', 'nearest')


def downsampled_config(config: ml_collections.ConfigDict,
                       factor: int) -> ml_collections.ConfigDict:
  """`config` training at `data.image_size / factor`; ConfigError if that cannot work."""
  size = config.data.image_size
  if not get_spec(config.model.name).implicit:
    raise ConfigError(f'super-resolution needs an implicit model (siren), not '
                      f'{config.model.name!r}')
  if factor < 2 or size % factor or size // factor < 2:
    raise ConfigError(f'--factor {factor} must be at least 2 and divide data.image_size {size} '
                      f'into at least 2 pixels')
  small = ml_collections.ConfigDict(config.to_dict())  # a copy, unlocked
  small.data.image_size = size // factor
  small.lock()
  validate(small)
  return small


def measure(config: ml_collections.ConfigDict, workdir: str, factor: int) -> dict:
  """Trains (or resumes) at the small size, then scores super-resolution on the test split.

  Returns:
    `{'gon' | 'bicubic' | 'nearest': image_metrics against the full-size
    images, 'gon_at_input_size': the GON's reconstructions of its inputs,
    'factor', 'step'}`.
  """
  small = downsampled_config(config, factor)
  size, low = config.data.image_size, small.data.image_size
  state = train_and_evaluate(small, workdir)  # the trained (or restored) state
  step = int(state.step)
  # The test split as floats: the baselines resize them, the metrics compare them.
  truth = data.to_float(data.load_split(to_settings(config).data, 'test', size,
                                        config.model.channels)[0])
  inputs = data.to_float(data.load_split(to_settings(small).data, 'test', low,
                                         small.model.channels)[0])
  objective = setup(to_settings(small), num_train_examples=1)[0]
  variables = model_variables(state.params, state.batch_stats)
  latents, reconstructions = make_encoder(objective, small.eval_batch_size)(
      variables, inputs, progress='encoding test images')
  rendered = generate.render(objective, variables, latents, size,
                             small.eval_batch_size, f'rendering at {size}x{size}',
                             coordinates=upsampling_grid(low, factor))
  outputs = {'gon': rendered}
  for method in BASELINES:
    outputs[method] = np.asarray(jax.image.resize(inputs, truth.shape, method))
  outputs = {name: np.clip(x, 0.0, 1.0) for name, x in outputs.items()}
  results = {name: image_metrics(truth, x) for name, x in outputs.items()}
  results['gon_at_input_size'] = image_metrics(inputs, np.clip(reconstructions, 0.0, 1.0))
  results.update(factor=factor, step=step)
  out = os.path.join(workdir, 'superres')
  write_json(os.path.join(out, 'metrics.json'), results)
  n = min(config.grid_size ** 2, len(truth))
  images.save_grid(os.path.join(out, 'superres.png'),
                   [images.upscale(inputs[:n], size), outputs['bicubic'][:n], rendered[:n],
                    truth[:n]], config.grid_size,
                   titles=[f'input {low}x{low}', 'bicubic', 'GON', f'truth {size}x{size}'])
  print(f'super-resolution {low}x{low} -> {size}x{size}, {len(truth)} test images, step {step}:')
  for name in ('gon', *BASELINES):
    print(f'  {name:8s} PSNR {results[name]["psnr"]:.2f} dB, SSE {results[name]["sse"]:.3f}')
  return results


if __name__ == '__main__':
  # train.py's flags (--config, --workdir) come with gon_jax.cli: imported here
  # only, so that importing this module defines no flags.
  from gon_jax import cli  # pylint: disable=wrong-import-position
  _FACTOR = flags.DEFINE_integer('factor', 2, 'Downsampling factor of the training images.')
  cli.run(lambda config, workdir: measure(config, workdir, _FACTOR.value), __doc__,
          interrupted=cli.training_interrupted)
