"""A config's decoder as a GON: encode images at the origin, decode the latents."""

import flax.linen as nn
import jax
import ml_collections

from gon_jax.core import origin_latent, squared_error
from gon_jax.models import ConfigError

INNER_REDUCTIONS = ('sum', 'mean', 'official')


def inner_loss_scale(config: ml_collections.ConfigDict) -> float:
  """Multiplier of the per-example summed inner loss, from `gon.inner_reduction`.

  'sum' sums over pixels, 'mean' averages over them; both keep latents
  independent of the batch. 'official' reproduces GON.py, whose inner loss is
  a mean over the batch and the pixels, so its latents shrink as
  1 / (batch_size * height * width); the training batch size fixes the scale,
  so that evaluation encodes as training did whatever its batch size.
  """
  reduction = config.gon.inner_reduction
  if reduction not in INNER_REDUCTIONS:
    raise ConfigError(f'unknown gon.inner_reduction {reduction!r}; '
                      f'valid: {", ".join(INNER_REDUCTIONS)}')
  pixels = config.data.image_size ** 2
  return {'sum': 1.0, 'mean': 1.0 / pixels,
          'official': 1.0 / (config.batch_size * pixels)}[reduction]


def model_variables(params: dict, batch_stats: dict) -> dict:
  """Flax variables from parameters and (possibly empty) BatchNorm statistics."""
  return {'params': params, 'batch_stats': batch_stats} if batch_stats else {'params': params}


def reconstruct(model: nn.Module, variables: dict, images: jax.Array,
                z0: jax.Array, config: ml_collections.ConfigDict,
                train: bool) -> tuple[jax.Array, jax.Array, dict]:
  """Encodes images with the gradient at the origin, then decodes the latents.

  The inner pass always normalises with BatchNorm's running averages: at z0
  every example is the same, so batch statistics would have zero variance and
  make an image's latent depend on its batch. The outer pass uses batch
  statistics in training only.

  Args:
    model: decoder called as `model.apply(variables, z, use_running_average)`.
    variables: `{'params': ..., ['batch_stats': ...]}`.
    images: `[batch, height, width, channels]` in [0, 1].
    z0: starting latents `[batch, latent_dim]`.
    config: experiment config (`gon.*`, `batch_size`, `data.image_size`).
    train: whether this is a training pass (updates BatchNorm statistics).

  Returns:
    `(reconstructions [batch, height, width, channels],
      latents [batch, latent_dim],
      batch_stats: updated in a training pass, else as given; {} without BatchNorm)`.
  """
  gon = config.gon
  decode_at_origin = lambda z: model.apply(variables, z, use_running_average=True)
  latents = origin_latent(
      decode_at_origin, images, z0, squared_error, num_steps=gon.num_steps,
      step_size=gon.step_size, loss_scale=inner_loss_scale(config),
      start_from_z0=gon.start_from_z0, detach=gon.detach)
  if train and 'batch_stats' in variables:
    recon, updates = model.apply(variables, latents, use_running_average=False,
                                 mutable=['batch_stats'])
    return recon, latents, updates['batch_stats']
  recon = model.apply(variables, latents, use_running_average=True)
  return recon, latents, variables.get('batch_stats', {})
