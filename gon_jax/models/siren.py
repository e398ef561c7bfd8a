"""Implicit GON decoder: a SIREN over pixel coordinates, conditioned on a latent.

F(c, z) for coordinates c in [-1, 1]^2 and a latent z: the input of every
coordinate is concat(c, z), then sine layers sin(w0 (W h + b)) and a linear
output (Sitzmann et al., 2020; the paper's section 3.4). A GON turns one such
network into a space of continuous images, decodable at any resolution.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gon_jax import objectives
from gon_jax.coordinates import grid
from gon_jax.errors import ConfigError, check_choice
from gon_jax.models.initializers import uniform
from gon_jax.models.spec import ModelSpec
from gon_jax.settings import PerformanceSettings, Settings


# sin and cos from one range reduction: x = k pi + r with |r| <= pi/2 (pi split
# in three parts, Cody-Waite, so that k pi is exact enough), then odd and even
# polynomials in r (least-squares fits on [-pi/2, pi/2]) and the sign (-1)^k.
# Absolute error about 1.5e-7 for |x| up to 1000, against 3e-7 for XLA's sin.
_INV_PI = 0.318309886183790671
_PI_PARTS = (3.140625, 9.67502593994140625e-4, 1.509957990978376432e-7)
_SIN = (-0.16666657318496228, 0.008333021879496274, -0.0001980690216508283,
        2.6006148356162676e-06)
_COS = (-0.49999999589007926, 0.0416666421372934, -0.0013888419708781782,
        2.4762633997465558e-05, -2.6089137176396855e-07)


def _polynomial(coefficients, x):
  result = coefficients[-1]
  for c in coefficients[-2::-1]:
    result = result * x + c
  return result


@jax.custom_jvp
def sincos(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`(sin(x), cos(x))` in one elementwise pass; differentiable to any order.

  A SIREN's train step needs sines, cosines and again sines (second order)
  of the same pre-activations; XLA's separate `sin` and `cos` each redo the
  range reduction and dominate the step on CPU.
  """
  with jax.named_scope('sincos'):  # names its operations in profiles
    k = jnp.round(x * _INV_PI)
    r = ((x - k * _PI_PARTS[0]) - k * _PI_PARTS[1]) - k * _PI_PARTS[2]
    r2 = r * r
    sign = 1.0 - 2.0 * (k - 2.0 * jnp.floor(0.5 * k))
    return (r + r * r2 * _polynomial(_SIN, r2)) * sign, (1.0 + r2 * _polynomial(_COS, r2)) * sign


@sincos.defjvp
def _sincos_jvp(primals, tangents):
  (x,), (dx,) = primals, tangents
  sin, cos = sincos(x)  # the rule calls sincos itself, so it differentiates again
  return (sin, cos), (cos * dx, -sin * dx)


def fast_sin(x: jax.Array) -> jax.Array:
  """sin(x) through `sincos`: its derivatives reuse the same pass."""
  return sincos(x)[0]


CONDITIONINGS = ('concat', 'shift', 'film')
ENCODINGS = ('none', 'fourier', 'positional')


def encode_coordinates(coordinates: jax.Array, encoding: str, size: int,
                       scale: float) -> jax.Array:
  """Features of coordinates `[..., d]` in [-1, 1] (`model.encoding`).

  'none': the coordinates. 'fourier' (Tancik et al., 2020): `[sin(2 pi c B),
  cos(2 pi c B)]` for `size` random frequencies `B ~ N(0, scale^2)`, `[d, size]`,
  drawn from numpy's default_rng(0): part of the architecture, the same in every
  run, not trained. 'positional' (NeRF): `[c, sin(2^k pi c), cos(2^k pi c)]` for k < `size`.

  Returns:
    `[..., d]`, `[..., 2 size]` or `[..., d (1 + 2 size)]`.
  """
  if encoding == 'none':
    return coordinates
  d = coordinates.shape[-1]
  if encoding == 'fourier':
    frequencies = jnp.asarray(scale * _fourier_normals(d, size), coordinates.dtype)
    angles = 2 * np.pi * coordinates @ frequencies
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
  angles = (coordinates[..., None] * (np.pi * 2.0 ** np.arange(size))).reshape(
      *coordinates.shape[:-1], d * size)
  return jnp.concatenate([coordinates, jnp.sin(angles), jnp.cos(angles)], axis=-1)


