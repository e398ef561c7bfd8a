"""The inputs and outputs of an objective's pass (gon_jax.objectives): the checks of images
and of a batch, the random choices of a training pass (`Draws`: Monte Carlo pixel subsets of
implicit models, the stochastic layer's noise of variational ones) and what a reconstruction
returns (`Reconstruction`)."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


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


class Reconstruction(NamedTuple):
  """What `Objective.reconstruct` returns.

  outputs: the decoder's at `draws.outer_points` (default: images `[batch,
    height, width, channels]`; variational: (images, mu, logvar)).
  latents: `[batch, latent_dim]`.
  losses: outer losses `[batch]` (summed squared error, or negative ELBO nats).
  batch_stats: updated in a training pass, else as given ({} without BatchNorm).
  """
  outputs: Any
  latents: jax.Array
  losses: jax.Array
  batch_stats: dict


def sample_points(keys: jax.Array, num_pixels: int, num_points: int) -> jax.Array:
  """`num_points` distinct pixel indices per example, `[batch, num_points]` int32."""
  return jax.vmap(lambda key: jax.random.permutation(key, num_pixels)[:num_points])(keys)


def gather(images: jax.Array, points: jax.Array | None) -> jax.Array:
  """Pixels `[batch, points, channels]` of images `[batch, height, width, channels]`."""
  if points is None:
    return images
  flat = images.reshape(images.shape[0], -1, images.shape[-1])
  return jnp.take_along_axis(flat, points[..., None], axis=1)


def check_images(images: jax.Array) -> None:
  """Raises ValueError (at trace time) unless `images` is `[batch, height, width, channels]`
  with at least one image: an empty batch has no latents, and its mean loss divides by 0."""
  if jnp.ndim(images) != 4 or not jnp.shape(images)[0]:
    raise ValueError(f'images must be [batch, height, width, channels] with at least one image, '
                     f'got shape {list(jnp.shape(images))}')


def check_batch(batch: dict) -> None:
  """Raises ValueError (at trace time) unless `batch['image']` passes `check_images` and every
  other entry (labels, indices) has one row per image: a label array of another length would
  broadcast, or be cut, without an error."""
  if 'image' not in batch:
    raise ValueError(f"a batch needs 'image' [batch, height, width, channels], got keys "
                     f'{", ".join(map(repr, batch)) or "none"}')
  check_images(batch['image'])
  count = jnp.shape(batch['image'])[0]
  for key, value in batch.items():
    if jnp.ndim(value) < 1 or jnp.shape(value)[0] != count:
      raise ValueError(f"batch[{key!r}] has shape {list(jnp.shape(value))} but the batch has "
                       f'{count} images: give one row per image, [{count}, ...]')
