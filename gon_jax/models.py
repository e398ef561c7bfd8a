"""Decoders F: latent -> data, written as Flax Linen modules.

Every decoder is called as `F(z, use_running_average)`: the GON's inner pass at
z0 always uses running averages for BatchNorm, because all examples are
identical at the origin and their batch variance is zero. Implicit decoders
(gon_jax.siren) also take `coordinates`.
"""

import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from gon_jax.siren import SirenDecoder

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'elu': nn.elu,
    'relu': nn.relu,
    'leaky_relu': nn.leaky_relu,
    'tanh': jnp.tanh,
    'softplus': nn.softplus,
    'swish': nn.swish,
    'sin': jnp.sin,
}
NORMS = ('batch', 'layer', 'group', 'none')
MODELS = ('conv', 'siren')
IMPLICIT_MODELS = ('siren',)


class ConfigError(ValueError):
  """A config value that cannot work; str(err) is one line for the user."""


def _choose(kind: str, name: str, valid) -> str:
  if name not in valid:
    raise ConfigError(f'unknown {kind} {name!r}; valid: {", ".join(valid)}')
  return name


class ConvDecoder(nn.Module):
  """The convolutional decoder of the official GON.py (DCGAN-style).

  A latent `[batch, latent_dim]` is read as a 1x1 image; a 4x4 transposed
  convolution makes it 4x4, stride-2 transposed convolutions double it up to
  `image_size`, halving the width each time; each hidden layer is followed by
  a normalisation and the activation, the output by a sigmoid. For
  `image_size=32`, `features=16`: widths 64, 32, 16, then `channels`.

  Attributes:
    latent_dim: size of the latent.
    features: width of the last hidden layer (`ngf` in GON.py).
    channels: output channels.
    image_size: output height and width, 4 * 2**k with k >= 1.
    activation: a key of ACTIVATIONS (Fig. 3 compares them).
    norm: 'batch' (the paper), 'layer' (per-example, over height, width and
      channels, with per-channel scale and bias: GroupNorm with one group),
      'group' (GroupNorm with 8 groups) or 'none'.
    axis_name: pmap axis over which BatchNorm averages batch statistics.
  """
  latent_dim: int = 32
  features: int = 16
  channels: int = 1
  image_size: int = 32
  activation: str = 'elu'
  norm: str = 'batch'
  axis_name: str | None = None

  @nn.compact
  def __call__(self, z: jax.Array, use_running_average: bool) -> jax.Array:
    """Decodes latents `[batch, latent_dim]` to images `[batch, size, size, channels]` in (0, 1)."""
    num_upsamplings = num_conv_upsamplings(self.image_size)
    activation = ACTIVATIONS[self.activation]
    x = z.reshape(z.shape[0], 1, 1, z.shape[-1])
    for i in range(num_upsamplings):
      width = self.features * 2 ** (num_upsamplings - 1 - i)
      if i == 0:  # 1x1 -> 4x4, as PyTorch's ConvTranspose2d(k=4, s=1, p=0)
        x = nn.ConvTranspose(width, (4, 4), padding='VALID')(x)
      else:  # doubles the size, as ConvTranspose2d(k=4, s=2, p=1)
        x = nn.ConvTranspose(width, (4, 4), strides=(2, 2), padding='SAME')(x)
      x = activation(self._normalise(x, use_running_average))
    x = nn.ConvTranspose(self.channels, (4, 4), strides=(2, 2), padding='SAME')(x)
    return nn.sigmoid(x)

  def _normalise(self, x: jax.Array, use_running_average: bool) -> jax.Array:
    if self.norm == 'batch':
      # PyTorch's BatchNorm2d defaults: momentum 0.1, eps 1e-5.
      return nn.BatchNorm(use_running_average=use_running_average,
                          momentum=0.9, epsilon=1e-5,
                          axis_name=self.axis_name)(x)
    if self.norm == 'layer':
      return nn.GroupNorm(num_groups=1, epsilon=1e-5)(x)
    if self.norm == 'group':
      return nn.GroupNorm(num_groups=8, epsilon=1e-5)(x)
    return x


def num_conv_upsamplings(image_size: int) -> int:
  """Number of 2x size doublings after the first 4x4 layer, plus one."""
  k = math.log2(image_size / 4) if image_size >= 8 else 0
  if k < 1 or k != int(k):
    raise ConfigError(f'image size {image_size}: the convolutional decoder '
                      'makes 4 * 2**k pixels a side (8, 16, 32, 64, 128, ...)')
  return int(k)


def get_model(config: ml_collections.ConfigDict,
              axis_name: str | None = None) -> nn.Module:
  """The decoder that `config.model` names, with its image size from `config.data`.

  Args:
    config: full experiment config (`model.*`, `data.image_size`).
    axis_name: pmap axis for cross-device BatchNorm statistics, or None.

  Returns:
    A Flax module called as `module.apply(variables, z, use_running_average)`.
  """
  m = config.model
  _choose('model', m.name, MODELS)
  if m.name == 'siren':
    return SirenDecoder(latent_dim=m.latent_dim, widths=tuple(m.widths), channels=m.channels,
                        image_size=config.data.image_size, w0=m.w0, factorised=m.factorised)
  _choose('activation', m.activation, ACTIVATIONS)
  _choose('norm', m.norm, NORMS)
  num_conv_upsamplings(config.data.image_size)
  return ConvDecoder(latent_dim=m.latent_dim, features=m.features,
                     channels=m.channels, image_size=config.data.image_size,
                     activation=m.activation, norm=m.norm, axis_name=axis_name)


def init_variables(model: nn.Module, key: jax.Array, latent_dim: int) -> dict:
  """Initial `{'params': ..., ['batch_stats': ...]}` of a decoder."""
  return model.init(key, jnp.zeros((1, latent_dim), jnp.float32),
                    use_running_average=False)
