"""The variational GON (section 3.3, Variational-GON.py) and its VAE baseline:
a stochastic layer between the latent and the convolutional decoder."""

import dataclasses
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from gon_jax import objectives
from gon_jax.errors import ConfigError, check_choice
from gon_jax.losses import LIKELIHOODS
from gon_jax.models import conv, initializers
from gon_jax.models.autoencoders import ConvEncoder
from gon_jax.models.conv import ConvDecoder
from gon_jax.models.spec import ModelSpec
from gon_jax.settings import Settings


class VariationalDecoder(nn.Module):
  """F of the variational GON (section 3.3, Variational-GON.py).

  Two linear layers map the latent to the mean and log-variance of a
  Gaussian; a sample of it (the reparameterisation trick as a stochastic
  layer) is decoded by `decoder` into Bernoulli probabilities or Gaussian
  means. `generate` decodes codes drawn from the prior N(0, I).

  Attributes:
    decoder: the convolutional decoder of codes; the latent has its
      `latent_dim`.
  """
  decoder: ConvDecoder

  def setup(self):
    d = self.decoder
    kernel_init, bias_init = initializers.kernel_and_bias(d.param_init, d.latent_dim)  # fan_in: latent
    self.mu = nn.Dense(d.latent_dim, kernel_init=kernel_init, bias_init=bias_init)
    self.logvar = nn.Dense(d.latent_dim, kernel_init=kernel_init, bias_init=bias_init)

  def __call__(self, z: jax.Array, use_running_average: bool,
               noise: jax.Array | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Decodes latents `[batch, latent_dim]`.

    Args:
      z: latents.
      use_running_average: BatchNorm mode.
      noise: standard normal `[batch, latent_dim]` for the reparameterisation;
        None decodes the mean.

    Returns:
      `(decoded [batch, size, size, channels], mu, logvar)`.
    """
    mu, logvar = self.mu(z), self.logvar(z)
    code = mu if noise is None else mu + jnp.exp(0.5 * logvar) * noise
    return self.decoder(code, use_running_average), mu, logvar

  def generate(self, code: jax.Array, use_running_average: bool = True) -> jax.Array:
    """Decodes codes `[batch, latent_dim]` from the prior: `[batch, size, size, channels]`."""
    return self.decoder(code, use_running_average)


class VAE(VariationalDecoder):
  """The VAE baseline: a ConvEncoder, then the variational GON's F.

  Called like VariationalDecoder (it is F, with the same parameters);
  `encode(images)` replaces the GON's gradient at the origin.
  """

  def setup(self):
    super().setup()
    d = self.decoder
    self.encoder = ConvEncoder(d.latent_dim, d.features, d.image_size, d.activation, d.norm,
                               d.axis_name, d.param_init, d.latent_side)

  def encode(self, images: jax.Array, use_running_average: bool) -> jax.Array:
    """Encodes `[batch, size, size, channels]` to latents `[batch, latent_dim]`."""
    return self.encoder(images, use_running_average)




def default_options() -> dict:
  """The options of the official Variational-GON.py (`config.model`)."""
  return {**conv.default_options(), 'latent_dim': 48, 'features': 32,
          'likelihood': 'bernoulli',  # or 'gaussian' (fixed gaussian_sigma)
          'gaussian_sigma': 0.1,
          'kl_weight': 1.0,  # beta
          'kl_warmup_steps': 0}  # linear warm-up of beta; 0: none


# The options of the ELBO (gon_jax.objectives.ElboSettings), not of the module.
ELBO_OPTIONS = ('likelihood', 'gaussian_sigma', 'kl_weight', 'kl_warmup_steps')


def check(settings: Settings) -> None:
  """The convolutional decoder's ConfigErrors, and the likelihood's."""
  conv.check(settings)
  check_choice('model.likelihood', settings.model['likelihood'], LIKELIHOODS)
  if settings.gon.observe != 'all':
    raise ConfigError(f'gon.observe needs a squared-error model, not {settings.model_name!r}')


def _builder(module: Callable[[nn.Module], nn.Module]) -> Callable[..., nn.Module]:
  """`build` of a family that wraps the convolutional decoder in `module`: the ELBO's options
  are not the module's."""
  def build(**options) -> nn.Module:
    return module(conv.build(**{k: v for k, v in options.items() if k not in ELBO_OPTIONS}))
  return build


VGON = ModelSpec(objective=objectives.GON, variational=True, build=_builder(VariationalDecoder),
                 default_options=default_options, check=check, forward_flops=conv.forward_flops)
VAE_SPEC = dataclasses.replace(VGON, objective=objectives.Encoded, build=_builder(VAE))
