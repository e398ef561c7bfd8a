"""The config as frozen, typed settings: what the modules below the entry points take.

The entry points (train_and_evaluate, evaluate_checkpoint, load, compare, encode, export,
demo) read the ml_collections config once: `gon_jax.config.validate(config)` checks it and
returns its `Settings`. Below them, modules take these settings, or a section of them, or
plain keyword arguments, and never a ConfigDict, so that a signature says what a function
uses. Each section mirrors its config section key for key, without defaults of its own:
gon_jax.config.base_config holds every default and says what each key means. Settings
compare and hash by value, so equal configs give equal objectives and share compiled
programs.
"""

import dataclasses
from typing import Any, Mapping

import flax.core


@dataclasses.dataclass(frozen=True)
class GonSettings:
  """`config.gon`: how a GON's latents are computed (gon_jax.core.origin_latent)."""
  num_steps: int
  step_size: float
  detach: bool
  z0_sigma: float
  start_from_z0: bool
  learn_step_size: str
  learn_origin: bool
  inner_reduction: str
  inner_points: int
  outer_points: int
  observe: str


@dataclasses.dataclass(frozen=True)
class ClassifierSettings:
  """`config.classifier`: the linear classifier on the latents (Eq. 13); 0 classes: none."""
  num_classes: int
  reconstruction_weight: float
  classification_weight: float


@dataclasses.dataclass(frozen=True)
class GloSettings:
  """`config.glo`: GLO's latent table and the fitting of unseen images' latents."""
  init_sigma: float
  learning_rate: float
  test_steps: int
  test_learning_rate: float


@dataclasses.dataclass(frozen=True)
class PerformanceSettings:
  """`config.performance`: the speed switches, each computing the same function."""
  scan_chunk: int
  remat: bool
  cpu_ynn_fusions: bool
  shared_origin: bool
  conv_method: str
  factorised: bool
  fast_sine: bool
  steps_per_call: int


@dataclasses.dataclass(frozen=True)
class DataSettings:
  """`config.data`: where the images come from (gon_jax.data.load_split)."""
  source: str
  name: str
  dir: str
  image_size: int
  download: bool
  mirror: str
  cache: bool


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
  """The optimiser's keys of the config's top level (gon_jax.state.make_optimizer)."""
  learning_rate: float
  lr_schedule: str
  warmup_steps: int
  num_steps: int
  grad_clip_norm: float


@dataclasses.dataclass(frozen=True)
class EvalSettings:
  """How test images are evaluated (gon_jax.evaluate.make_evaluator): in batches of
  `batch_size` (config.eval_batch_size); a variational model's ELBO over `elbo_samples`
  samples of fixed keys drawn from `seed` (the config's)."""
  batch_size: int
  elbo_samples: int
  seed: int


@dataclasses.dataclass(frozen=True)
class Settings:
  """A validated config.

  Attributes:
    seed, batch_size: the config's (batch_size: global, over all devices).
    model_name: `config.model.name`, the registered family (gon_jax.models.MODELS).
    model: the rest of `config.model`, the family's options, read-only (its `build` takes
      them as keyword arguments).
    data, gon, classifier, glo, performance: the config's sections.
    optimizer: the optimiser's keys of the config's top level.
    evaluation: how test images are evaluated.
  """
  seed: int
  batch_size: int
  model_name: str
  model: Mapping[str, Any]
  data: DataSettings
  gon: GonSettings
  classifier: ClassifierSettings
  glo: GloSettings
  performance: PerformanceSettings
  optimizer: OptimizerSettings
  evaluation: EvalSettings


def model_options(options: Mapping[str, Any]) -> Mapping[str, Any]:
  """A family's options, read-only and hashable (lists as tuples)."""
  return flax.core.FrozenDict({key: tuple(value) if isinstance(value, list) else value
                               for key, value in options.items()})
