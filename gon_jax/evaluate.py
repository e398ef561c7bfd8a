"""Test-set evaluation (SSE and PSNR per image, Table 1; bits/dim, Table 2) and eval.py."""

import functools
import json
import os
import sys
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gon_jax import checkpoints, data, generate, images, parallel
from gon_jax.config import validate
from gon_jax.core import origin
from gon_jax.data import in_batches
from gon_jax.errors import DataError
from gon_jax.losses import bits_per_dim
from gon_jax.metric_writer import MetricWriter, nonfinite
from gon_jax.objectives import Objective, model_variables
from gon_jax.passes import Draws
from gon_jax.settings import EvalSettings
from gon_jax.state import setup


# Metrics that count things (images, samples): in metrics.json, not TensorBoard's scalars.
COUNTS = ('num_images', 'elbo_samples')


def make_encoder(objective: Objective, batch_size: int
                 ) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
  """Builds `encode(variables, images, progress=None) -> (latents, reconstructions)`, from z0 = 0.

  Args of the result: variables of the module; images `[n, height, width,
  channels]`, uint8 (load_split's, converted a batch at a time) or floats in [0, 1];
  progress, a progress bar's description as for `in_batches`.
  Returns latents `[n, latent_dim]` and reconstructions like images.
  BatchNorm uses running averages; batches of `batch_size` (fewer images: one
  batch padded to the next power of two, data.in_batches). The result compiles once per
  batch shape for all its calls: the variables are an argument.
  """
  encode_batch = parallel.jit(objective.encode, objective.performance)
  return lambda variables, images, progress=None: in_batches(
      lambda batch: encode_batch(variables, data.to_float(batch)), images, batch_size, progress)


def image_metrics(images: np.ndarray, reconstructions: np.ndarray) -> dict:
  """`sse`: the mean over images of an image's summed squared error (the paper's Table 1
  metric); `psnr`: the mean over images of 10 log10(1 / mean squared error), on [0, 1]
  pixels; `num_images`. Both arrays [n, ...], reconstructions already clipped to [0, 1];
  images uint8 (load_split's) or floats in [0, 1], converted a chunk at a time."""
  parts = []
  for start in range(0, len(images), 1024):  # Floats of 1024 images at a time, not of all.
    pixels = data.to_float(images[start:start + 1024])
    error = np.square(reconstructions[start:start + 1024] - pixels)
    parts.append(np.sum(error.reshape(len(pixels), -1), axis=1))  # Each image's on its own.
  sse = np.concatenate(parts) if parts else np.zeros(0, np.float32)
  mse = sse / np.prod(images.shape[1:])
  psnr = 10.0 * np.log10(1.0 / np.maximum(mse, 1e-10))
  return {'sse': float(np.mean(sse)), 'psnr': float(np.mean(psnr)), 'num_images': int(len(images))}


