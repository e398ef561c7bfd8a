"""Test-set evaluation: summed squared error and PSNR per image (Table 1)."""

import json
import os
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gon_jax import data
from gon_jax.core import origin
from gon_jax.encode import model_variables, reconstruct


def make_evaluator(model: nn.Module, config: ml_collections.ConfigDict
                   ) -> Callable[[dict, np.ndarray], tuple[dict, np.ndarray]]:
  """Builds `evaluate(variables, images) -> (metrics, reconstructions)`.

  Images are encoded from the origin (z0 = 0 even when training samples z0,
  App. C), in fixed-size batches so that one compilation serves every call;
  BatchNorm uses running averages throughout.

  Metrics: `sse`, the mean over images of the summed squared error of an
  image (the paper's Table 1 metric), and `psnr`, the mean over images of
  10 log10(1 / mean squared error), on [0, 1] pixels.
  """
  batch_size = config.eval_batch_size

  @jax.jit
  def per_image(variables, images):
    z0 = origin(images.shape[0], config.model.latent_dim)
    recon, _, _ = reconstruct(model, variables, images, z0, config, train=False)
    recon = jnp.clip(recon, 0.0, 1.0)
    sse = jnp.sum(jnp.square(recon - images).reshape(images.shape[0], -1), axis=1)
    mse = sse / np.prod(images.shape[1:])
    return recon, sse, 10.0 * jnp.log10(1.0 / jnp.maximum(mse, 1e-10))

  def evaluate(variables: dict, images: np.ndarray) -> tuple[dict, np.ndarray]:
    if config.num_eval_examples > 0:
      images = images[:config.num_eval_examples]
    recons, sses, psnrs = [], [], []
    for batch in data.eval_batches(images, np.zeros(len(images), np.int32), batch_size):
      chunk = batch['image']
      padded = np.concatenate(
          [chunk, np.zeros((batch_size - len(chunk), *chunk.shape[1:]), chunk.dtype)])
      recon, sse, psnr = jax.device_get(per_image(variables, padded))
      recons.append(recon[:len(chunk)])
      sses.append(sse[:len(chunk)])
      psnrs.append(psnr[:len(chunk)])
    metrics = {'sse': float(np.mean(np.concatenate(sses))),
               'psnr': float(np.mean(np.concatenate(psnrs))),
               'num_images': int(len(images))}
    return metrics, np.concatenate(recons)

  return evaluate


def write_json(path: str, metrics: dict) -> str:
  """Writes metrics as JSON and returns the JSON line."""
  line = json.dumps(metrics, sort_keys=True)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(line + '\n')
  return line


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Restores the latest checkpoint in `workdir` and evaluates it on the test split.

  Writes `workdir/eval/metrics.json` and `workdir/eval/reconstructions.png`
  and prints the metrics as one JSON line.

  Raises:
    FileNotFoundError: `workdir` holds no checkpoint.
  """
  from gon_jax import checkpoints, data, images, train  # pylint: disable=import-outside-toplevel
  model, _, template = train.setup(config)
  test_images, _ = data.load_split(config.data, 'test', config.data.image_size)
  if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    raise FileNotFoundError(f'no checkpoints in {workdir}; train first with train.py')
  state, step = checkpoints.restore_latest(
      checkpoints.manager(workdir, config, read_only=True), template)
  if step == 0:
    raise FileNotFoundError(f'no checkpoints in {workdir}; train first with train.py')
  metrics, recon = make_evaluator(model, config)(
      model_variables(state.params, state.batch_stats), test_images)
  metrics['step'] = step
  out = os.path.join(workdir, 'eval')
  line = write_json(os.path.join(out, 'metrics.json'), metrics)
  images.save_reconstructions(os.path.join(out, 'reconstructions.png'), test_images,
                              recon, config.grid_size)
  print(line)
  return metrics
