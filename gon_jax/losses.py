"""Every per-example loss of the project, the inner loss's observation mask and scale.

A per-example loss maps `(decoder outputs, target)` to `[batch]`: summed over
pixels, never averaged over the batch, so that an example's latent depends on
that example only (gon_jax.core). An empty batch has an empty loss, `[0]`
(gon_jax.core.origin_latent and the objectives refuse empty batches).
"""

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from gon_jax.errors import ConfigError

LIKELIHOODS = ('bernoulli', 'gaussian')
INNER_REDUCTIONS = ('sum', 'mean', 'official')
# (outputs, target) -> loss of each example, shape [batch].
PerExampleLoss = Callable[[Any, jax.Array], jax.Array]


def squared_error(prediction: jax.Array, target: jax.Array) -> jax.Array:
  """Summed squared error of each example.

  Args:
    prediction: `[batch, ...]`, e.g. `[batch, height, width, channels]`.
    target: same shape as `prediction`.

  Returns:
    `[batch]`: sum over all non-batch axes of `(prediction - target)**2`.

  Raises:
    ValueError: the shapes differ (broadcasting would compare every
      prediction with every target) or either is not floating point (integer
      images would wrap around, or be on a 0-255 scale).
  """
  check_same_shape(prediction, target, 'squared_error')
  for name, value in (('prediction', prediction), ('target', target)):
    check_floating(value, f'squared_error: {name}')
  return _per_example_sum(jnp.square(prediction - target))


def check_same_shape(prediction: jax.Array, target: jax.Array, where: str) -> None:
  """Raises ValueError unless `prediction` is one array of `target`'s shape (at trace time)."""
  if isinstance(prediction, (tuple, list, dict)):
    raise ValueError(f'{where}: prediction is a {type(prediction).__name__} of '
                     f'{len(prediction)} values, not one array like target '
                     f'{list(jnp.shape(target))}; a decoder with several outputs (a variational '
                     "one's images, mu, logvar) needs a loss that takes them, e.g. "
                     'gon_jax.losses.negative_elbo')
  if jnp.shape(prediction) != jnp.shape(target):
    raise ValueError(f'{where}: prediction {list(jnp.shape(prediction))} and target '
                     f'{list(jnp.shape(target))} differ in shape; make the decoder return the '
                     "target's shape (e.g. add the channel axis)")


IMAGES_HINT = 'convert it first, e.g. images.astype(np.float32) / 255 for [0, 1] pixels'


def check_floating(value: jax.Array, what: str, hint: str = IMAGES_HINT) -> None:
  """Raises ValueError (`what has dtype ..., expected floating point; hint`) for a
  non-floating `value`."""
  dtype = jnp.result_type(value)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(f'{what} has dtype {dtype}, expected floating point; {hint}')


def _per_example_sum(values: jax.Array) -> jax.Array:
  # The pixels' number, not -1: a reshape cannot infer -1 from an empty batch.
  return jnp.sum(values.reshape(values.shape[0], math.prod(values.shape[1:])), axis=1)


def binary_cross_entropy(probabilities: jax.Array, target: jax.Array) -> jax.Array:
  """`-log p(target | probabilities)` of a Bernoulli per pixel value, summed per example.

  Targets in [0, 1] (binarised or not, as the official code); logs are
  clamped at -100 like PyTorch's `binary_cross_entropy`.

  Returns:
    `[batch]` nats.
  """
  check_same_shape(probabilities, target, 'binary_cross_entropy')
  log_p = jnp.maximum(jnp.log(probabilities), -100.0)
  log_not_p = jnp.maximum(jnp.log1p(-probabilities), -100.0)
  return -_per_example_sum(target * log_p + (1.0 - target) * log_not_p)


def gaussian_nll(mean: jax.Array, target: jax.Array, sigma: float) -> jax.Array:
  """`-log N(target; mean, sigma^2)` per pixel value, summed per example: `[batch]` nats."""
  per_value = 0.5 * math.log(2 * math.pi * sigma ** 2)
  return squared_error(mean, target) / (2 * sigma ** 2) + per_value * math.prod(mean.shape[1:])


