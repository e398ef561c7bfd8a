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
import numpy as np

from gon_jax.errors import ConfigError
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
CONV_METHODS = ('matmul', 'conv')  # how transposed convolutions are computed (transposed_conv)
MODELS = ('conv', 'siren', 'vgon', 'vae', 'ae', 'tied_ae', 'glo')
IMPLICIT_MODELS = ('siren',)  # decoders over coordinates
VARIATIONAL_MODELS = ('vgon', 'vae')  # decoders returning (decoded, mu, logvar)
ENCODER_MODELS = ('vae', 'ae', 'tied_ae')  # baselines whose latents come from an encoder
# GLO (Bojanowski et al., 2018): a persistent latent per training image,
# optimised with the decoder; test latents are fitted by gradient descent.
LATENT_TABLE_MODELS = ('glo',)
CLASSIFIABLE_MODELS = ('conv', 'siren')  # GON decoders that take a classifier head (Eq. 13)


def _choose(kind: str, name: str, valid) -> str:
  if name not in valid:
    raise ConfigError(f'unknown {kind} {name!r}; valid: {", ".join(valid)}')
  return name


def _normalise(norm: str, x: jax.Array, use_running_average: bool,
               axis_name: str | None) -> jax.Array:
  """The hidden layers' normalisation: see ConvDecoder.norm."""
  if norm == 'batch':
    # PyTorch's BatchNorm2d defaults: momentum 0.1, eps 1e-5.
    return nn.BatchNorm(use_running_average=use_running_average, momentum=0.9, epsilon=1e-5,
                        axis_name=axis_name)(x)
  if norm == 'layer':
    return nn.GroupNorm(num_groups=1, epsilon=1e-5)(x)
  if norm == 'group':
    return nn.GroupNorm(num_groups=8, epsilon=1e-5)(x)
  return x


