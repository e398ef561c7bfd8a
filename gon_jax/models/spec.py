"""What the rest of gon_jax needs to know about a model: `ModelSpec`."""

import dataclasses
from typing import Any, Callable

import flax.linen as nn

from gon_jax.settings import Settings


def _no_check(settings: Settings) -> None:
  del settings


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """A model family: its Flax module, its objective and its facts.

  Attributes:
    objective: the gon_jax.objectives class that trains and encodes with it
      (GON: latents at the origin; Encoded: an encoder; GLO: a latent table).
    build: `(*, image_size, performance, axis_name, **options) -> module` from the family's
      options (`Settings.model`), the image size, the performance settings and the pmap axis
      for BatchNorm (`axis_name`); called as `module.apply(variables, z,
      use_running_average)` (implicit modules also take `coordinates`; variational ones
      `noise`).
    default_options: `() -> dict`, the family's options and their defaults: its
      `config.model` section, without the name.
    forward_flops: `(settings, batch_size, points) -> int`, multiply-add FLOPs
      of one forward pass (gon_jax.flops); `points` coordinates per image for
      implicit models, 0 for all.
    check: `(settings) -> None`, raises ConfigError for model options that cannot work.
    implicit: decodes at coordinates (`gon.inner_points`, super-resolution).
    variational: returns `(images, mu, logvar)` and is scored by the negative
      ELBO; has a `generate` method decoding codes of the prior.
    classifiable: takes a classifier head (`classifier.num_classes`, Eq. 13).
    official_average: `settings -> int`, the values of an example over which
      the official script's inner loss also averages (`gon.inner_reduction
      = 'official'`, gon_jax.losses.inner_loss_scale).
  """
  objective: type
  build: Callable[..., nn.Module]
  default_options: Callable[[], dict[str, Any]]
  forward_flops: Callable[[Settings, int, int], int]
  check: Callable[[Settings], None] = _no_check
  implicit: bool = False
  variational: bool = False
  classifiable: bool = False
  official_average: Callable[[Settings], int] = lambda settings: 1
