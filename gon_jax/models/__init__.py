"""Decoders F: latent -> data, one family per file, registered by `config.model.name`.

Adding a decoder: a file holding its Flax module and a `ModelSpec`
(gon_jax.models.spec), and one line in MODELS (or `register(name, spec)` from
outside the package). Every decoder is called as `F(z, use_running_average)`:
the GON's inner pass at z0 always uses running averages for BatchNorm,
because all examples are identical at the origin and their batch variance is
zero.
"""

import flax.linen as nn
import ml_collections

from gon_jax import objectives
from gon_jax.errors import ConfigError
from gon_jax.models import autoencoders, conv, siren, variational
from gon_jax.models.classifier import LatentClassifier
from gon_jax.models.spec import ModelSpec

MODELS: dict[str, ModelSpec] = {
    'conv': conv.CONV,
    'siren': siren.SIREN,
    'vgon': variational.VGON,
    'vae': variational.VAE_SPEC,
    'ae': autoencoders.AE,
    'tied_ae': autoencoders.TIED_AE,
    'glo': conv.GLO,
}


def register(name: str, spec: ModelSpec) -> None:
  """Makes `config.model.name = name` build and train with `spec`."""
  MODELS[name] = spec


def get_spec(name: str) -> ModelSpec:
  """The spec registered as `name`; ConfigError (listing the valid names) if none is."""
  if name not in MODELS:
    raise ConfigError(f'unknown model {name!r}; valid: {", ".join(MODELS)}')
  return MODELS[name]


def get_model(config: ml_collections.ConfigDict, axis_name: str | None = None) -> nn.Module:
  """The module `config.model` names, with the classifier head if `classifier.num_classes`.

  Args:
    config: full experiment config, validated (gon_jax.config.validate).
    axis_name: pmap axis for cross-device BatchNorm statistics, or None.

  Returns:
    A Flax module called as `module.apply(variables, z, use_running_average)`.
  """
  decoder = get_spec(config.model.name).build(config, axis_name)
  num_classes = config.classifier.num_classes
  return LatentClassifier(decoder, num_classes) if num_classes else decoder


def make_objective(config: ml_collections.ConfigDict,
                   axis_name: str | None = None) -> objectives.Objective:
  """The objective (gon_jax.objectives) of the model `config.model` names, around its module."""
  spec = get_spec(config.model.name)
  return spec.objective(get_model(config, axis_name), ml_collections.FrozenConfigDict(config),
                        spec)


__all__ = ['MODELS', 'ModelSpec', 'get_model', 'get_spec', 'make_objective', 'register']
