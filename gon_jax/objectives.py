"""Each model family's objective: where a batch's latents come from, and the loss.

Three families, one interface (`Objective`):

* `GON`: latents are gradient steps from the origin (gon_jax.core), for the
  convolutional, implicit and variational GONs (the classifier head, Eq. 13,
  adds its cross-entropy to any of them);
* `Encoded`: an encoder gives the latents (the autoencoder and VAE baselines);
* `GLO`: a table holds a latent per training image, learnt with the decoder;
  unseen images get theirs by gradient descent.

The train step calls `loss` and the table's `update` and never asks which
family it runs; evaluation calls `encode` and `reconstruct`.

Implicit decoders can also fit the losses on subsets of the coordinates
(Monte Carlo estimates of the integral over the image, `gon.inner_points`,
`gon.outer_points`), and the GON's inner loss can observe only part of the
image (`gon.observe`: a low-resolution subset of pixels, or the image with a
hole) while the outer loss sees all of it (the paper's section 3.5).
"""

import abc
import dataclasses
import inspect
import numbers
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from gon_jax import losses
from gon_jax.coordinates import grid
from gon_jax.core import origin, origin_latent
from gon_jax.glo import NO_TABLE, LatentTable, fit_latents, lazy_adam_table
from gon_jax.passes import Draws, Reconstruction, check_batch, check_images, gather, sample_points
from gon_jax.settings import ClassifierSettings, GloSettings, GonSettings, PerformanceSettings


# The inputs of a pass a family's `Objective.latents` may take (by keyword).
LATENT_INPUTS = ('z0', 'draws', 'train', 'rows', 'loss')


def model_variables(params: dict, batch_stats: dict) -> dict:
  """Flax variables from parameters and (possibly empty) BatchNorm statistics."""
  return {'params': params, 'batch_stats': batch_stats} if batch_stats else {'params': params}


def _declared_axis_names(module: nn.Module) -> set[str | None]:
  """The `axis_name` attributes of `module` and the modules it holds as attributes (a
  classifier's or variational decoder's inner decoder): the axes their BatchNorm averages
  statistics over (make_objective's `axis_name`). Empty for a module that declares none."""
  names = set()
  for field in dataclasses.fields(module):
    if field.name in ('parent', 'name'):
      continue
    value = getattr(module, field.name, None)
    if field.name == 'axis_name':
      names.add(value)
    elif isinstance(value, nn.Module):
      names |= _declared_axis_names(value)
  return names


@dataclasses.dataclass(frozen=True)
class ElboSettings:
  """A variational model's ELBO (its `model` options): its likelihood ('bernoulli', or
  'gaussian' of fixed gaussian_sigma) and the KL term's weight (beta), warmed up linearly over
  kl_warmup_steps."""
  likelihood: str
  gaussian_sigma: float
  kl_weight: float
  kl_warmup_steps: int


