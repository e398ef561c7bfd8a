"""What a trained GON can do beyond reconstruction: encode, render at any
resolution, interpolate, sample (the paper's Figs. 5, 6, 15 and App. D)."""

import jax
import jax.numpy as jnp
import numpy as np

from gon_jax import parallel
from gon_jax.coordinates import grid
from gon_jax.data import in_batches
from gon_jax.models import MODELS
from gon_jax.objectives import Objective


def render(objective: Objective, variables: dict, latents: np.ndarray, size: int,
           batch_size: int = 4, progress: str | None = None,
           coordinates: np.ndarray | None = None) -> np.ndarray:
  """Decodes latents of an implicit model on a `size x size` grid (super-resolution).

  Args:
    objective: an implicit model's (gon_jax.models.make_objective; `spec.implicit`).
    variables: the module's.
    latents: `[n, latent_dim]`.
    size: the grid's side, any resolution.
    batch_size: latents decoded per call (a 256x256 grid is 65,536 coordinates each).
    progress: a progress bar's description, as for `in_batches`.
    coordinates: `[size * size, 2]`, by default `grid(size)`.

  Returns:
    `[n, size, size, channels]`.

  Raises:
    TypeError: `objective` is not an Objective (e.g. the module itself).
    ValueError: the model is not implicit (it decodes at its training resolution only:
      `decode` does that).
  """
  if not isinstance(objective, Objective):
    raise TypeError(f'render takes the objective (gon_jax.models.make_objective(config)), '
                    f'not a {type(objective).__name__}')
  if not objective.spec.implicit:
    implicit = ', '.join(name for name, spec in MODELS.items() if spec.implicit)
    raise ValueError(f'render needs an implicit model ({implicit}); model '
                     f'{objective.config.model.name!r} decodes at its training resolution '
                     f'only ({objective.config.data.image_size}x'
                     f'{objective.config.data.image_size}): use decode')
  model = objective.model
  coordinates = jnp.asarray(grid(size) if coordinates is None else coordinates)
  decode_all = jax.jit(lambda z: (model.apply(variables, z, True, coordinates=coordinates),))
  (pixels,) = in_batches(decode_all, latents, batch_size, progress)
  return pixels.reshape(len(latents), size, size, -1)


def decode(objective: Objective, variables: dict, latents: np.ndarray,
           method: str | None = None, batch_size: int = 256) -> np.ndarray:
  """Decodes latents at the training resolution: `[n, height, width, channels]`.

  `method='generate'` decodes codes of a variational model's prior instead.
  """
  model = objective.model
  if method is not None:
    apply = parallel.jit(lambda z: (model.apply(variables, z, True, method=method),),
                         objective.config)
  else:
    apply = parallel.jit(lambda z: (objective.images(model.apply(variables, z, True)),),
                         objective.config)
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