@functools.lru_cache(maxsize=None)
def _fourier_normals(d: int, size: int) -> np.ndarray:
  """Standard normal `[d, size]`, numpy's default_rng(0), computed once on the host: a
  constant of the compiled program (no random-number operations inside it)."""
  return np.random.default_rng(0).standard_normal((d, size)).astype(np.float32)


def encoded_dim(encoding: str, size: int, coordinate_dim: int = 2) -> int:
  """Width of `encode_coordinates`' features."""
  return {'none': coordinate_dim, 'fourier': 2 * size,
          'positional': coordinate_dim * (1 + 2 * size)}[encoding]


class SirenDecoder(nn.Module):
  """SIREN over coordinates, conditioned on a latent (`conditioning`).

  'concat' (the paper): the input of every coordinate is concat(c, z).
  'shift' and 'film' (functa's modulations, from pi-GAN): the input is the
  coordinates alone, and a map of the latent (a linear layer, or an MLP with
  ELU over `modulation_widths`) gives every sine layer a shift, and for
  'film' also a scale, of its pre-activation: sin(w0 ((1 + scale) (W h + b) +
  shift)). The map's bias starts at zero, so at z = 0 every modulation is the
  identity, and its last layer's weights start as the latent's rows of the first
  layer do under concatenation, U(-1/fan_in, 1/fan_in). Concatenation is a shift
  of the first layer only.

  Initialisation of Sitzmann et al.: first-layer weights U(-1/fan_in,
  1/fan_in), later weights U(-sqrt(6/fan_in)/w0, sqrt(6/fan_in)/w0); biases
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's nn.Linear default, which the
  official code keeps).

  The latent's share of the first layer, z @ W_z + b (or its modulation), is
  the same for every coordinate of an image: it is computed once per image
  and added to the coordinates' share c @ W_c (computed once per coordinate
  set). The kernel is still one `[coordinate features + latent_dim, width]`
  matrix, as in a plain Dense layer over concat(c, z).

  Attributes:
    latent_dim: size of the latent.
    widths: widths of the sine layers, e.g. (256, 256, 256, 256).
    channels: output channels.
    image_size: side of the default coordinate grid.
    w0: frequency of the sines.
    conditioning: 'concat', 'shift' or 'film' (above).
    modulation_widths: hidden widths of the latent-to-modulation MLP.
    encoding, encoding_size, encoding_scale: coordinate features
      (`encode_coordinates`).
    factorised: compute the first layer in its factorised form (else as a
      Dense over the concatenated input; same function).
    fast_sine: sines through `sincos` (else `jnp.sin`; same function to 2e-7).
  """
  latent_dim: int = 32
  widths: tuple[int, ...] = (256, 256, 256, 256)
  channels: int = 1
  image_size: int = 28
  w0: float = 30.0
  conditioning: str = 'concat'
  modulation_widths: tuple[int, ...] = ()
  encoding: str = 'none'
  encoding_size: int = 16
  encoding_scale: float = 10.0
  factorised: bool = True
  fast_sine: bool = True
  coordinate_dim: int = 2

  @nn.compact
  def __call__(self, z: jax.Array, use_running_average: bool = True,
               coordinates: jax.Array | None = None) -> jax.Array:
    """Decodes latents at coordinates.

    Args:
      z: latents `[batch, latent_dim]`.
      use_running_average: unused (no BatchNorm); the decoders' common signature.
      coordinates: `[points, 2]` shared by the batch, or `[batch, points, 2]`
        per image; None for the `image_size` grid.

    Returns:
      `[batch, image_size, image_size, channels]` on the default grid, else
      `[batch, points, channels]`.
    """
    del use_running_average
    on_grid = coordinates is None
    if on_grid:
      coordinates = jnp.asarray(grid(self.image_size))
    features = encode_coordinates(coordinates, self.encoding, self.encoding_size,
                                  self.encoding_scale)
    concat = self.conditioning == 'concat'
    n = features.shape[-1]
    fan_in = n + self.latent_dim if concat else n
    kernel = self.param('first_kernel', uniform(1 / fan_in), (fan_in, self.widths[0]))
    bias = self.param('first_bias', uniform(fan_in ** -0.5), (self.widths[0],))
    if not concat:
      h = features @ kernel + bias  # [(batch,) points, width], once per coordinate set
    elif self.factorised:
      per_coordinate = features @ kernel[:n]  # [(batch,) points, width]
      per_image = z @ kernel[n:] + bias  # [batch, width]
      h = per_coordinate + per_image[:, None, :]
    else:
      features = jnp.broadcast_to(features, (z.shape[0], *features.shape[-2:]))
      latents = jnp.broadcast_to(z[:, None, :], (*features.shape[:2], z.shape[-1]))
      h = jnp.concatenate([features, latents], axis=-1) @ kernel + bias
    modulations = [None] * len(self.widths) if concat else self._modulations(z)

    def dense(width, h):
      fan_in = h.shape[-1]
      return nn.Dense(width, kernel_init=uniform(np.sqrt(6 / fan_in) / self.w0),
                      bias_init=uniform(fan_in ** -0.5))(h)

    sine = fast_sin if self.fast_sine else jnp.sin
    h = sine(self.w0 * _modulate(h, modulations[0]))
    for width, modulation in zip(self.widths[1:], modulations[1:]):
      h = sine(self.w0 * _modulate(dense(width, h), modulation))
    h = dense(self.channels, h)
    if on_grid:
      return h.reshape(z.shape[0], self.image_size, self.image_size, self.channels)
    return h

  def _modulations(self, z: jax.Array) -> list[tuple[jax.Array, jax.Array | None]]:
    """Per sine layer, `(shift, scale or None)`, each `[batch, 1, width]`."""
    h = z
    for width in self.modulation_widths:
      # ELU, not functa's ReLU: at the origin every hidden pre-activation is 0,
      # where ReLU's gradient is 0, and a GON's latent would get no gradient.
      h = nn.elu(nn.Dense(width)(h))
    per_unit = 2 if self.conditioning == 'film' else 1
    # Weights U(-1/fan_in, 1/fan_in), as the latent's rows of the first layer under
    # concatenation (SIREN's first-layer rule), not Dense's lecun_normal: a GON's latent, the
    # gradient of a summed loss, is large, and sin(w0 (h + shift)) multiplies every shift by
    # w0 = 30. lecun_normal's 6 times larger weights (latent 34) threw the sines' phases
    # about: siren_mnist_tiny with shifts, 300 steps, test SSE 77.0 against 13.6 (docs/results.md).
    out = nn.Dense(per_unit * sum(self.widths), kernel_init=uniform(1 / h.shape[-1]),
                   bias_init=nn.initializers.zeros, name='to_modulations')(h)
    modulations, start = [], 0
    for width in self.widths:
      shift = out[:, None, start:start + width]
      scale = out[:, None, start + width:start + 2 * width] if per_unit == 2 else None
      modulations.append((shift, scale))
      start += per_unit * width
    return modulations


