"""A config's decoder as a GON: encode images at the origin, decode the latents.

Implicit decoders can also fit the losses on subsets of the coordinates
(Monte Carlo estimates of the integral over the image, `gon.inner_points`,
`gon.outer_points`), and the inner loss can observe only part of the image
(`gon.observe`: a low-resolution subset of pixels, or the image with a hole)
while the outer loss sees all of it (the paper's section 3.5).
"""

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gon_jax.core import origin_latent, squared_error
from gon_jax.losses import LIKELIHOODS, negative_elbo
from gon_jax.glo import fit_latents
from gon_jax.models import (ENCODER_MODELS, IMPLICIT_MODELS, LATENT_TABLE_MODELS,
                            VARIATIONAL_MODELS, ConfigError)
from gon_jax.siren import grid

INNER_REDUCTIONS = ('sum', 'mean', 'official')


def inner_loss_scale(config: ml_collections.ConfigDict) -> float:
  """Multiplier of the per-example summed inner loss, from `gon.inner_reduction`.

  'sum' sums over pixels, 'mean' averages over them; both keep latents
  independent of the batch. 'official' reproduces the official scripts, which
  average over the batch (latents shrink as 1 / batch_size) and more: GON.py
  also over pixels, Implicit-GON.py over channels, Variational-GON.py over
  nothing else (its ELBO sums over pixels). The training batch size fixes the
  scale, so that evaluation encodes as training did whatever its batch size.
  """
  reduction = config.gon.inner_reduction
  if reduction not in INNER_REDUCTIONS:
    raise ConfigError(f'unknown gon.inner_reduction {reduction!r}; '
                      f'valid: {", ".join(INNER_REDUCTIONS)}')
  pixels = config.data.image_size ** 2
  if reduction == 'official':
    also_averaged = {'conv': pixels, 'siren': config.model.channels}.get(config.model.name, 1)
    return 1.0 / (config.batch_size * also_averaged)
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
  gon, m = config.gon, config.model
  pixels = config.data.image_size ** 2
  if gon.num_steps < 1:
    raise ConfigError(f'gon.num_steps={gon.num_steps}: the latent needs at least 1 gradient step')
  for name in ('inner_points', 'outer_points'):
    if gon[name] and m.name not in IMPLICIT_MODELS:
      raise ConfigError(f'gon.{name} (coordinate subsets) needs an implicit model '
                        f'({", ".join(IMPLICIT_MODELS)}), not {m.name!r}')
    if not 0 <= gon[name] <= pixels:
      raise ConfigError(f'gon.{name}={gon[name]}: use 0 (every pixel) to {pixels}')
  if m.name in VARIATIONAL_MODELS:
    if m.likelihood not in LIKELIHOODS:
      raise ConfigError(f'unknown model.likelihood {m.likelihood!r}; '
                        f'valid: {", ".join(LIKELIHOODS)}')
    if gon.observe != 'all':
      raise ConfigError(f'gon.observe needs a squared-error model, not {m.name!r}')
  if m.get('norm') == 'batch' and (config.scan_chunk or m.name in ENCODER_MODELS):
    raise ConfigError('norm batch does not work with scan_chunk (a few examples at a time) '
                      'or with an encoder model; use norm layer, group or none')


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


class Draws(NamedTuple):
  """The random choices of one training pass; None where not drawn.

  inner_points, outer_points: implicit models: pixel indices `[batch,
    points]` at which the inner / outer loss is evaluated (Monte Carlo).
  inner_noise, outer_noise: variational models: standard normal `[batch,
    latent_dim]` for the reparameterisation in the inner / outer pass; None
    decodes the posterior mean.
  """
  inner_points: jax.Array | None = None
  outer_points: jax.Array | None = None
  inner_noise: jax.Array | None = None
  outer_noise: jax.Array | None = None


def draw(config: ml_collections.ConfigDict, keys: jax.Array, num_pixels: int) -> Draws:
  """Draws a training pass's random choices from one PRNG key per example `[batch]`."""
  gon, variational = config.gon, config.model.name in VARIATIONAL_MODELS
  keys = jax.vmap(lambda key: jax.random.split(key, 4))(keys)
  noise = lambda k: jax.vmap(lambda key: jax.random.normal(key, (config.model.latent_dim,)))(k)
  return Draws(
      inner_points=sample_points(keys[:, 0], num_pixels, gon.inner_points) if gon.inner_points else None,
      outer_points=sample_points(keys[:, 1], num_pixels, gon.outer_points) if gon.outer_points else None,
      inner_noise=noise(keys[:, 2]) if variational else None,
      outer_noise=noise(keys[:, 3]) if variational else None)


def outer_loss_fn(config: ml_collections.ConfigDict, kl_weight: float | jax.Array = 1.0
                  ) -> Callable[[Any, jax.Array], jax.Array]:
  """The per-example data-fitting loss `(decoder outputs, target) -> [batch]`.

  Summed squared error, or for variational models the negative ELBO with
  `kl_weight` on the KL term. The inner loss is the same function, seeing
  only the observed pixels (`gon.observe`).
  """
  m = config.model
  if m.name in VARIATIONAL_MODELS:
    return lambda outputs, target: negative_elbo(outputs, target, m.likelihood, kl_weight,
                                                 m.gaussian_sigma)
  return squared_error