@dataclasses.dataclass(frozen=True)
class Objective(abc.ABC):
  """A model family's latents and losses for one config (see the module docstring); made by
  gon_jax.models.make_objective, which unpacks the settings it reads.

  Attributes:
    model: the Flax module (gon_jax.models.get_model).
    spec: the model's gon_jax.models.ModelSpec.
    latent_dim, image_size, channels: the latents' and the images' sizes.
    batch_size: the global batch (`gon.inner_reduction = 'official'` averages over it).
    official_average: the values of an example the official inner loss also averages over
      (`ModelSpec.official_average`).
    gon, classifier, glo, performance: the config's sections (gon_jax.settings).
    elbo: a variational model's ELBO; None for the others.
  """
  model: nn.Module
  spec: Any
  latent_dim: int
  image_size: int
  channels: int
  batch_size: int
  official_average: int
  gon: GonSettings
  classifier: ClassifierSettings
  glo: GloSettings
  performance: PerformanceSettings
  elbo: ElboSettings | None = None

  # What a family overrides.

  @abc.abstractmethod
  def latents(self, variables: dict, images: jax.Array,
              **inputs: Any) -> jax.Array | tuple[jax.Array, dict]:
    """Latents `[batch, latent_dim]` of images `[batch, height, width, channels]`.

    A family declares, as keyword-only parameters, the inputs of the pass it
    uses, of `LATENT_INPUTS`; `reconstruct` passes those and no others:
    `z0` (starting latents `[batch, latent_dim]`), `draws`
    (`Draws`), `train` (a training pass), `rows` (GLO in training: the
    batch's rows of the latent table, else None), `loss` (the per-example
    data loss).

    Returns the latents; or, where the pass itself updates BatchNorm
    statistics (an encoder in training), `(latents, batch_stats)`: the whole
    updated collection, from which the outer pass then updates the decoder's
    (so each module's statistics move once a step).
    """

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    parameters = inspect.signature(cls.latents).parameters.values()
    names = tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)
    unknown = sorted(set(names) - set(LATENT_INPUTS))
    if unknown:
      raise TypeError(f'{cls.__name__}.latents takes {", ".join(unknown)}; a family\'s latents '
                      f'takes keyword-only inputs of {", ".join(LATENT_INPUTS)}')
    cls._latent_inputs = names

  @property
  def latent_table(self) -> LatentTable:
    """Per-example latents learnt in training (GLO); the train state's `latents`."""
    return NO_TABLE

  def init_variables(self, key: jax.Array) -> dict:
    """Initial `{'params': ..., ['batch_stats': ...]}` of the module."""
    z = jnp.zeros((1, self.latent_dim), jnp.float32)
    if self.classifier.num_classes:
      return self.model.init(key, z, method=lambda m, z: (m(z, False), m.classify(z)))
    return self.model.init(key, z, use_running_average=False)

  # What every family shares.

  @property
  def variational(self) -> bool:
    """Outputs are `(images, mu, logvar)`, scored by the negative ELBO."""
    return self.spec.variational

  def check_axis_name(self, axis_name: str | None, batch_stats: dict) -> None:
    """Raises ValueError (at trace time) if the module's BatchNorm averages batch statistics
    over another axis than `axis_name`, the train step's pmap axis (None under jit).

    With BatchNorm statistics (`batch_stats` not empty), an objective made without the
    step's axis keeps each device's statistics (its parameters and statistics drift from a
    one-device run without an error); one made with an axis for a step without one fails
    under jit on an unbound axis, and under pmap averages statistics but not gradients.
    Without BatchNorm, or for a module that declares no `axis_name` (a SIREN drops it),
    there is nothing to compare.
    """
    declared = _declared_axis_names(self.model)
    if not batch_stats or not declared or declared == {axis_name}:
      return
    made = ' and '.join(repr(name) for name in sorted(declared, key=str))
    if axis_name is None:
      raise ValueError(f'train_step(axis_name=None) with an objective made with '
                       f'axis_name={made}: its BatchNorm averages statistics over that axis, '
                       f'the step no gradients; under jax.pmap(..., axis_name={made}) give '
                       f'train_step axis_name={made}, under jit make the objective with '
                       f'make_objective(settings)')
    harm = ("would keep each device's batch statistics and drift from a one-device run"
            if declared == {None} else 'averages statistics over another axis')
    raise ValueError(f'train_step(axis_name={axis_name!r}) with an objective made with '
                     f'axis_name={made}: its BatchNorm {harm}; make the objective with '
                     f'make_objective(settings, axis_name={axis_name!r})')

  def images(self, outputs: Any) -> jax.Array:
    """The images in the decoder's outputs."""
    return outputs[0] if self.variational else outputs

  def data_loss(self, kl_weight: float | jax.Array = 1.0) -> losses.PerExampleLoss:
    """The per-example loss `(outputs, target) -> [batch]` (gon_jax.losses.data_loss)."""
    if not self.variational:
      return losses.data_loss(False)
    return losses.data_loss(True, self.elbo.likelihood, kl_weight, self.elbo.gaussian_sigma)

  def kl_weight(self, step: jax.Array) -> jax.Array:
    """`elbo.kl_weight`, warmed up linearly over `elbo.kl_warmup_steps` (0: none); 1 for
    models without a KL term."""
    elbo = self.elbo
    if not self.variational:
      return jnp.float32(1.0)
    ramp = (jnp.minimum(1.0, (step + 1) / elbo.kl_warmup_steps) if elbo.kl_warmup_steps
            else 1.0)
    return jnp.float32(elbo.kl_weight) * ramp

  def draw(self, keys: jax.Array, num_pixels: int) -> Draws:
    """A training pass's random choices from one PRNG key per example `[batch]`."""
    gon = self.gon
    keys = jax.vmap(lambda key: jax.random.split(key, 4))(keys)
    noise = lambda k: jax.vmap(lambda key: jax.random.normal(key, (self.latent_dim,)))(k)
    points = lambda k, n: sample_points(k, num_pixels, n) if n else None
    return Draws(inner_points=points(keys[:, 0], gon.inner_points),
                 outer_points=points(keys[:, 1], gon.outer_points),
                 inner_noise=noise(keys[:, 2]) if self.variational else None,
                 outer_noise=noise(keys[:, 3]) if self.variational else None)

  def decode(self, variables: dict, z: jax.Array, points: jax.Array | None = None,
             noise: jax.Array | None = None, *, use_running_average: bool = True,
             mutable: Any = False) -> Any:
    """The decoder's outputs for latents `z`, at pixel indices `points` `[batch, n]`
    (implicit models; None: every pixel) with the stochastic layer's `noise`
    (variational models; None: the mean)."""
    inputs = {}
    if points is not None:
      inputs['coordinates'] = jnp.asarray(grid(self.image_size))[points]
    if noise is not None:
      inputs['noise'] = noise
    apply = lambda variables, z, inputs: self.model.apply(variables, z, use_running_average,
                                                          mutable=mutable, **inputs)
    if self.performance.remat:  # keep only the decoder's inputs; recompute the rest
      apply = jax.checkpoint(apply)
    return apply(variables, z, inputs)

  def reconstruct(self, variables: dict, images: jax.Array, z0: jax.Array | None = None, *,
                  draws: Draws = Draws(), train: bool = False, rows: jax.Array | None = None,
                  kl_weight: float | jax.Array = 1.0) -> Reconstruction:
    """Encodes images (the family's way), decodes the latents, scores them.

    The outer pass (and an encoder) uses BatchNorm's batch statistics in
    training only.

    Args:
      variables: `{'params': ..., ['batch_stats': ...]}`.
      images: `[batch, height, width, channels]` in [0, 1].
      z0: starting latents `[batch, latent_dim]`: the origin (None, the
        default), except in training with `gon.z0_sigma > 0`.
      draws: random choices (see `Draws`); the default decodes every pixel and
        the posterior mean. A loss on a subset of pixels is scaled by pixels /
        points, so that it keeps the scale of the whole image's.
      train: a training pass (updates BatchNorm statistics).
      rows: GLO in training: the batch's rows of the latent table.
      kl_weight: weight of the KL term of variational models.

    Raises:
      ValueError (at trace time): `images` not `[batch, height, width,
      channels]` with at least one image; `z0` not `[batch, model.latent_dim]`.
    """
    check_images(images)
    num_pixels = images.shape[1] * images.shape[2]
    latent_dim = self.latent_dim
    if z0 is None:
      z0 = origin(images.shape[0], latent_dim)
    if jnp.shape(z0) != (images.shape[0], latent_dim):
      raise ValueError(f'z0 has shape {list(jnp.shape(z0))}, images {list(images.shape)}: give '
                       f'one start per image, [{images.shape[0]}, {latent_dim}] (latent_dim '
                       f'{latent_dim}), e.g. origin({images.shape[0]}, {latent_dim})')
    given = {'z0': z0, 'draws': draws, 'train': train, 'rows': rows,
             'loss': self.data_loss(kl_weight)}
    latents = self.latents(variables, images, **{name: given[name]
                                                 for name in self._latent_inputs})
    if isinstance(latents, tuple):  # the latent pass updated BatchNorm statistics
      latents, encoded_stats = latents
      variables = {**variables, 'batch_stats': encoded_stats}
    target = gather(images, draws.outer_points)
    batch_stats = variables.get('batch_stats', {})
    if train and batch_stats:
      outputs, updates = self.decode(variables, latents, draws.outer_points, draws.outer_noise,
                                     use_running_average=False, mutable=('batch_stats',))
      batch_stats = updates['batch_stats']
    else:
      outputs = self.decode(variables, latents, draws.outer_points, draws.outer_noise)
    outer = given['loss'](outputs, target)
    if draws.outer_points is not None:
      outer = outer * (num_pixels / draws.outer_points.shape[1])
    return Reconstruction(outputs, latents, outer, batch_stats)

  def loss(self, params: dict, rows: jax.Array | None, batch: dict, keys: jax.Array, *,
           batch_stats: dict, step: jax.Array, mean_over: int
           ) -> tuple[jax.Array, tuple[dict, dict]]:
    """The training loss of a batch, to differentiate with respect to `params` and `rows`.

    Args:
      params: the module's parameters.
      rows: the batch's rows of the latent table (`latent_table.lookup`), or None.
      batch: `{'image': [batch, height, width, channels], 'label': [batch], ...}`.
      keys: one PRNG key per example `[batch]` (z0 and the draws).
      batch_stats: BatchNorm statistics ({} without BatchNorm).
      step: the train step (the KL warm-up).
      mean_over: the number of examples the loss is a mean over (the whole
        device batch, also when it comes in chunks).

    Returns:
      `(loss, (metrics, batch_stats))`: metrics 'reconstruction' (the outer
      loss per image: summed squared error, or the negative ELBO in nats),
      'loss', and with a classifier 'cross_entropy' and 'accuracy', as sums
      over the batch divided by `mean_over`.

    Raises:
      ValueError (at trace time): a batch `check_batch` refuses; with a
      classifier, no integer label per image; `mean_over` below 1.
    """
    check_batch(batch)
    if isinstance(mean_over, bool) or not isinstance(mean_over, numbers.Integral) or mean_over < 1:
      raise ValueError(f'mean_over must be a positive integer (the examples of the device '
                       f'batch), got {mean_over!r}')
    images = batch['image']
    keys = jax.vmap(lambda key: jax.random.split(key))(keys)
    z0 = origin(images.shape[0], self.latent_dim, self.gon.z0_sigma, keys[:, 0])
    draws = self.draw(keys[:, 1], images.shape[1] * images.shape[2])
    variables = model_variables(params, batch_stats)
    result = self.reconstruct(variables, images, z0, draws=draws, train=True, rows=rows,
                              kl_weight=self.kl_weight(step))
    metrics = {'reconstruction': jnp.sum(result.losses) / mean_over}
    loss = metrics['reconstruction']
    classifier = self.classifier
    if classifier.num_classes:
      labels = batch.get('label')
      if labels is None or not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise ValueError(f"a classifier's batch needs 'label', integers [{images.shape[0]}] "
                         f'(one class per image), got '
                         f'{"none" if labels is None else jnp.result_type(labels)}')
      logits = self.model.apply(variables, result.latents, method='classify')
      metrics['cross_entropy'] = jnp.sum(
          optax.softmax_cross_entropy_with_integer_labels(logits, labels)) / mean_over
      metrics['accuracy'] = jnp.sum(jnp.argmax(logits, -1) == labels) / mean_over
      loss = (classifier.reconstruction_weight * loss
              + classifier.classification_weight * metrics['cross_entropy'])
    metrics['loss'] = loss
    return loss, (metrics, result.batch_stats)

  def encode(self, variables: dict, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Evaluation: `(latents [batch, latent_dim], reconstructions like images)`, from z0 = 0,
    BatchNorm with running averages."""
    result = self.reconstruct(variables, images)
    return result.latents, self.images(result.outputs)


LEARNED_STEP_SIZES = ('none', 'scalar', 'per_dimension')


class GON(Objective):
  """Latents as gradient steps on the inner loss from z0 (gon_jax.core.origin_latent).

  The inner pass always normalises with BatchNorm's running averages: at z0
  every example is the same, so batch statistics would have zero variance
  and make an image's latent depend on its batch.

  The inner optimisation can be learnt with the decoder (functa's meta-SGD,
  gon-pytorch's learnable origin): `gon.learn_step_size` 'scalar' or
  'per_dimension' makes the step size a parameter (`params['gon']['step_size']`,
  `[]` or `[latent_dim]`, starting at `gon.step_size`), and `gon.learn_origin`
  adds a learnt start `params['gon']['origin']` `[latent_dim]` (starting at 0)
  to z0. The decoder module does not read `params['gon']`.
  """

  def init_variables(self, key):
    variables = super().init_variables(key)
    gon, latent_dim = self.gon, self.latent_dim
    learned = {}
    if gon.learn_step_size != 'none':
      shape = () if gon.learn_step_size == 'scalar' else (latent_dim,)
      learned['step_size'] = jnp.full(shape, gon.step_size, jnp.float32)
    if gon.learn_origin:
      learned['origin'] = jnp.zeros((latent_dim,), jnp.float32)
    if learned:
      variables = {**variables, 'params': {**variables['params'], 'gon': learned}}
    return variables

  def latents(self, variables, images, *, z0, draws, train, loss):
    gon, size = self.gon, self.image_size
    learned = variables['params'].get('gon', {})
    if 'origin' in learned:
      z0 = z0 + learned['origin']
    mask = losses.observation_mask(gon.observe, size)
    inner_loss = loss
    if mask is not None:
      seen = (mask[None] if draws.inner_points is None else
              mask.reshape(-1)[draws.inner_points][..., None])
      inner_loss = losses.masked(losses.squared_error, seen)
    scale = losses.inner_loss_scale(gon.inner_reduction, self.batch_size, size ** 2,
                                    self.official_average)
    if draws.inner_points is not None:  # a Monte Carlo estimate over the whole image
      scale *= images.shape[1] * images.shape[2] / draws.inner_points.shape[1]
    # Every example starts at the same z0 and decodes the same pixels: one
    # shared start, decoded once for the batch (performance.shared_origin).
    shared = (self.performance.shared_origin and not (train and gon.z0_sigma > 0)
              and draws.inner_points is None and draws.inner_noise is None)
    return origin_latent(
        lambda z: self.decode(variables, z, draws.inner_points, draws.inner_noise),
        gather(images, draws.inner_points), z0[0] if shared else z0, inner_loss,
        num_steps=gon.num_steps, step_size=learned.get('step_size', gon.step_size),
        loss_scale=scale,
        start_from_z0=gon.start_from_z0, detach=gon.detach)


class Encoded(Objective):
  """Latents from the module's encoder (`module.encode(images, use_running_average)`).

  With BatchNorm the encoder, like the decoder, normalises with batch
  statistics in training and updates its running averages (the paper's
  baselines in PyTorch's train mode); evaluation uses the running averages,
  so an image's latent does not depend on its batch.
  """

  def latents(self, variables, images, *, train):
    if train and 'batch_stats' in variables:
      latents, updates = self.model.apply(variables, images, False, method='encode',
                                          mutable=('batch_stats',))
      return latents, updates['batch_stats']
    return self.model.apply(variables, images, True, method='encode')

  def init_variables(self, key):
    z = jnp.zeros((1, self.latent_dim), jnp.float32)
    images = jnp.zeros((1, self.image_size, self.image_size, self.channels), jnp.float32)
    return self.model.init(key, z, images,
                           method=lambda m, z, x: (m(z, False), m.encode(x, False)))


class GLO(Objective):
  """Training latents from the latent table's rows; others fitted by `glo.test_steps`
  Adam steps from z0 on the frozen decoder."""

  @property
  def latent_table(self):
    return lazy_adam_table(self.latent_dim, self.glo.init_sigma, self.glo.learning_rate)

  def latents(self, variables, images, *, z0, rows, loss):
    if rows is not None:
      return rows
    return fit_latents(lambda z: self.decode(variables, z), images, z0, loss,
                       self.glo.test_steps, self.glo.test_learning_rate)
