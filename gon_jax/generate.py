"""What a trained GON can do beyond reconstruction: encode, render at any
resolution, interpolate, sample (the paper's Figs. 5, 6, 15 and App. D).

`decoded`, `generated` and `rendered` are pure functions of `(objective, variables, inputs)`:
they work inside any `jax.jit`, `jax.grad` or `jax.vmap`. `make_decoder` and `make_renderer`
compile them once, with the variables an argument (not constants of the program), and run
them on host arrays in batches (data.in_batches); `decode` and `render` build one and use it
once.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gon_jax import parallel
from gon_jax.coordinates import grid
from gon_jax.data import in_batches
from gon_jax.errors import check_count
from gon_jax.models import MODELS
from gon_jax.objectives import Objective

# Coordinates decoded per call when rendering (a 256x256 grid): one latent at 4096x4096 is
# 256 calls of 65,536 points, not one of 16.8 million (4.3 GB for each layer of width 64).
RENDER_POINTS = 2 ** 16


def decoded(objective: Objective, variables: dict, z: jax.Array) -> jax.Array:
  """Images `[n, height, width, channels]` of latents `[n, latent_dim]` at the training
  resolution, not clipped (a variational model decodes the posterior mean the latents give);
  pure: jit, grad and vmap it."""
  return objective.images(objective.model.apply(variables, z, True))


def generated(objective: Objective, variables: dict, codes: jax.Array) -> jax.Array:
  """A variational model's images `[n, height, width, channels]` of codes `[n, latent_dim]`
  of its prior N(0, I), not clipped; pure."""
  return objective.model.apply(variables, codes, True, method='generate')


def rendered(objective: Objective, variables: dict, z: jax.Array,
             coordinates: jax.Array) -> jax.Array:
  """An implicit model's pixels `[n, points, channels]` of latents `[n, latent_dim]` at
  coordinates `[points, 2]` in [-1, 1]^2 (`gon_jax.coordinates.grid(size)`: a `size x size`
  image, row-major), not clipped; pure."""
  return objective.model.apply(variables, z, True, coordinates=coordinates)


def make_decoder(objective: Objective, method: str | None = None) -> Callable[..., np.ndarray]:
  """Builds `decode(variables, latents, batch_size=256) -> [n, height, width, channels]`.

  The result decodes host latents `[n, latent_dim]` in batches (data.in_batches), compiled
  once per batch shape for all calls; its images are not clipped.

  Args:
    objective: the model's (gon_jax.models.make_objective).
    method: None decodes latents (`decoded`); 'generate' decodes a variational model's
      prior codes (`generated`).
  """
  pures = {None: decoded, 'generate': generated}
  if method not in pures:
    raise ValueError(f"method must be None or 'generate', got {method!r}")
  pure = pures[method]
  apply = parallel.jit(lambda variables, z: (pure(objective, variables, z),),
                       objective.performance)
  return lambda variables, latents, batch_size=256: in_batches(
      lambda batch: apply(variables, batch), latents, batch_size)[0]


def make_renderer(objective: Objective) -> Callable[..., np.ndarray]:
  """Builds `render(variables, latents, size, batch_size=4, progress=None, coordinates=None)`
  for an implicit model, compiled once per shape of a batch and of a chunk of coordinates.

  The result decodes latents `[n, latent_dim]` on a `size x size` grid (super-resolution):
  `batch_size` latents and at most `RENDER_POINTS` coordinates per call (the last chunk
  padded), so memory stays that of a 256x256 rendering whatever the size. Its arguments:
  `size`, the grid's side, any positive integer; `batch_size`, latents per call;
  `progress`, a progress bar's description, as for `in_batches`; `coordinates`
  `[size * size, 2]`, by default `grid(size)`. It returns `[n, size, size, channels]`, not
  clipped, and raises TypeError for a size that is not an integer, ValueError for one below 1
  or coordinates of another number.

  Raises:
    TypeError: `objective` is not an Objective (e.g. the module itself).
    ValueError: the model is not implicit (it decodes at its training resolution only:
      `decode` does that).
  """
  if not isinstance(objective, Objective):
    raise TypeError(f'render takes the objective (gon_jax.models.make_objective(settings)), '
                    f'not a {type(objective).__name__}')
  if not objective.spec.implicit:
    implicit = ', '.join(name for name, spec in MODELS.items() if spec.implicit)
    name = next(name for name, spec in MODELS.items() if spec == objective.spec)
    size = objective.image_size
    raise ValueError(f'render needs an implicit model ({implicit}); model {name!r} decodes at '
                     f'its training resolution only ({size}x{size}): use decode')
  apply = parallel.jit(lambda variables, z, coordinates: rendered(objective, variables, z,
                                                                  coordinates),
                       objective.performance)

  def render(variables: dict, latents: np.ndarray, size: int, batch_size: int = 4,
             progress: str | None = None, coordinates: np.ndarray | None = None) -> np.ndarray:
    check_count('size', size)
    coordinates = grid(size) if coordinates is None else np.asarray(coordinates, np.float32)
    points = size * size
    if len(coordinates) != points:
      raise ValueError(f'coordinates must be [size * size, 2] = [{points}, 2] for size {size}, '
                       f'got {list(coordinates.shape)}')
    chunk = min(points, RENDER_POINTS)

    def render_batch(z: np.ndarray) -> tuple[np.ndarray]:
      pixels = None
      for start in range(0, points, chunk):
        part = coordinates[start:start + chunk]
        part = np.concatenate([part, np.zeros((chunk - len(part), *part.shape[1:]), part.dtype)])
        out = np.asarray(apply(variables, z, part))
        if pixels is None:  # its channels and dtype are the model's
          pixels = np.empty((len(z), points, *out.shape[2:]), out.dtype)
        pixels[:, start:start + chunk] = out[:, :points - start]
      return (pixels,)

    (pixels,) = in_batches(render_batch, latents, batch_size, progress)
    return pixels.reshape(len(latents), size, size, -1)

  return render


def render(objective: Objective, variables: dict, latents: np.ndarray, size: int,
           batch_size: int = 4, progress: str | None = None,
           coordinates: np.ndarray | None = None) -> np.ndarray:
  """Decodes latents `[n, latent_dim]` of an implicit model on a `size x size` grid
  (super-resolution): `[n, size, size, channels]`, not clipped.

  `make_renderer(objective)(variables, latents, size, batch_size, progress, coordinates)`
  (which says what each argument is, and what it raises): to render more than once, keep
  that function, which compiles once.
  """
  return make_renderer(objective)(variables, latents, size, batch_size, progress, coordinates)


def decode(objective: Objective, variables: dict, latents: np.ndarray,
           method: str | None = None, batch_size: int = 256) -> np.ndarray:
  """Decodes latents at the training resolution: `[n, height, width, channels]`, not clipped.

  `method='generate'` decodes codes of a variational model's prior instead. To decode more
  than once, keep `make_decoder(objective, method)`, which compiles once.
  """
  return make_decoder(objective, method)(variables, latents, batch_size)


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
