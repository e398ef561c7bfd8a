"""A config's decoder as a GON: encode images at the origin, decode the latents.

Implicit decoders can also fit the losses on subsets of the coordinates
(Monte Carlo estimates of the integral over the image, `gon.inner_points`,
`gon.outer_points`), and the inner loss can observe only part of the image
(`gon.observe`: a low-resolution subset of pixels, or the image with a hole)
while the outer loss sees all of it (the paper's section 3.5).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gon_jax.core import origin_latent, squared_error
from gon_jax.models import IMPLICIT_MODELS, ConfigError
from gon_jax.siren import grid

INNER_REDUCTIONS = ('sum', 'mean', 'official')


def inner_loss_scale(config: ml_collections.ConfigDict) -> float:
  """Multiplier of the per-example summed inner loss, from `gon.inner_reduction`.

  'sum' sums over pixels, 'mean' averages over them; both keep latents
  independent of the batch. 'official' reproduces the official scripts:
  GON.py averages its inner loss over batch and pixels (latents shrink as
  1 / (batch * height * width)), Implicit-GON.py averages over batch and
  channels and sums over pixels. The training batch size fixes the scale, so
  that evaluation encodes as training did whatever its batch size.
  """
  reduction = config.gon.inner_reduction
  if reduction not in INNER_REDUCTIONS:
    raise ConfigError(f'unknown gon.inner_reduction {reduction!r}; '
                      f'valid: {", ".join(INNER_REDUCTIONS)}')
  pixels = config.data.image_size ** 2
  if reduction == 'official':
    implicit = config.model.name in IMPLICIT_MODELS
    return 1.0 / (config.batch_size * (config.model.channels if implicit else pixels))
  return {'sum': 1.0, 'mean': 1.0 / pixels}[reduction]


def observation_mask(config: ml_collections.ConfigDict) -> np.ndarray | None:
  """Which pixels the inner loss sees, from `gon.observe`; None for all of them.

  'all'; 'lowres:K': the pixels of every K-th row and column (a K-times
  smaller image, for super-resolution from low-resolution inputs); 'hole:S':
  all but a centred SxS square (inpainting).

  Returns:
    `[height, width, 1]` float32 of 0 and 1, or None.
  """
  observe, size = config.gon.observe, config.data.image_size
  kind, _, arg = observe.partition(':')
  if kind == 'all' and not arg:
    return None
  if kind in ('lowres', 'hole') and arg.isdigit() and 0 < int(arg) < size:
    k, mask = int(arg), np.zeros((size, size, 1), np.float32)
    if kind == 'lowres':
      mask[::k, ::k] = 1.0
    else:
      mask[:] = 1.0
      start = (size - k) // 2
      mask[start:start + k, start:start + k] = 0.0
    return mask
  raise ConfigError(f'unknown gon.observe {observe!r}; valid: all, lowres:K, hole:S '
                    f'(0 < K, S < {size})')


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for GON options that cannot work with this config."""
  inner_loss_scale(config)
  observation_mask(config)
  gon = config.gon
  subsets = gon.inner_points or gon.outer_points
  if subsets and config.model.name not in IMPLICIT_MODELS:
    raise ConfigError('gon.inner_points / gon.outer_points (coordinate subsets) need an '
                      f'implicit model ({", ".join(IMPLICIT_MODELS)}), not {config.model.name!r}')
  pixels = config.data.image_size ** 2
  for name in ('inner_points', 'outer_points'):
    if not 0 <= gon[name] <= pixels:
      raise ConfigError(f'gon.{name}={gon[name]}: use 0 (every pixel) to {pixels}')


def model_variables(params: dict, batch_stats: dict) -> dict:
  """Flax variables from parameters and (possibly empty) BatchNorm statistics."""
  return {'params': params, 'batch_stats': batch_stats} if batch_stats else {'params': params}


def sample_points(keys: jax.Array, num_pixels: int, num_points: int) -> jax.Array:
  """`num_points` distinct pixel indices per example, `[batch, num_points]` int32."""
  return jax.vmap(lambda key: jax.random.permutation(key, num_pixels)[:num_points])(keys)


def _gather(images: jax.Array, points: jax.Array | None) -> jax.Array:
  """Pixels `[batch, points, channels]` of images `[batch, height, width, channels]`."""
  if points is None:
    return images
  flat = images.reshape(images.shape[0], -1, images.shape[-1])
  return jnp.take_along_axis(flat, points[..., None], axis=1)


def reconstruct(model: nn.Module, variables: dict, images: jax.Array, z0: jax.Array,
                config: ml_collections.ConfigDict, train: bool,
                inner_points: jax.Array | None = None,
                outer_points: jax.Array | None = None
                ) -> tuple[jax.Array, jax.Array, jax.Array, dict]:
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
    inner_points, outer_points: implicit models only: pixel indices
      `[batch, points]` (see `sample_points`) at which the inner / outer loss
      is evaluated; None for every pixel. The inner loss on a subset is
      scaled by pixels / points, so that latents keep the scale of the whole
      image's.

  Returns:
    `(prediction, target, latents [batch, latent_dim], batch_stats)`:
    prediction and target are `[batch, height, width, channels]`, or
    `[batch, points, channels]` with `outer_points`; batch_stats are updated
    in a training pass, else as given ({} without BatchNorm).
  """
  coordinates = jnp.asarray(grid(config.data.image_size))
  mask = observation_mask(config)

  def decode(z, points, use_running_average=True, **kwargs):
    if points is None:
      return model.apply(variables, z, use_running_average, **kwargs)
    return model.apply(variables, z, use_running_average, coordinates=coordinates[points],
                       **kwargs)

  inner_target = _gather(images, inner_points)
  if mask is None:
    inner_loss = squared_error
  else:
    seen = mask[None] if inner_points is None else mask.reshape(-1)[inner_points][..., None]
    inner_loss = lambda prediction, target: squared_error(seen * prediction, seen * target)
  gon = config.gon
  scale = inner_loss_scale(config)
  if inner_points is not None:  # a Monte Carlo estimate of the loss over the whole image
    scale *= coordinates.shape[0] / inner_points.shape[1]
  latents = origin_latent(
      lambda z: decode(z, inner_points), inner_target, z0, inner_loss,
      num_steps=gon.num_steps, step_size=gon.step_size, loss_scale=scale,
      start_from_z0=gon.start_from_z0, detach=gon.detach)
  target = _gather(images, outer_points)
  if train and 'batch_stats' in variables:
    prediction, updates = decode(latents, outer_points, False, mutable=['batch_stats'])
    return prediction, target, latents, updates['batch_stats']
  prediction = decode(latents, outer_points)
  return prediction, target, latents, variables.get('batch_stats', {})
