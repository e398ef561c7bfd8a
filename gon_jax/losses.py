"""Per-example losses of the variational models (negative ELBO, bits/dim)."""

import math

import jax
import jax.numpy as jnp

from gon_jax.core import check_same_shape, squared_error

LIKELIHOODS = ('bernoulli', 'gaussian')


def _per_example_sum(values: jax.Array) -> jax.Array:
  return jnp.sum(values.reshape(values.shape[0], -1), axis=1)


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
  return squared_error(mean, target) / (2 * sigma ** 2) + per_value * mean[0].size


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
