"""What every config shares: gon_jax.config's defaults, with the model's own section."""

from gon_jax.config import base_config

__all__ = ['base_config']
