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

from gon_jax.models import get_spec
from gon_jax.settings import Settings


def forward_flops(settings: Settings, batch_size: int, points: int = 0) -> int:
  """Multiply-add FLOPs of one decoder forward pass over `batch_size` images (the model
  spec's count).

  `points`: implicit models, coordinates evaluated per image (0: all).
  """
  return get_spec(settings.model_name).forward_flops(settings, batch_size, points)


def train_step_flops(settings: Settings) -> int:
  """Model FLOPs of one train step at `settings.batch_size`: (6k + 3) forward passes."""
  gon, batch = settings.gon, settings.batch_size
  return (6 * gon.num_steps * forward_flops(settings, batch, gon.inner_points)
          + 3 * forward_flops(settings, batch, gon.outer_points))
