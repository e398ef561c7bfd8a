"""Gradient Origin Networks in JAX and Flax; the transform itself is gon_jax.core."""

from gon_jax.core import origin, origin_latent, squared_error

__all__ = ['origin', 'origin_latent', 'squared_error']
__version__ = '0.1.0'
