"""Model FLOPs of a GON train step, counted from the layer sizes.

Only the multiply-adds of dense and (transposed) convolution layers count,
2 FLOPs each; elementwise work (sines, normalisation, the optimiser) does
not. One forward pass costs F. A train step with k latent steps costs
(6k + 3) F: each inner step runs a forward pass (F) and its backward pass to
the latent (F: input gradients only); the outer pass runs forward (F) and
backward (2F: input and weight gradients); differentiating through each
inner step's forward and backward passes costs 2F + 2F more. With Monte
Carlo coordinates (`gon.inner_points`, `gon.outer_points`), F counts only the
coordinates a pass evaluates.
"""


import ml_collections

from gon_jax.models import num_conv_upsamplings


def forward_flops(config: ml_collections.ConfigDict, batch_size: int,
                  points: int = 0) -> int:
  """Multiply-add FLOPs of one decoder forward pass over `batch_size` images.

  `points`: implicit models, coordinates evaluated per image (0: all).
  """
  m, size = config.model, config.data.image_size
  if m.name == 'siren':
    pixels = points or size * size
    widths = (*m.widths, m.channels)
    first = 2 * pixels * 2 * widths[0] + batch_size * 2 * m.latent_dim * widths[0]
    if not m.factorised:
      first = batch_size * pixels * 2 * (2 + m.latent_dim) * widths[0]
    rest = sum(2 * pixels * a * b for a, b in zip(widths[:-1], widths[1:]))
    return first + batch_size * rest
  # Convolutional decoder: a transposed convolution costs 2 k^2 Cin Cout per input pixel.
  k = num_conv_upsamplings(size)
  widths = [m.latent_dim] + [m.features * 2 ** (k - 1 - i) for i in range(k)] + [m.channels]
  sides = [1] + [4 * 2 ** i for i in range(k)]
  per_image = sum(2 * 16 * side * side * c_in * c_out
                  for side, c_in, c_out in zip(sides, widths[:-1], widths[1:]))
  return batch_size * per_image


def train_step_flops(config: ml_collections.ConfigDict) -> int:
  """Model FLOPs of one train step at `config.batch_size`: (6k + 3) forward passes."""
  gon, batch = config.gon, config.batch_size
  return (6 * gon.num_steps * forward_flops(config, batch, gon.inner_points)
          + 3 * forward_flops(config, batch, gon.outer_points))
