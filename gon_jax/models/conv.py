"""The convolutional decoder of the GON (DCGAN-style, the official GON.py), its
layers, and the specs of the models built on it alone: 'conv' (the GON) and
'glo' (the GLO baseline, the same decoder with a latent table)."""

import dataclasses
import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from gon_jax import objectives
from gon_jax.errors import ConfigError, check_choice
from gon_jax.models import initializers, matmul_conv
from gon_jax.models.spec import ModelSpec
from gon_jax.settings import PerformanceSettings, Settings

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


def normalise(norm: str, x: jax.Array, use_running_average: bool,
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
  or 'conv'; see `transposed_conv`. `param_init`: 'flax' or 'pytorch' (gon_jax.models.initializers).
  """
  features: int
  first: bool = False
  method: str = 'matmul'
  param_init: str = 'pytorch'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    # PyTorch's fan_in of a transposed convolution: output channels x kernel area.
    kernel_init, bias_init = initializers.kernel_and_bias(self.param_init, 16 * self.features)
    kernel = self.param('kernel', kernel_init, (4, 4, x.shape[-1], self.features))
    bias = self.param('bias', bias_init, (self.features,))
    return transposed_conv(x, kernel, self.first, self.method) + bias


def transposed_conv(x: jax.Array, kernel: jax.Array, first: bool,
                    method: str = 'matmul') -> jax.Array:
  """UpConv without its bias: a linear map of `x` (see UpConv).

  'conv' correlates the input, dilated by zeros, with the flipped kernel
  (how frameworks define a transposed convolution). 'matmul' computes it,
  and its derivatives of every order, as matrix products next to copies of
  shifted 2x2 windows (gon_jax.models.matmul_conv): no multiplications by the
  dilation's zeros, where XLA:CPU computes the kernel gradient of the
  dilated convolution as a whole-image-window convolution (four of them
  took half the conv_mnist GON step at batch 64). Both compute the same
  numbers. 'matmul' has gradients but no forward-mode derivative; its
  transpose is `transposed_conv_adjoint`.

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
  if method == 'conv':
    return jax.lax.conv_general_dilated(
        x, kernel[::-1, ::-1], (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2),
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return matmul_conv.up(x, matmul_conv.kernel_matrix(kernel))


def transposed_conv_adjoint(y: jax.Array, kernel: jax.Array, first: bool) -> jax.Array:
  """The transpose of `transposed_conv(., kernel, first)`: `[batch, in_features]` if `first`,
  else the stride-2 convolution of `y`, `[batch, height / 2, width / 2, in_features]`."""
  if first:
    return jnp.einsum('byxo,yxio->bi', y, kernel)
  return matmul_conv.down(y, matmul_conv.kernel_matrix(kernel))


class ConvOptions(nn.Module):
  """The options a ConvDecoder shares with the encoders that mirror it
  (gon_jax.models.autoencoders); see ConvDecoder for their meaning."""
  latent_dim: int = 32
  features: int = 16
  image_size: int = 32
  activation: str = 'elu'
  norm: str = 'batch'
  axis_name: str | None = None
  param_init: str = 'pytorch'
  latent_side: int = 1


class ConvDecoder(ConvOptions):
  """The convolutional decoder of the official GON.py (DCGAN-style).

  A latent `[batch, latent_dim]` is read as a 1x1 image; a 4x4 transposed
  convolution makes it 4x4, stride-2 transposed convolutions double it up to
  `image_size`, halving the width each time; each hidden layer is followed by
  a normalisation and the activation, the output by a sigmoid. For
  `image_size=32`, `features=16`: widths 64, 32, 16, then `channels`.

  With `latent_side` s > 1 (Fig. 2a, App. B's Fig. 10a) the latent is read as
  an s x s image of `latent_dim / s^2` channels, and only stride-2 layers
  double it: s = 2 replaces the first layer by one, s = 4 drops it (the
  widths of the layers at each resolution stay those above).

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
    latent_side: height and width of the latent image: 1, or a power of two up to
      `image_size / 4`; `latent_dim` is its number of values.
    conv_method: how the transposed convolutions are computed (see
      `transposed_conv`); the same function either way.
    param_init: 'flax' (LeCun-normal kernels, zero biases) or 'pytorch' (PyTorch's
      ConvTranspose2d default); see gon_jax.models.initializers.
  """
  channels: int = 1
  conv_method: str = 'matmul'

  @nn.compact
  def __call__(self, z: jax.Array, use_running_average: bool) -> jax.Array:
    """Decodes latents `[batch, latent_dim]` to images `[batch, size, size, channels]` in (0, 1)."""
    activation = ACTIVATIONS[self.activation]
    x = latent_image(z, self.latent_side)
    for i, width in enumerate(hidden_widths(self.features, self.image_size, self.latent_side)):
      first = i == 0 and self.latent_side == 1
      x = UpConv(width, first=first, method=self.conv_method, param_init=self.param_init)(x)
      x = activation(normalise(self.norm, x, use_running_average, self.axis_name))
    x = UpConv(self.channels, method=self.conv_method, param_init=self.param_init)(x)
    return nn.sigmoid(x)


def latent_image(z: jax.Array, side: int) -> jax.Array:
  """Latents `[batch, latent_dim]` as the decoder's input: unchanged for `side` 1, else
  `[batch, side, side, latent_dim / side^2]` (row-major, channels last)."""
  return z if side == 1 else z.reshape(z.shape[0], side, side, -1)


def hidden_widths(features: int, image_size: int, latent_side: int = 1) -> list[int]:
  """Output widths of the decoder's hidden layers, first to last: the layer that makes r x r
  pixels has `features * image_size / (2 r)` channels (64, 32, 16 for 32x32 and 16)."""
  k = num_conv_upsamplings(image_size)
  first = 0 if latent_side == 1 else int(math.log2(latent_side)) - 1  # layers dropped
  return [features * 2 ** (k - 1 - i) for i in range(first, k)]


def check_latent_side(latent_side: int, latent_dim: int, image_size: int) -> None:
  """ConfigError unless `latent_side` is 1 or a power of two up to `image_size / 4` dividing
  the latent into whole channels."""
  sides = [2 ** i for i in range(num_conv_upsamplings(image_size) + 1)]
  if latent_side not in sides:
    raise ConfigError(f'model.latent_side {latent_side}: the latent of a {image_size}x'
                      f'{image_size} decoder is {", ".join(map(str, sides))} pixels a side')
  if latent_dim % latent_side ** 2:
    raise ConfigError(f'model.latent_dim {latent_dim} is not a whole number of channels of a '
                      f'{latent_side}x{latent_side} latent (model.latent_side)')


def num_conv_upsamplings(image_size: int) -> int:
  """Number of 2x size doublings after the first 4x4 layer, plus one."""
  k = math.log2(image_size / 4) if image_size >= 8 else 0
  if k < 1 or k != int(k):
    raise ConfigError(f'image size {image_size}: the convolutional decoder '
                      'makes 4 * 2**k pixels a side (8, 16, 32, 64, 128, ...)')
  return int(k)




def default_options() -> dict:
  """The options of the official GON.py's decoder (`config.model`)."""
  return dict(
      latent_dim=32,
      features=16,  # width of the last hidden layer (ngf); each earlier one doubles it
      channels=1, activation='elu',
      # Per-example normalisation: latents and reconstructions of an image do not
      # depend on the rest of its batch (docs/models.md, "BatchNorm and GONs").
      norm='layer',
      # Initial parameters: 'pytorch' (PyTorch's layer defaults, as the official
      # scripts start from) or 'flax' (LeCun-normal kernels, zero biases), which
      # learns slower (docs/results.md).
      init='pytorch',
      # Height and width of the latent as an image (Fig. 2a): 1 (GON.py), 2, 4, ...; the
      # latent's latent_dim values then fill latent_dim / latent_side^2 channels.
      latent_side=1)


def check(settings: Settings) -> None:
  """ConfigErrors of a convolutional decoder's options."""
  m = settings.model
  check_choice('activation', m['activation'], ACTIVATIONS)
  check_choice('norm', m['norm'], NORMS)
  check_choice('model.init', m['init'], initializers.INITS)
  check_choice('performance.conv_method', settings.performance.conv_method, CONV_METHODS)
  num_conv_upsamplings(settings.data.image_size)
  check_latent_side(m['latent_side'], m['latent_dim'], settings.data.image_size)
  if m['norm'] == 'batch' and settings.performance.scan_chunk:
    raise ConfigError('norm batch does not work with performance.scan_chunk (a few examples '
                      'at a time); use norm layer, group or none')


def build(*, latent_dim: int, features: int, channels: int, activation: str, norm: str,
          init: str, latent_side: int, image_size: int, performance: PerformanceSettings,
          axis_name: str | None, module: Callable[..., nn.Module] = ConvDecoder) -> nn.Module:
  """`module` (a ConvDecoder or a subclass) with these options (`default_options`)."""
  return module(latent_dim=latent_dim, features=features, channels=channels,
                image_size=image_size, activation=activation, norm=norm, axis_name=axis_name,
                conv_method=performance.conv_method, param_init=init, latent_side=latent_side)


def forward_flops(settings: Settings, batch_size: int, points: int = 0) -> int:
  """Multiply-add FLOPs of one forward pass: a transposed convolution costs 2 k^2 Cin Cout
  per input pixel (`points` does not apply)."""
  del points
  m, size, side = settings.model, settings.data.image_size, settings.model['latent_side']
  hidden = hidden_widths(m['features'], size, side)
  widths = [m['latent_dim'] // side ** 2, *hidden, m['channels']]
  n = len(hidden)
  sides = [side] + [size // 2 ** (n - j + 1) for j in range(1, n + 1)]  # each layer's input
  per_image = sum(2 * 16 * side * side * c_in * c_out
                  for side, c_in, c_out in zip(sides, widths[:-1], widths[1:]))
  return batch_size * per_image


CONV = ModelSpec(
    objective=objectives.GON, build=build, default_options=default_options, check=check,
    forward_flops=forward_flops, classifiable=True,
    # GON.py's inner loss averages over the batch and the pixels.
    official_average=lambda settings: settings.data.image_size ** 2)
# GLO (Bojanowski et al., 2018): a persistent latent per training image,
# optimised with the decoder; test latents are fitted by gradient descent.
GLO = dataclasses.replace(CONV, objective=objectives.GLO, classifiable=False,
                          official_average=lambda settings: 1)