def kl_weight(config: ml_collections.ConfigDict, step: jax.Array) -> jax.Array:
  """`model.kl_weight`, warmed up linearly over `model.kl_warmup_steps` (0: none)."""
  m = config.model
  if m.name not in VARIATIONAL_MODELS:
    return jnp.float32(1.0)
  ramp = jnp.minimum(1.0, (step + 1) / m.kl_warmup_steps) if m.kl_warmup_steps else 1.0
  return jnp.float32(m.kl_weight) * ramp


def shares_origin(config: ml_collections.ConfigDict, train: bool, draws: Draws) -> bool:
  """Whether every example's inner pass decodes the same thing: the origin, on the same pixels.

  True, if `gon.shared_origin`, unless training draws z0 from N(0, sigma^2),
  or the inner pass sees per-example pixel subsets or per-example noise
  (variational models).
  """
  return (config.gon.shared_origin and not (train and config.gon.z0_sigma > 0)
          and draws.inner_points is None and draws.inner_noise is None)


def decoded_images(config: ml_collections.ConfigDict, outputs: Any) -> jax.Array:
  """The images in a decoder's outputs (variational decoders also return mu, logvar)."""
  return outputs[0] if config.model.name in VARIATIONAL_MODELS else outputs


def reconstruct(model: nn.Module, variables: dict, images: jax.Array, z0: jax.Array,
                config: ml_collections.ConfigDict, train: bool, draws: Draws = Draws(),
                kl_weight: float | jax.Array = 1.0, latents: jax.Array | None = None
                ) -> tuple[Any, jax.Array, jax.Array, dict]:
  """Encodes images with the gradient at the origin, decodes the latents, scores them.

  The inner pass always normalises with BatchNorm's running averages: at z0
  every example is the same, so batch statistics would have zero variance and
  make an image's latent depend on its batch. The outer pass uses batch
  statistics in training only. Baselines get latents otherwise: models with
  an encoder (VAE, autoencoders) encode with it; GLO takes its training
  latents from its table (`latents`) and fits others by gradient descent
  (`glo.test_steps` Adam steps from z0).

  Args:
    model: decoder called as `model.apply(variables, z, use_running_average)`.
    variables: `{'params': ..., ['batch_stats': ...]}`.
    images: `[batch, height, width, channels]` in [0, 1].
    z0: starting latents `[batch, latent_dim]`: the origin, except in
      training with `gon.z0_sigma > 0` (see `shares_origin`).
    config: experiment config (`gon.*`, `model.*`, `batch_size`, `data.image_size`).
    train: whether this is a training pass (updates BatchNorm statistics).
    draws: random choices (see `Draws`); the default decodes every pixel and
      the posterior mean. An inner loss on a subset of pixels is scaled by
      pixels / points, so that latents keep the scale of the whole image's;
      so is the outer loss.
    kl_weight: weight of the KL term of variational models.
    latents: GLO only: the batch's rows of the latent table `[batch, latent_dim]`.

  Returns:
    `(outputs, latents [batch, latent_dim], outer losses [batch], batch_stats)`:
    outputs are the decoder's at `draws.outer_points` (default: images
    `[batch, height, width, channels]`; variational: (images, mu, logvar));
    batch_stats are updated in a training pass, else as given ({} without
    BatchNorm).
  """
  num_pixels = images.shape[1] * images.shape[2]
  loss = outer_loss_fn(config, kl_weight)

  def decode(z, points, noise, use_running_average=True, mutable=False):
    inputs = {}
    if points is not None:
      inputs['coordinates'] = jnp.asarray(grid(config.data.image_size))[points]
    if noise is not None:
      inputs['noise'] = noise
    apply = lambda variables, z, inputs: model.apply(variables, z, use_running_average,
                                                     mutable=mutable, **inputs)
    if config.remat:  # keep only the decoder's inputs; recompute its activations when needed
      apply = jax.checkpoint(apply)
    return apply(variables, z, inputs)

  if latents is None and config.model.name in ENCODER_MODELS:
    latents = model.apply(variables, images, True, method='encode')
  elif latents is None and config.model.name in LATENT_TABLE_MODELS:
    latents = fit_latents(lambda z: decode(z, None, None), images, z0, loss,
                          config.glo.test_steps, config.glo.test_learning_rate)
  elif latents is None:  # the GON
    mask = observation_mask(config)
    inner_target = _gather(images, draws.inner_points)
    inner_loss = loss
    if mask is not None:
      seen = (mask[None] if draws.inner_points is None else
              mask.reshape(-1)[draws.inner_points][..., None])
      inner_loss = lambda outputs, target: squared_error(seen * outputs, seen * target)
    gon = config.gon
    scale = inner_loss_scale(config)
    if draws.inner_points is not None:  # a Monte Carlo estimate over the whole image
      scale *= num_pixels / draws.inner_points.shape[1]
    latents = origin_latent(
        lambda z: decode(z, draws.inner_points, draws.inner_noise), inner_target, z0,
        inner_loss, num_steps=gon.num_steps, step_size=gon.step_size, loss_scale=scale,
        start_from_z0=gon.start_from_z0, detach=gon.detach,
        shared_z0=shares_origin(config, train, draws))
  target = _gather(images, draws.outer_points)
  batch_stats = variables.get('batch_stats', {})
  if train and batch_stats:
    outputs, updates = decode(latents, draws.outer_points, draws.outer_noise, False,
                              mutable=('batch_stats',))
    batch_stats = updates['batch_stats']
  else:
    outputs = decode(latents, draws.outer_points, draws.outer_noise)
  outer = loss(outputs, target)
  if draws.outer_points is not None:
    outer = outer * (num_pixels / draws.outer_points.shape[1])
  return outputs, latents, outer, batch_stats
