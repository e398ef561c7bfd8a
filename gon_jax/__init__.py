"""Gradient Origin Networks in JAX and Flax; the transform itself is gon_jax.core.

`gon_jax.load(name_or_workdir)` gives a trained `Model` (gon_jax.model), imported on first
use so that `import gon_jax` stays light.
"""

from gon_jax.core import origin, origin_latent, squared_error

__all__ = ['Model', 'load', 'origin', 'origin_latent', 'squared_error']
__version__ = '0.1.0'


def __getattr__(name: str):
  if name in ('Model', 'load'):
    from gon_jax import model  # pylint: disable=import-outside-toplevel
    return getattr(model, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
