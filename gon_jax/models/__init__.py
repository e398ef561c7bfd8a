"""Decoders F: latent -> data, one family per file, registered by `config.model.name`.

Adding a decoder: a file holding its Flax module and a `ModelSpec`
(gon_jax.models.spec), and one line in MODELS (or `register(name, spec)` from
outside the package). Every decoder is called as `F(z, use_running_average)`:
the GON's inner pass at z0 always uses running averages for BatchNorm,
because all examples are identical at the origin and their batch variance is
zero.
"""

import flax.linen as nn

from gon_jax import objectives
from gon_jax.errors import ConfigError
from gon_jax.models import autoencoders, conv, siren, variational
from gon_jax.models.classifier import LatentClassifier
from gon_jax.models.spec import ModelSpec
from gon_jax.settings import Settings

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


def get_model(settings: Settings, axis_name: str | None = None) -> nn.Module:
  """The module `settings.model_name` names, built from its options, with the classifier head
  if `classifier.num_classes`.

  Args:
    settings: a validated config's settings (gon_jax.config.validate).
    axis_name: pmap axis for cross-device BatchNorm statistics, or None.

  Returns:
    A Flax module called as `module.apply(variables, z, use_running_average)`.
  """
  decoder = get_spec(settings.model_name).build(
      image_size=settings.data.image_size, performance=settings.performance,
      axis_name=axis_name, **settings.model)
  num_classes = settings.classifier.num_classes
  return LatentClassifier(decoder, num_classes) if num_classes else decoder


def make_objective(settings: Settings, axis_name: str | None = None) -> objectives.Objective:
  """The objective (gon_jax.objectives) of the model `settings.model_name` names, around its
  module (`get_model`), with the settings it reads unpacked."""
  spec = get_spec(settings.model_name)
  options = settings.model
  elbo = (objectives.ElboSettings(**{key: options[key] for key in variational.ELBO_OPTIONS})
          if spec.variational else None)
  return spec.objective(
      model=get_model(settings, axis_name), spec=spec, latent_dim=options['latent_dim'],
      image_size=settings.data.image_size, channels=options['channels'],
      batch_size=settings.batch_size, official_average=spec.official_average(settings),
      gon=settings.gon, classifier=settings.classifier, glo=settings.glo,
      performance=settings.performance, elbo=elbo)


__all__ = ['MODELS', 'ModelSpec', 'get_model', 'get_spec', 'make_objective', 'register']