def _modulate(h: jax.Array, modulation: tuple[jax.Array, jax.Array | None] | None) -> jax.Array:
  """`(1 + scale) h + shift` (FiLM), `h + shift`, or `h` (None)."""
  if modulation is None:
    return h
  shift, scale = modulation
  return (h if scale is None else (1 + scale) * h) + shift


def default_options() -> dict:
  """The options of the official Implicit-GON.py (4 sine layers of 256, w0 = 30,
  concatenated latent, raw coordinates), and the options beyond it (`config.model`)."""
  return dict(
      latent_dim=32, widths=(256, 256, 256, 256), channels=1, w0=30.0,
      # 'concat' (the paper), or functa's modulations of every sine layer from the
      # latent: 'shift', 'film' (shift and scale), through a linear map or an MLP
      # with ELU over modulation_widths.
      conditioning='concat', modulation_widths=(),
      # Coordinate features: 'none', 'fourier' (encoding_size random frequencies of
      # standard deviation encoding_scale), 'positional' (encoding_size octaves).
      encoding='none', encoding_size=16, encoding_scale=10.0)


def check(settings: Settings) -> None:
  m = settings.model
  check_choice('model.conditioning', m['conditioning'], CONDITIONINGS)
  check_choice('model.encoding', m['encoding'], ENCODINGS)
  size = m['encoding_size']
  if m['encoding'] != 'none' and (isinstance(size, bool) or not isinstance(size, int)
                                  or size < 1):
    raise ConfigError(f'model.encoding_size={size!r}: use a positive number of frequencies')
  if m['encoding'] == 'fourier' and not m['encoding_scale'] > 0:
    raise ConfigError(f'model.encoding_scale={m["encoding_scale"]!r}: the frequencies\' '
                      f'standard deviation must be positive')
  if any(not isinstance(w, int) or w < 1 for w in (*m['widths'], *m['modulation_widths'])):
    raise ConfigError(f'model.widths {tuple(m["widths"])} and model.modulation_widths '
                      f'{tuple(m["modulation_widths"])} must be positive integers')


