"""Time to quality: trains a config until its test metric reaches a threshold.

Every `--check_every` steps the model is evaluated on a fixed subset of the
test split (its first `--subset` images); once the subset reaches the
threshold, the whole test split confirms it (if it does not, training goes
on). Reports, as one JSON line: the steps, the training seconds (train steps
only, compilation excluded), the compilation seconds, the evaluation seconds
and the total wall-clock seconds from the start of training.

  python benchmarks/time_to_quality.py --config configs/conv_mnist.py \\
      --metric sse --threshold 9.94 [--config.learning_rate=1e-4 ...]

`--metric sse` stops at or below the threshold; `psnr` at or above it;
`bits_per_dim` (variational models: the negative ELBO, `elbo_samples` draws)
at or below it. The last check's subset metrics are reported either way, so that
`--max_steps N --check_every N` with an unreachable threshold measures the
test subset after N steps (equal-step comparisons).
`--pytorch` trains the config's network by the official recipe in eager
PyTorch instead (benchmarks/pytorch_reference.py; needs torch), on the same
batches, checked on the same images with the same metrics.
"""

import json
import os
import sys
import time
from typing import Callable, NamedTuple

from absl import app, flags, logging
from ml_collections import config_flags
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=wrong-import-position

from gon_jax import data, evaluate, losses, models  # pylint: disable=wrong-import-position
from gon_jax.config import to_settings, validate  # pylint: disable=wrong-import-position
from gon_jax.objectives import model_variables  # pylint: disable=wrong-import-position
from gon_jax.parallel import make_placement  # pylint: disable=wrong-import-position
from gon_jax.state import setup  # pylint: disable=wrong-import-position
from gon_jax.train_step import compile_train_step  # pylint: disable=wrong-import-position

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (configs/*.py).')
_METRIC = flags.DEFINE_enum('metric', 'sse', ['sse', 'psnr', 'bits_per_dim'],
                            'Test metric to reach.')
_THRESHOLD = flags.DEFINE_float('threshold', None, 'Value of the metric to reach.')
_CHECK_EVERY = flags.DEFINE_integer('check_every', 25, 'Steps between checks on the subset.')
_SUBSET = flags.DEFINE_integer('subset', 1000, 'Test images of the quick check.')
_MAX_STEPS = flags.DEFINE_integer('max_steps', 5000, 'Give up after this many steps.')
_PYTORCH = flags.DEFINE_bool('pytorch', False, "Train by the official recipe in eager PyTorch.")
flags.mark_flags_as_required(['config', 'threshold'])



class Trainer(NamedTuple):
  step: Callable[[], None]  # one training step on the next batch, possibly asynchronous
  sync: Callable[[], None]  # waits for the steps run so far
  evaluate: Callable[[np.ndarray], dict]  # test images -> {'sse', 'psnr', ...}
  close: Callable[[], None]


def reached(results: dict) -> bool:
  value = results[_METRIC.value]
  return value >= _THRESHOLD.value if _METRIC.value == 'psnr' else value <= _THRESHOLD.value


def gon_jax_trainer(config, train_images: np.ndarray, train_labels: np.ndarray) -> Trainer:
  """train.py's step, placement and input pipeline."""
  placement = make_placement(config.parallel)
  settings = to_settings(config)
  objective, tx, state = setup(settings, len(train_images))
  step_fn = compile_train_step(settings, placement, tx)
  evaluator = evaluate.make_evaluator(objective, settings.evaluation)
  batches = data.prefetch(data.train_batches(train_images, train_labels, config.batch_size,
                                             config.seed), placement.put_batch)
  box = {'state': placement.put_state(state), 'metrics': None}

  def step():
    box['state'], box['metrics'] = step_fn(box['state'], next(batches))

  def evaluate_images(images):
    host = placement.get(box['state'])
    return evaluator(model_variables(host.params, host.batch_stats), images)[0]

  return Trainer(step, lambda: jax.block_until_ready(box['metrics']), evaluate_images,
                 batches.close)


def pytorch_trainer(config, train_images: np.ndarray, train_labels: np.ndarray) -> Trainer:
  """The official recipe in eager PyTorch on the same batches (synchronous)."""
  try:
    import pytorch_reference  # pylint: disable=import-outside-toplevel
  except ImportError as err:  # torch is the benchmark's, not a dependency of gon_jax
    sys.exit(f'error: --pytorch needs torch ({err}); pip install torch')
  try:
    recipe = pytorch_reference.Recipe(config)
  except ValueError as err:
    sys.exit(f'error: {err}')
  batches = data.train_batches(train_images, train_labels, config.batch_size, config.seed)

  def evaluate_images(images):
    images = data.to_float(images)  # load_split's uint8, as the recipe's network takes them
    metrics = evaluate.image_metrics(images, recipe.reconstruct(images))
    if recipe.variational:
      metrics['bits_per_dim'] = float(np.mean(
          losses.bits_per_dim(recipe.negative_elbo(images), np.prod(images.shape[1:]))))
    return metrics

  return Trainer(lambda: recipe.step(next(batches)['image']), lambda: None, evaluate_images,
                 batches.close)


def _named(prefix: str, metrics: dict) -> dict:
  return {f'{prefix}_{name}': metrics[name] for name in ('sse', 'psnr', 'bits_per_dim')
          if name in metrics}


def time_to_quality(config) -> dict:
  """Trains until the metric reaches the threshold on the whole test split."""
  validate(config)
  if _METRIC.value == 'bits_per_dim' and not models.get_spec(config.model.name).variational:
    sys.exit(f'error: --metric bits_per_dim needs a variational model, not {config.model.name!r}')
  train_images, train_labels, test_images, _ = data.load_data(
      config.data, config.model.channels, config.classifier.num_classes)
  trainer = (pytorch_trainer if _PYTORCH.value else gon_jax_trainer)(
      config, train_images, train_labels)
  start = time.perf_counter()
  trainer.step()
  trainer.sync()
  compile_seconds = time.perf_counter() - start
  train_seconds = eval_seconds = 0.0
  result = {'reached': False}
  segment_start = time.perf_counter()  # steps may run asynchronously: time whole segments
  try:
    for step in range(2, _MAX_STEPS.value + 1):
      trainer.step()
      if step % _CHECK_EVERY.value:
        continue
      trainer.sync()
      tock = time.perf_counter()
      train_seconds += tock - segment_start
      quick = trainer.evaluate(test_images[:_SUBSET.value])
      result = {'reached': False, 'step': step, **_named('subset', quick)}
      if reached(quick):
        full = trainer.evaluate(test_images)
        result.update(reached=reached(full), **_named('test', full))
      segment_start = time.perf_counter()
      eval_seconds += segment_start - tock
      if result['reached']:
        break
  finally:
    trainer.close()
  return {**result, 'train_seconds': round(train_seconds, 2),
          'compile_seconds': round(compile_seconds, 2),
          'eval_seconds': round(eval_seconds, 2),
          'total_seconds': round(time.perf_counter() - start, 2),
          'metric': _METRIC.value, 'threshold': _THRESHOLD.value, 'seed': config.seed,
          'framework': 'pytorch' if _PYTORCH.value else 'gon_jax',
          'device': 'cpu (torch)' if _PYTORCH.value else jax.devices()[0].device_kind}


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  print(json.dumps(time_to_quality(_CONFIG.value)))


if __name__ == '__main__':
  app.run(main)