class UpConv(nn.Module):
  """PyTorch's ConvTranspose2d(kernel 4): 1x1 -> 4x4 (`first`), else stride 2, padding 1.

  `method` picks how it is computed (the same function): 'matmul' (default)
  or 'conv'; see `transposed_conv`.
  """
  features: int
  first: bool = False
  method: str = 'matmul'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (4, 4, x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    return transposed_conv(x, kernel, self.first, self.method) + bias


def transposed_conv(x: jax.Array, kernel: jax.Array, first: bool,
                    method: str = 'matmul') -> jax.Array:
  """UpConv without its bias: a linear map of `x` (see UpConv).

  'conv' correlates the input, dilated by zeros, with the flipped kernel
  (how frameworks define a transposed convolution). 'matmul' multiplies each
  input pixel by the whole kernel, one matrix product `[pixels, in] @ [in,
  16 out]`, and adds the overlapping 4x4 output patches. Both compute the
  same numbers; 'matmul' does no multiplications by the dilation's zeros,
  and its gradients are matrix products too, where XLA:CPU computes the
  kernel gradient of the dilated convolution as a whole-image-window
  convolution (four of them took half the conv_mnist GON step at batch 64).

  Args:
    x: `[batch, features]` or `[batch, 1, 1, features]` if `first`, else
      `[batch, height, width, in_features]`.
    kernel: `[4, 4, in_features, out_features]`.
    first: map a 1x1 input to 4x4; else double the height and width.
    method: 'matmul' or 'conv'.

  Returns:
    `[batch, 4, 4, out_features]` if `first`, else `[batch, 2 height, 2 width, out_features]`.
  """
  if first:  # a 1x1 input: each output pixel is one kernel tap
    return jnp.einsum('bi,yxio->byxo', x.reshape(x.shape[0], -1), kernel)
  b, h, w, c_in = x.shape
  c_out = kernel.shape[-1]
  if method == 'conv':
    return jax.lax.conv_general_dilated(
        x, kernel[::-1, ::-1], (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2),
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  # Input row i, kernel row ky = 2q + r lands on output row 2(i + q) + r - 1:
  # with the taps grouped by shift q, each group is a [h, 2] block of rows
  # (i, r) shifted down by q blocks. The same for columns.
  taps = x.reshape(-1, c_in) @ kernel.transpose(2, 0, 1, 3).reshape(c_in, 16 * c_out)
  taps = taps.reshape(b, h, w, 2, 2, 2, 2, c_out)  # [b, i, j, qy, ry, qx, rx, out]
  blocks = 0.0
  for qy in (0, 1):
    for qx in (0, 1):
      block = taps[:, :, :, qy, :, qx].transpose(0, 1, 3, 2, 4, 5)  # [b, i, ry, j, rx, out]
      blocks = blocks + jnp.pad(block, ((0, 0), (qy, 1 - qy), (0, 0), (qx, 1 - qx), (0, 0),
                                        (0, 0)))
  # Rows (i, r) of h + 1 blocks are output rows 2i + r - 1: drop the padding row at each end.
  return blocks.reshape(b, 2 * h + 2, 2 * w + 2, c_out)[:, 1:-1, 1:-1]


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
    conv_method: how the transposed convolutions are computed (see
      `transposed_conv`); the same function either way.
  """
  latent_dim: int = 32
  features: int = 16
  channels: int = 1
  image_size: int = 32
  activation: str = 'elu'
  norm: str = 'batch'
  axis_name: str | None = None
  conv_method: str = 'matmul'

  @nn.compact
  def __call__(self, z: jax.Array, use_running_average: bool) -> jax.Array:
    """Decodes latents `[batch, latent_dim]` to images `[batch, size, size, channels]` in (0, 1)."""
    num_upsamplings = num_conv_upsamplings(self.image_size)
    activation = ACTIVATIONS[self.activation]
    x = z
    for i in range(num_upsamplings):
      width = self.features * 2 ** (num_upsamplings - 1 - i)
      x = UpConv(width, first=i == 0, method=self.conv_method)(x)
      x = activation(_normalise(self.norm, x, use_running_average, self.axis_name))
    x = UpConv(self.channels, method=self.conv_method)(x)
    return nn.sigmoid(x)


class VariationalDecoder(nn.Module):
  """F of the variational GON (section 3.3, Variational-GON.py).

  Two linear layers map the latent to the mean and log-variance of a
  Gaussian; a sample of it (the reparameterisation trick as a stochastic
  layer) is decoded by a ConvDecoder into Bernoulli probabilities or
  Gaussian means. `generate` decodes codes drawn from the prior N(0, I).
  """
  latent_dim: int = 48
  features: int = 32
  channels: int = 1
  image_size: int = 32
  activation: str = 'elu'
  norm: str = 'layer'
  axis_name: str | None = None
  conv_method: str = 'matmul'

  def setup(self):
    self.mu = nn.Dense(self.latent_dim)
    self.logvar = nn.Dense(self.latent_dim)
    self.decoder = ConvDecoder(self.latent_dim, self.features, self.channels, self.image_size,
                               self.activation, self.norm, self.axis_name, self.conv_method)

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


class ConvEncoder(nn.Module):
  """The encoder of the VAE baseline: the ConvDecoder mirrored (Table 2).

  Stride-2 4x4 convolutions halve the image down to 4x4, doubling the width
  each time (`features`, 2 `features`, ...), each followed by the norm and
  activation; a 4x4 valid convolution maps 4x4 to a 1x1 code of `latent_dim`.
  """
  latent_dim: int = 48
  features: int = 32
  image_size: int = 32
  activation: str = 'elu'
  norm: str = 'layer'
  axis_name: str | None = None

  @nn.compact
  def __call__(self, images: jax.Array, use_running_average: bool) -> jax.Array:
    """Encodes `[batch, size, size, channels]` to `[batch, latent_dim]`."""
    x = images
    for i in range(num_conv_upsamplings(self.image_size)):
      x = nn.Conv(self.features * 2 ** i, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)))(x)
      x = ACTIVATIONS[self.activation](
          _normalise(self.norm, x, use_running_average, self.axis_name))
    x = nn.Conv(self.latent_dim, (4, 4), padding='VALID')(x)
    return x.reshape(x.shape[0], -1)


class VAE(VariationalDecoder):
  """The VAE baseline: a ConvEncoder, then the variational GON's F.

  Called like VariationalDecoder (it is F, with the same parameters);
  `encode(images)` replaces the GON's gradient at the origin.
  """

  def setup(self):
    super().setup()
    self.encoder = ConvEncoder(self.latent_dim, self.features, self.image_size, self.activation,
                               self.norm, self.axis_name)

  def encode(self, images: jax.Array, use_running_average: bool) -> jax.Array:
    """Encodes `[batch, size, size, channels]` to latents `[batch, latent_dim]`."""
    return self.encoder(images, use_running_average)


class Autoencoder(ConvDecoder):
  """The autoencoder baseline of Table 1: a ConvEncoder, then the GON's decoder.

  Called like ConvDecoder (it is F, with the same parameters);
  `encode(images)` replaces the GON's gradient at the origin.
  """

  @nn.compact
  def encode(self, images: jax.Array, use_running_average: bool) -> jax.Array:
    """Encodes `[batch, size, size, channels]` to latents `[batch, latent_dim]`."""
    return ConvEncoder(self.latent_dim, self.features, self.image_size, self.activation,
                       self.norm, self.axis_name)(images, use_running_average)


class TiedEncoder(nn.Module):
  """An encoder whose convolutions are the adjoints of a ConvDecoder's (Gedeon, 1998).

  Layer by layer from the image, each transposed convolution of the decoder
  is applied transposed (a stride-2 convolution with the same kernel), then
  the encoder's own bias, norm and activation; the last maps 4x4 to the
  latent. Only biases and norm parameters are the encoder's own.
  """
  latent_dim: int
  activation: str = 'elu'
  norm: str = 'layer'
  axis_name: str | None = None

  @nn.compact
  def __call__(self, images: jax.Array, kernels: list[jax.Array],
               use_running_average: bool) -> jax.Array:
    """Encodes `[batch, size, size, channels]` with the decoder's `kernels` (first to last)."""
    x = images
    for i in reversed(range(len(kernels))):
      kernel, first = kernels[i], i == 0
      b, h, w, _ = x.shape
      input_shape = (b, kernel.shape[2]) if first else (b, h // 2, w // 2, kernel.shape[2])
      adjoint = jax.linear_transpose(lambda v, k=kernel, f=first: transposed_conv(v, k, f),
                                     jax.ShapeDtypeStruct(input_shape, x.dtype))
      (x,) = adjoint(x)
      x = x + self.param(f'bias_{i}', nn.initializers.zeros, (x.shape[-1],))
      if not first:
        x = ACTIVATIONS[self.activation](_normalise(self.norm, x, use_running_average,
                                                    self.axis_name))
    return x


class TiedAutoencoder(ConvDecoder):
  """The tied-weights autoencoder of Table 1: a TiedEncoder, then the GON's decoder.

  Called like ConvDecoder; `encode(images)` runs the decoder's kernels transposed.
  """

  @nn.compact
  def encode(self, images: jax.Array, use_running_average: bool) -> jax.Array:
    """Encodes `[batch, size, size, channels]` to latents `[batch, latent_dim]`."""
    params = self.variables['params']
    kernels = [params[f'UpConv_{i}']['kernel']
               for i in range(num_conv_upsamplings(self.image_size) + 1)]
    return TiedEncoder(self.latent_dim, self.activation, self.norm, self.axis_name)(
        images, kernels, use_running_average)


class LatentClassifier(nn.Module):
  """A GON decoder with a linear softmax classifier on its latents (Eq. 13).

  Called like `decoder`; `classify(latents)` returns logits `[batch, num_classes]`.
  """
  decoder: nn.Module
  num_classes: int

  def setup(self):
    # Zero logits at first (as big_vision zero-initialises heads): latents summed
    # over pixels are large, and a random head would swamp the decoder with
    # cross-entropy gradients before it learns to reconstruct.
    self.head = nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros)

  def __call__(self, z: jax.Array, use_running_average: bool, **kwargs):
    return self.decoder(z, use_running_average, **kwargs)

  def classify(self, latents: jax.Array) -> jax.Array:
    return self.head(latents)


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
  num_classes = config.classifier.num_classes
  if num_classes and m.name not in CLASSIFIABLE_MODELS:
    raise ConfigError(f'classifier.num_classes needs a GON model '
                      f'({", ".join(CLASSIFIABLE_MODELS)}), not {m.name!r}')
  if m.name == 'siren':
    decoder = SirenDecoder(latent_dim=m.latent_dim, widths=tuple(m.widths), channels=m.channels,
                           image_size=config.data.image_size, w0=m.w0, factorised=m.factorised,
                           fast_sine=m.fast_sine)
  else:
    _choose('activation', m.activation, ACTIVATIONS)
    _choose('norm', m.norm, NORMS)
    _choose('model.conv_method', m.conv_method, CONV_METHODS)
    num_conv_upsamplings(config.data.image_size)
    module = {'conv': ConvDecoder, 'glo': ConvDecoder, 'vgon': VariationalDecoder, 'vae': VAE,
              'ae': Autoencoder, 'tied_ae': TiedAutoencoder}[m.name]
    decoder = module(latent_dim=m.latent_dim, features=m.features, channels=m.channels,
                     image_size=config.data.image_size, activation=m.activation, norm=m.norm,
                     axis_name=axis_name, conv_method=m.conv_method)
  return LatentClassifier(decoder, num_classes) if num_classes else decoder


def init_variables(model: nn.Module, key: jax.Array, latent_dim: int) -> dict:
  """Initial `{'params': ..., ['batch_stats': ...]}` of a decoder (and encoder, if any)."""
  z = jnp.zeros((1, latent_dim), jnp.float32)
  if isinstance(model, LatentClassifier):
    return model.init(key, z, method=lambda m, z: (m(z, False), m.classify(z)))
  if not hasattr(model, 'encode'):
    return model.init(key, z, use_running_average=False)
  images = jnp.zeros((1, model.image_size, model.image_size, model.channels), jnp.float32)
  return model.init(key, z, images, method=lambda m, z, x: (m(z, False), m.encode(x, False)))
