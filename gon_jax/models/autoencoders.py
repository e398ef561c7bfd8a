"""The autoencoder baselines of Table 1: an encoder (its own, or the decoder's
kernels transposed) in front of the GON's convolutional decoder."""

import dataclasses
import functools

import flax.linen as nn
import jax

from gon_jax import objectives
from gon_jax.models import conv, initializers
from gon_jax.models.conv import (ACTIVATIONS, ConvDecoder, ConvOptions, hidden_widths,
                                 normalise, transposed_conv_adjoint)
from gon_jax.models.spec import ModelSpec


class ConvEncoder(ConvOptions):
  """The encoder of the VAE baseline: the ConvDecoder mirrored (Table 2).

  Stride-2 4x4 convolutions halve the image down to 4x4, doubling the width
  each time (`features`, 2 `features`, ...), each followed by the norm and
  activation; a 4x4 valid convolution maps 4x4 to a 1x1 code of `latent_dim`.
  With `latent_side` s > 1 the last is a stride-2 convolution to an s x s code
  (the hidden layers are the decoder's, mirrored).
  """

  @nn.compact
  def __call__(self, images: jax.Array, use_running_average: bool) -> jax.Array:
    """Encodes `[batch, size, size, channels]` to `[batch, latent_dim]`."""
    # PyTorch's fan_in of a convolution: input channels x kernel area.
    inits = lambda x: dict(zip(('kernel_init', 'bias_init'),
                               initializers.kernel_and_bias(self.param_init, 16 * x.shape[-1])))
    down = dict(strides=(2, 2), padding=((1, 1), (1, 1)))
    x = images
    for width in reversed(hidden_widths(self.features, self.image_size, self.latent_side)):
      x = nn.Conv(width, (4, 4), **down, **inits(x))(x)
      x = ACTIVATIONS[self.activation](
          normalise(self.norm, x, use_running_average, self.axis_name))
    if self.latent_side == 1:
      x = nn.Conv(self.latent_dim, (4, 4), padding='VALID', **inits(x))(x)
    else:
      x = nn.Conv(self.latent_dim // self.latent_side ** 2, (4, 4), **down, **inits(x))(x)
    return x.reshape(x.shape[0], -1)


class Autoencoder(ConvDecoder):
  """The autoencoder baseline of Table 1: a ConvEncoder, then the GON's decoder.

  Called like ConvDecoder (it is F, with the same parameters);
  `encode(images)` replaces the GON's gradient at the origin.
  """

  @nn.compact
  def encode(self, images: jax.Array, use_running_average: bool) -> jax.Array:
    """Encodes `[batch, size, size, channels]` to latents `[batch, latent_dim]`."""
    return ConvEncoder(self.latent_dim, self.features, self.image_size, self.activation,
                       self.norm, self.axis_name, self.param_init, self.latent_side)(
                           images, use_running_average)


class TiedEncoder(nn.Module):
  """An encoder whose convolutions are the adjoints of a ConvDecoder's (Gedeon, 1998).

  Layer by layer from the image, each transposed convolution of the decoder
  is applied transposed (a stride-2 convolution with the same kernel), then
  the encoder's own bias, norm and activation; the last maps 4x4 (or, with
  `latent_side` s > 1, 2s x 2s) to the latent. Only biases and norm parameters
  are the encoder's own.
  """
  latent_dim: int
  activation: str = 'elu'
  norm: str = 'layer'
  axis_name: str | None = None
  latent_side: int = 1

  @nn.compact
  def __call__(self, images: jax.Array, kernels: list[jax.Array],
               use_running_average: bool) -> jax.Array:
    """Encodes `[batch, size, size, channels]` with the decoder's `kernels` (first to last)."""
    x = images
    for i in reversed(range(len(kernels))):
      kernel, first = kernels[i], i == 0 and self.latent_side == 1
      x = transposed_conv_adjoint(x, kernel, first)
      x = x + self.param(f'bias_{i}', nn.initializers.zeros, (x.shape[-1],))
      if i:
        x = ACTIVATIONS[self.activation](normalise(self.norm, x, use_running_average,
                                                    self.axis_name))
    return x.reshape(x.shape[0], -1)


class TiedAutoencoder(ConvDecoder):
  """The tied-weights autoencoder of Table 1: a TiedEncoder, then the GON's decoder.

  Called like ConvDecoder; `encode(images)` runs the decoder's kernels transposed.
  """

  @nn.compact
  def encode(self, images: jax.Array, use_running_average: bool) -> jax.Array:
    """Encodes `[batch, size, size, channels]` to latents `[batch, latent_dim]`."""
    params = self.variables['params']
    kernels = [params[f'UpConv_{i}']['kernel']
               for i in range(len(hidden_widths(self.features, self.image_size,
                                                self.latent_side)) + 1)]
    return TiedEncoder(self.latent_dim, self.activation, self.norm, self.axis_name,
                       self.latent_side)(images, kernels, use_running_average)


# BatchNorm works as in the GON's outer pass, in the encoder too: batch statistics in
# training, running averages at evaluation (objectives.Encoded).
AE = ModelSpec(objective=objectives.Encoded, check=conv.check,
               default_options=conv.default_options,
               build=functools.partial(conv.build, module=Autoencoder),
               forward_flops=conv.forward_flops)
TIED_AE = dataclasses.replace(AE, build=functools.partial(conv.build, module=TiedAutoencoder))
