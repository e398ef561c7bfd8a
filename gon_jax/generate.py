"""What a trained GON can do beyond reconstruction: encode, render at any
resolution, interpolate, sample (the paper's Figs. 5, 6, 15 and App. D)."""

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from gon_jax.core import origin
from gon_jax.encode import decoded_images, reconstruct
from gon_jax.siren import grid


def in_batches(fn: Callable[[np.ndarray], tuple], inputs: np.ndarray,
               batch_size: int, progress: str | None = None) -> tuple[np.ndarray, ...]:
  """Applies `fn` to fixed-size batches of `inputs` and concatenates its outputs.

  The last batch is padded with zeros, so a jitted `fn` compiles once.

  Args:
    fn: maps `[batch_size, ...]` to a tuple of arrays `[batch_size, ...]`.
    inputs: `[n, ...]`.
    batch_size: rows per call.
    progress: if set, a progress bar on stderr with this description counts
      the rows done (encoding a test set can take minutes).

  Returns:
    The tuple of `fn`'s outputs over all n rows, as host arrays.
  """
  parts = []
  with tqdm.tqdm(total=len(inputs), desc=progress, disable=progress is None,
                 dynamic_ncols=True, unit='image') as bar:
    for start in range(0, len(inputs), batch_size):
      chunk = np.asarray(inputs[start:start + batch_size])
      padded = np.concatenate([chunk, np.zeros((batch_size - len(chunk), *chunk.shape[1:]),
                                               chunk.dtype)])
      parts.append([np.asarray(out)[:len(chunk)] for out in jax.device_get(fn(padded))])
      bar.update(len(chunk))
  return tuple(np.concatenate(outs) for outs in zip(*parts))


def make_encoder(model: nn.Module, config: ml_collections.ConfigDict
                 ) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
  """Builds `encode(variables, images, progress=None) -> (latents, reconstructions)`, from z0 = 0.

  Args of the result: variables of the decoder; images `[n, height, width,
  channels]`; progress, a progress bar's description as for `in_batches`.
  Returns latents `[n, latent_dim]` and reconstructions like images.
  BatchNorm uses running averages; batches of `config.eval_batch_size`.
  """

  @jax.jit
  def encode_batch(variables, images):
    z0 = origin(images.shape[0], config.model.latent_dim)
    outputs, latents, _, _ = reconstruct(model, variables, images, z0, config, train=False)
    return latents, decoded_images(config, outputs)

  return lambda variables, images, progress=None: in_batches(
      lambda batch: encode_batch(variables, batch), images, config.eval_batch_size, progress)


def render(model: nn.Module, variables: dict, latents: np.ndarray, size: int,
           batch_size: int = 4, progress: str | None = None) -> np.ndarray:
  """Decodes latents of an implicit model on a `size x size` grid (super-resolution).

  `progress`: a progress bar's description, as for `in_batches`.

  Returns:
    `[n, size, size, channels]`.
  """
  coordinates = jnp.asarray(grid(size))
  decode = jax.jit(lambda z: (model.apply(variables, z, True, coordinates=coordinates),))
  (pixels,) = in_batches(decode, latents, batch_size, progress)
  return pixels.reshape(len(latents), size, size, -1)


def decode(model: nn.Module, variables: dict, latents: np.ndarray,
           config: ml_collections.ConfigDict, method: str | None = None,
           batch_size: int = 256) -> np.ndarray:
  """Decodes latents at the training resolution: `[n, height, width, channels]`.

  `method='generate'` decodes codes of a variational model's prior instead.
  """
  if method is not None:
    apply = jax.jit(lambda z: (model.apply(variables, z, True, method=method),))
  else:
    apply = jax.jit(lambda z: (decoded_images(config, model.apply(variables, z, True)),))
  return in_batches(apply, latents, batch_size)[0]


def slerp(z_start: jax.Array, z_end: jax.Array, t: jax.Array) -> jax.Array:
  """Spherical interpolation between latents (Fig. 6).

  Args:
    z_start, z_end: `[..., latent_dim]`.
    t: `[steps]` in [0, 1].

  Returns:
    `[..., steps, latent_dim]`; linear interpolation where the two are parallel.
  """
  unit = lambda z: z / jnp.linalg.norm(z, axis=-1, keepdims=True)
  cos = jnp.clip(jnp.sum(unit(z_start) * unit(z_end), axis=-1), -1.0, 1.0)[..., None, None]
  omega = jnp.arccos(cos)
  t = t[:, None]
  small = jnp.abs(jnp.sin(omega)) < 1e-6
  safe_sin = jnp.where(small, 1.0, jnp.sin(omega))
  a = jnp.where(small, 1 - t, jnp.sin((1 - t) * omega) / safe_sin)
  b = jnp.where(small, t, jnp.sin(t * omega) / safe_sin)
  return a * z_start[..., None, :] + b * z_end[..., None, :]


def fit_gaussian(latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean `[latent_dim]` and full covariance `[latent_dim, latent_dim]` of latents (App. D)."""
  latents = np.asarray(latents, np.float64)
  return latents.mean(axis=0), np.cov(latents, rowvar=False)


def sample_gaussian(key: jax.Array, mean: np.ndarray, covariance: np.ndarray,
                    num_samples: int) -> np.ndarray:
  """`[num_samples, latent_dim]` draws of N(mean, covariance)."""
  return np.asarray(jax.random.multivariate_normal(
      key, jnp.asarray(mean, jnp.float32), jnp.asarray(covariance, jnp.float32),
      (num_samples,), method='svd'))