def kl_to_standard_normal(mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """`KL(N(mu, exp(logvar)) || N(0, I))` per example, closed form: `[batch]` nats."""
  return -0.5 * jnp.sum(1.0 + logvar - jnp.square(mu) - jnp.exp(logvar), axis=-1)


def negative_elbo(outputs: tuple[jax.Array, jax.Array, jax.Array], target: jax.Array,
                  likelihood: str = 'bernoulli', kl_weight: float | jax.Array = 1.0,
                  sigma: float = 1.0) -> jax.Array:
  """`-log p(x | z) + kl_weight * KL(q(z | x) || p(z))` per example, `[batch]` nats.

  Args:
    outputs: `(decoded [batch, height, width, channels], mu, logvar)` of a
      variational decoder or a VAE; decoded values are Bernoulli
      probabilities or Gaussian means.
    target: images `[batch, height, width, channels]` in [0, 1].
    likelihood: 'bernoulli' (binary cross-entropy) or 'gaussian' (fixed sigma).
    kl_weight: beta of the KL term (1 for the ELBO itself).
    sigma: standard deviation of the Gaussian likelihood.
  """
  decoded, mu, logvar = outputs
  if likelihood == 'bernoulli':
    nll = binary_cross_entropy(decoded, target)
  else:
    nll = gaussian_nll(decoded, target, sigma)
  return nll + kl_weight * kl_to_standard_normal(mu, logvar)


def bits_per_dim(nats: jax.Array, num_values: int) -> jax.Array:
  """Negative log-likelihood (bound) in nats per example -> bits per pixel value."""
  return nats / (num_values * math.log(2.0))


def data_loss(variational: bool, likelihood: str = 'bernoulli', kl_weight: float | jax.Array = 1.0,
              sigma: float = 1.0) -> PerExampleLoss:
  """The data-fitting loss of a model: summed squared error, or for variational
  models the negative ELBO (`likelihood`, `kl_weight` on the KL term, `sigma`
  of a Gaussian likelihood). The GON's inner and outer losses are both this one."""
  if variational:
    return lambda outputs, target: negative_elbo(outputs, target, likelihood, kl_weight, sigma)
  return squared_error


def masked(loss: PerExampleLoss, seen: jax.Array) -> PerExampleLoss:
  """`loss` of the observed values only: predictions and targets times the 0/1 mask `seen`."""
  return lambda outputs, target: loss(seen * outputs, seen * target)


def inner_loss_scale(reduction: str, batch_size: int, num_pixels: int,
                     official_average: int) -> float:
  """Multiplier of the per-example summed inner loss, from `gon.inner_reduction`.

  'sum' sums over pixels, 'mean' averages over them; both keep latents
  independent of the batch. 'official' reproduces the official scripts, which
  average over the batch (latents shrink as 1 / batch_size) and over
  `official_average` values of each example besides (a model spec's: GON.py
  its pixels, Implicit-GON.py its channels, Variational-GON.py nothing, as its
  ELBO sums over pixels). The training batch size fixes the scale, so that
  evaluation encodes as training did whatever its batch size.
  """
  if reduction not in INNER_REDUCTIONS:
    raise ConfigError(f'unknown gon.inner_reduction {reduction!r}; '
                      f'valid: {", ".join(INNER_REDUCTIONS)}')
  if reduction == 'official':
    return 1.0 / (batch_size * official_average)
  return {'sum': 1.0, 'mean': 1.0 / num_pixels}[reduction]


def observation_mask(observe: str, size: int) -> np.ndarray | None:
  """Which pixels the inner loss sees, from `gon.observe`; None for all of them.

  'all'; 'lowres:K': the pixels of every K-th row and column (a K-times
  smaller image, for super-resolution from low-resolution inputs); 'hole:S':
  all but a centred SxS square (inpainting).

  Returns:
    `[size, size, 1]` float32 of 0 and 1, or None.
  """
  kind, _, arg = observe.partition(':')
  if kind == 'all' and not arg:
    return None
  if kind in ('lowres', 'hole') and arg.isdigit() and 0 < int(arg) < size:
    k, mask = int(arg), np.zeros((size, size, 1), np.float32)
    if kind == 'lowres':
      mask[::k, ::k] = 1.0
    else:
      mask[:] = 1.0
      start = (size - k) // 2
      mask[start:start + k, start:start + k] = 0.0
    return mask
  raise ConfigError(f'unknown gon.observe {observe!r}; valid: all, lowres:K, hole:S '
                    f'(0 < K, S < {size})')
