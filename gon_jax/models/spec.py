"""What the rest of gon_jax needs to know about a model: `ModelSpec`."""

import dataclasses
from typing import Callable

import flax.linen as nn
import ml_collections


def _no_check(config: ml_collections.ConfigDict) -> None:
  del config


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """A model family: its Flax module, its objective and its facts.

  Attributes:
    objective: the gon_jax.objectives class that trains and encodes with it
      (GON: latents at the origin; Encoded: an encoder; GLO: a latent table).
    build: `(config, axis_name) -> module`, called as `module.apply(variables,
      z, use_running_average)` (implicit modules also take `coordinates`;
      variational ones `noise`); `axis_name` is the pmap axis for BatchNorm.
    default_config: the `config.model` section of the family's defaults.
    forward_flops: `(config, batch_size, points) -> int`, multiply-add FLOPs
      of one forward pass (gon_jax.flops); `points` coordinates per image for
      implicit models, 0 for all.
    check: raises ConfigError for model options that cannot work.
    implicit: decodes at coordinates (`gon.inner_points`, super-resolution).
    variational: returns `(images, mu, logvar)` and is scored by the negative
      ELBO; has a `generate` method decoding codes of the prior.
    classifiable: takes a classifier head (`classifier.num_classes`, Eq. 13).
    official_average: `config -> int`, the values of an example over which
      the official script's inner loss also averages (`gon.inner_reduction
      = 'official'`, gon_jax.losses.inner_loss_scale).
  """
  objective: type
  build: Callable[[ml_collections.ConfigDict, str | None], nn.Module]
  default_config: Callable[[], ml_collections.ConfigDict]
  forward_flops: Callable[[ml_collections.ConfigDict, int, int], int]
  check: Callable[[ml_collections.ConfigDict], None] = _no_check
  implicit: bool = False
  variational: bool = False
  classifiable: bool = False
  official_average: Callable[[ml_collections.ConfigDict], int] = lambda config: 1