def build(*, latent_dim: int, widths: tuple[int, ...], channels: int, w0: float,
          conditioning: str, modulation_widths: tuple[int, ...], encoding: str,
          encoding_size: int, encoding_scale: float, image_size: int,
          performance: PerformanceSettings, axis_name: str | None) -> SirenDecoder:
  """A SirenDecoder with these options (`default_options`)."""
  del axis_name  # no batch statistics
  return SirenDecoder(latent_dim=latent_dim, widths=tuple(widths), channels=channels,
                      image_size=image_size, w0=w0, conditioning=conditioning,
                      modulation_widths=tuple(modulation_widths), encoding=encoding,
                      encoding_size=encoding_size, encoding_scale=encoding_scale,
                      factorised=performance.factorised, fast_sine=performance.fast_sine)


def forward_flops(settings: Settings, batch_size: int, points: int = 0) -> int:
  """Multiply-add FLOPs of one forward pass at `points` coordinates per image (0: all)."""
  m, size = settings.model, settings.data.image_size
  pixels = points or size * size
  widths = (*m['widths'], m['channels'])
  n = encoded_dim(m['encoding'], m['encoding_size'])
  encoding = 2 * pixels * 2 * m['encoding_size'] if m['encoding'] == 'fourier' else 0
  if m['conditioning'] != 'concat':  # coordinates once; the latent through the modulation map
    mlp = (m['latent_dim'], *m['modulation_widths'],
           (2 if m['conditioning'] == 'film' else 1) * sum(m['widths']))
    first = 2 * pixels * n * widths[0] + batch_size * sum(
        2 * a * b for a, b in zip(mlp[:-1], mlp[1:]))
  elif settings.performance.factorised:
    first = 2 * pixels * n * widths[0] + batch_size * 2 * m['latent_dim'] * widths[0]
  else:
    first = batch_size * pixels * 2 * (n + m['latent_dim']) * widths[0]
  rest = sum(2 * pixels * a * b for a, b in zip(widths[:-1], widths[1:]))
  return encoding + first + batch_size * rest


SIREN = ModelSpec(objective=objectives.GON, build=build, default_options=default_options,
                  forward_flops=forward_flops, check=check, implicit=True, classifiable=True,
                  # Implicit-GON.py's inner loss averages over the batch and the channels.
                  official_average=lambda settings: settings.model['channels'])