def make_evaluator(objective: Objective, evaluation: EvalSettings, encode: Callable | None = None
                   ) -> Callable[..., tuple[dict, np.ndarray, np.ndarray]]:
  """Builds `evaluate(variables, images, labels=None, progress=None) -> (metrics,
  reconstructions, latents)`.

  Images are encoded from the origin (z0 = 0 even when training samples z0,
  App. C), in fixed-size batches so that one compilation serves every call
  of `evaluation.batch_size` (`make_encoder`; `encode`, one to share, by default a new one),
  with the ELBO's samples of `evaluation` (`make_elbo`); BatchNorm uses
  running averages throughout.

  Metrics: `sse`, the mean over images of the summed squared error of an
  image (the paper's Table 1 metric), and `psnr`, the mean over images of
  10 log10(1 / mean squared error), on [0, 1] pixels; for variational models
  also `negative_elbo_nats` and `bits_per_dim` (see `make_elbo`); with a
  classifier and labels `[n]`, `accuracy`; `num_images` (see `COUNTS`).
  `progress`: a progress bar's description for the encoding (`in_batches`).
  The result raises DataError for labels that are not one per image.
  """
  encode = encode or make_encoder(objective, evaluation.batch_size)
  classify = parallel.jit(
      lambda variables, z: objective.model.apply(variables, z, method='classify'),
      objective.performance)
  num_classes = objective.classifier.num_classes

  def evaluate(variables: dict, images: np.ndarray, labels: np.ndarray | None = None,
               progress: str | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
    if num_classes and labels is not None and np.shape(labels) != (
        len(images),):
      raise DataError(f'labels must be [n] = [{len(images)}], one per image, got '
                      f'{list(np.shape(labels))}')
    latents, recon = encode(variables, images, progress)
    recon = np.clip(recon, 0.0, 1.0)
    metrics = image_metrics(images, recon)
    if num_classes and labels is not None:
      predicted = np.argmax(np.asarray(classify(variables, latents)), axis=-1)
      metrics['accuracy'] = float(np.mean(predicted == labels))
    return metrics, recon, latents

  if not objective.variational:
    return evaluate
  elbo = make_elbo(objective, evaluation)

  def evaluate_variational(variables, images, labels=None, progress=None):
    metrics, recon, latents = evaluate(variables, images, labels, progress)
    nats = elbo(variables, images, progress and f'{progress}: ELBO')
    metrics.update(negative_elbo_nats=float(np.mean(nats)),
                   elbo_samples=evaluation.elbo_samples,
                   bits_per_dim=float(np.mean(bits_per_dim(nats, np.prod(images.shape[1:])))))
    return metrics, recon, latents

  return evaluate_variational


def make_elbo(objective: Objective, evaluation: EvalSettings) -> Callable[..., np.ndarray]:
  """Builds `elbo(variables, images, progress=None) -> negative ELBO [n]` in nats, for
  variational models (`progress` as for `in_batches`).

  Each of `evaluation.elbo_samples` samples (fixed keys from `evaluation.seed`) draws the
  stochastic
  layer's noise for the GON's inner pass, which gives the latent and so a
  Gaussian posterior (the VAE's encoder needs none), and for the outer pass:
  the reconstruction term is a one-sample estimate, the KL term exact; the
  bound is averaged over the samples. The KL weight is 1 whatever training
  used. An image's noise is that of its row in a batch of `evaluation.batch_size`,
  also in the smaller batch `in_batches` gives fewer images: its bound does
  not depend on how many images come with it.
  """
  latent_dim, batch_size = objective.latent_dim, evaluation.batch_size

  @functools.partial(parallel.jit, performance=objective.performance)
  def batch_elbo(variables, images):
    z0 = origin(images.shape[0], latent_dim)

    def one_sample(key):
      # As in training, both passes sample the stochastic layer; each inner
      # sample gives a Gaussian posterior, and so a valid bound.
      noise = jax.random.normal(key, (2, batch_size, latent_dim))
      inner, outer = noise[:, :images.shape[0]]
      return objective.reconstruct(variables, images, z0,
                                   draws=Draws(inner_noise=inner, outer_noise=outer)).losses

    keys = jax.random.split(jax.random.key(evaluation.seed), evaluation.elbo_samples)
    return (jnp.mean(jax.vmap(one_sample)(keys), axis=0),)

  return lambda variables, images, progress=None: in_batches(
      lambda batch: batch_elbo(variables, data.to_float(batch)), images, batch_size, progress)[0]


def _write_grids(out: str, objective: Objective, variables: dict, evaluator: Callable,
                 config: ml_collections.ConfigDict, train_images: np.ndarray,
                 test_images: np.ndarray, recon: np.ndarray, latents: np.ndarray
                 ) -> dict[str, np.ndarray]:
  """eval.py's titled PNG grids in `out`; returns them by name (for TensorBoard)."""
  g = config.grid_size
  grids = {'reconstructions': images.save_reconstructions(
      os.path.join(out, 'reconstructions.png'), test_images, recon, g)}
  # Rows of pairs of test latents (first g to the next g), wrapping round a test set of
  # fewer than 2g images.
  pair = lambda start: latents[np.arange(start, start + g) % len(latents)]
  path = generate.slerp(pair(0), pair(g), np.linspace(0, 1, g))
  grids['interpolation'] = images.save_grid(
      os.path.join(out, 'interpolation.png'),
      [generate.decode(objective, variables, np.asarray(path).reshape(g * g, -1))], g,
      titles=['interpolation (slerp)'])
  key = jax.random.key(config.seed)
  if objective.variational:  # the prior N(0, I) of the stochastic layer
    codes = np.asarray(jax.random.normal(key, (g * g, config.model.latent_dim)))
    samples = generate.decode(objective, variables, codes, method='generate')
    title = 'samples (prior)'
  else:  # a Gaussian fitted to training latents (App. D)
    _, _, train_latents = evaluator(variables, train_images[:config.num_fit_examples],
                                    progress='encoding training images for sampling')
    codes = generate.sample_gaussian(key, *generate.fit_gaussian(train_latents), g * g)
    samples = generate.decode(objective, variables, codes)
    title = 'samples (Gaussian fit)'
  grids['samples'] = images.save_grid(os.path.join(out, 'samples.png'), [samples], g,
                                      titles=[title])
  if objective.spec.implicit:
    n, size = min(g * g, 16, len(test_images)), config.superres_size
    high = generate.render(objective, variables, latents[:n], size,
                           progress=f'rendering at {size}x{size}')
    grids['superres'] = images.save_grid(
        os.path.join(out, 'superres.png'),
        [images.upscale(test_images[:n], size), images.upscale(recon[:n], size), high],
        columns=int(np.sqrt(n)),
        titles=['test image', 'reconstruction', f'rendered at {size}x{size}'])
  return grids


def write_json(path: str, metrics: dict, source: str = 'the evaluated model') -> str:
  """Writes metrics (numbers, or dicts of them) as one JSON line and returns the line.

  Args:
    path: the file, its folder made if need be.
    metrics: what to write.
    source: what the metrics are of, for the error ('the checkpoint of step 400 in ...').

  Raises:
    DataError: a metric is NaN or infinite (JSON has no such numbers, and a trained model
      gives none): the message names each and why; nothing is written.
  """
  bad = nonfinite(metrics)
  if bad:
    listed = ', '.join(f'{name}={value}' for name, value in bad.items())
    raise DataError(f'non-finite metrics ({listed}) from {source}: its parameters give '
                    f'non-finite outputs (damaged, or training diverged); {path} not written')
  line = json.dumps(metrics, sort_keys=True, allow_nan=False)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(line + '\n')
  return line


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Restores the latest checkpoint in `workdir` and evaluates it on the test split.

  Prints the metrics as one JSON line and writes, in `workdir/eval/`:
  `metrics.json`; `reconstructions.png` (test images, left, and their
  reconstructions); `interpolation.png` (each row: spherical interpolation
  between the latents of two test images, Fig. 6); `samples.png` (decoded
  draws of a Gaussian fitted to training latents, App. D); for implicit
  models `superres.png` (test images, reconstructions, and the latents
  rendered at `superres_size`, Fig. 5); for 2-D latents `latents.png`
  (test latents coloured by class, Fig. 12). The grids, titled, also go to
  TensorBoard (`workdir/tensorboard`, tags `eval/<name>`) at the
  checkpoint's step, as do the metrics (`eval/sse`, ...). Progress bars on
  stderr follow the slow parts.

  Raises:
    FileNotFoundError: `workdir` holds no checkpoint (said before loading anything).
    ConfigError: the config does not fit the data or the checkpoint.
    DamagedFileError: the newest checkpoint is damaged (checkpoints.restore_latest).
    DataError: a metric is not finite (write_json); nothing is written.
  """
  settings = validate(config)
  folder = os.path.join(workdir, 'checkpoints')
  with checkpoints.manager(workdir, read_only=True) as manager:
    if manager.latest_step() is None:
      raise FileNotFoundError(f'no checkpoint in {folder}; train first: train.py with the '
                              'same --config and --workdir')
    train_images, _, test_images, test_labels = data.load_data(
        settings.data, settings.model['channels'], settings.classifier.num_classes)
    objective, _, template = setup(settings, len(train_images))
    state, step = checkpoints.restore_latest(manager, template)
  variables = model_variables(state.params, state.batch_stats)
  evaluator = make_evaluator(objective, settings.evaluation)
  metrics, recon, latents = evaluator(variables, test_images, test_labels,
                                      progress='encoding test images')
  metrics['step'] = step
  out = os.path.join(workdir, 'eval')
  # The first file written: metrics that are not finite leave nothing behind.
  line = write_json(os.path.join(out, 'metrics.json'), metrics,
                    source=f'the checkpoint of step {step} in {folder}')

  grids = _write_grids(out, objective, variables, evaluator, config, train_images, test_images,
                       recon, latents)
  if config.model.latent_dim == 2:
    images.save_scatter(os.path.join(out, 'latents.png'), latents, test_labels)
  if jax.process_index() == 0:
    writer = MetricWriter(workdir, jsonl=False)
    writer.write(step, {f'eval/{k}': v for k, v in metrics.items()
                        if k not in (*COUNTS, 'step')})
    for name, grid in grids.items():
      writer.write_image(step, f'eval/{name}', grid)
    writer.close()
  print(line)
  return metrics


if __name__ == '__main__':  # the command line lives on top, in gon_jax.cli, which imports this
  sys.exit('error: python -m gon_jax.evaluate is not a command; run python eval.py or gon-eval '
           '(the same flags)')
