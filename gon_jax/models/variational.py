"""The variational GON (section 3.3, Variational-GON.py) and its VAE baseline:
a stochastic layer between the latent and the convolutional decoder."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from gon_jax import objectives
from gon_jax.errors import ConfigError, check_choice
from gon_jax.losses import LIKELIHOODS
from gon_jax.models import conv, initializers
from gon_jax.models.autoencoders import ConvEncoder
from gon_jax.models.conv import ConvDecoder
from gon_jax.models.spec import ModelSpec


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
                               d.axis_name, d.param_init)

  def encode(self, images: jax.Array, use_running_average: bool) -> jax.Array:
    """Encodes `[batch, size, size, channels]` to latents `[batch, latent_dim]`."""
    return self.encoder(images, use_running_average)




def default_config() -> ml_collections.ConfigDict:
  """The model section of the official Variational-GON.py."""
  config = conv.default_config()
  config.name = 'vgon'
  config.latent_dim = 48
  config.features = 32
  config.likelihood = 'bernoulli'  # or 'gaussian' (fixed gaussian_sigma)
  config.gaussian_sigma = 0.1
  config.kl_weight = 1.0  # beta
  config.kl_warmup_steps = 0  # linear warm-up of beta; 0: none
  return config


def check(config: ml_collections.ConfigDict) -> None:
  """The convolutional decoder's ConfigErrors, and the likelihood's."""
  conv.check(config)
  m = config.model
  check_choice('model.likelihood', m.likelihood, LIKELIHOODS)
  if config.gon.observe != 'all':
    raise ConfigError(f'gon.observe needs a squared-error model, not {m.name!r}')


VGON = ModelSpec(objective=objectives.GON, variational=True,
                 build=lambda config, axis_name: VariationalDecoder(conv.build(config, axis_name)),
                 default_config=default_config, check=check, forward_flops=conv.forward_flops)
VAE_SPEC = dataclasses.replace(VGON, objective=objectives.Encoded,
                               build=lambda config, axis_name: VAE(conv.build(config, axis_name)))
