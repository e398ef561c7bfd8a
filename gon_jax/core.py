"""The gradient-origin transform: latents as negative gradients at the origin.

A GON has no encoder. For data `x` and a decoder `F`, the latent is one
gradient-descent step on the data-fitting loss, taken from the origin
(Bond-Taylor & Willcocks, ICLR 2021, Eq. 8):

    z = z0 - grad_{z0} L_inner(x, F(z0)),   z0 = 0
    G = L_outer(x, F(z))

Training differentiates G with respect to the parameters of F *through* the
inner gradient, so `jax.grad` is nested inside the outer `jax.value_and_grad`.
The autoencoding GON (Eq. 8), the variational GON (Eq. 10), the implicit GON
(Eq. 12) and the GON classifier (Eq. 13) are all `origin_latent` with another
`decode` and other losses.

Example, the convolutional GON of Eq. 8::

    def loss_fn(params):
        decode = lambda z: model.apply({'params': params}, z)
        z = origin_latent(decode, images, jnp.zeros([batch, latent_dim]),
                          squared_error)
        return jnp.mean(squared_error(decode(z), images))

    loss, grads = jax.value_and_grad(loss_fn)(params)
"""

import numbers
from typing import Any, Callable

import jax
import jax.numpy as jnp

from gon_jax.losses import PerExampleLoss, check_floating, check_same_shape, squared_error

Array = jax.Array
Decoder = Callable[[Array], Array]


def _check_latent_inputs(target: Array, z0: Array, num_steps: int) -> int:
  """Shape and dtype errors of `origin_latent`'s inputs, raised at trace time; returns
  `num_steps` as a Python int (numpy's integers are integers too)."""
  if (isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral)
      or num_steps < 1):
    raise ValueError(f'num_steps must be a positive integer (gradient steps from z0), '
                     f'got {num_steps!r}')
  if jnp.ndim(z0) not in (1, 2):
    raise ValueError(f'z0 must be [batch, latent_dim] or [latent_dim], got shape '
                     f'{list(jnp.shape(z0))}')
  if jnp.ndim(target) >= 1 and jnp.shape(target)[0] == 0:
    raise ValueError(f'target has no examples (shape {list(jnp.shape(target))}): origin_latent '
                     'needs a batch of at least one example')
  if jnp.ndim(target) < 1 or (jnp.ndim(z0) == 2 and jnp.shape(target)[0] != jnp.shape(z0)[0]):
    raise ValueError(f'z0 has {jnp.shape(z0)[0]} rows but target has shape '
                     f'{list(jnp.shape(target))}: give one starting latent per example, '
                     f'e.g. origin({jnp.shape(target)[0] if jnp.ndim(target) else "batch"}, '
                     f'{jnp.shape(z0)[-1]})')
  check_floating(z0, 'z0', hint='make it with origin(batch, latent_dim), or cast it, e.g. '
                 'z0.astype(jnp.float32)')
  check_floating(target, 'target')
  return int(num_steps)


def _check_outputs(outputs: Any, target: Array) -> None:
  """Raises ValueError unless `decode`'s outputs (the first of a tuple: a variational
  decoder's images, mu, logvar) are shaped like `target`, whatever the inner loss does
  with them: a loss that broadcasts would give wrong latents without an error."""
  predicted = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
  check_same_shape(predicted, target, 'origin_latent: decode(z)')


def origin_latent(
    decode: Decoder,
    target: Array,
    z0: Array,
    inner_loss: PerExampleLoss = squared_error,
    *,
    num_steps: int = 1,
    step_size: float = 1.0,
    loss_scale: float = 1.0,
    start_from_z0: bool = True,
    detach: bool = False,
) -> Array:
  """Latents of `target` as gradient steps on the inner loss from `z0`.

  `z_{k+1} = z_k - step_size * grad_z [loss_scale * L_inner(target, decode(z_k))]`
  for `num_steps` steps from `z_0 = z0`. The per-example losses are summed, not
  averaged: example i's latent then depends on example i only, whatever the
  batch size or the number of devices (as long as `decode` treats examples
  independently, e.g. BatchNorm using running averages).

  Args:
    decode: maps latents `[batch, latent_dim]` to the decoder's outputs,
      usually predictions shaped like `target` (a variational decoder also
      returns mu and log-variance); closes over the decoder's parameters.
    target: the data, `[batch, ...]`.
    z0: starting latents `[batch, latent_dim]`: zeros (the paper) or samples of
      N(0, sigma^2) (App. C); or one start `[latent_dim]` shared by every
      example (e.g. the origin), when `decode` maps each row on its own: the
      same latents, its first step decoding once for the whole batch
      (_gradient_at_shared_z0).
    inner_loss: per-example data-fitting loss `(outputs, target) -> [batch]`.
    num_steps: number of gradient steps (Fig. 2b).
    step_size: multiplier of each gradient: a scalar, or `[latent_dim]` (one
      per latent dimension, meta-SGD); may be a learnt parameter.
    loss_scale: multiplier of the inner loss. 1.0 sums over pixels; the
      official GON.py averages over batch and pixels, i.e. `1 / (batch * pixels)`
      (gon_jax.losses.inner_loss_scale).
    start_from_z0: `z = z0 - grad` if True, else `z = -grad` for the first step
      (App. C compares both; identical when z0 = 0).
    detach: treat the latent as a constant in the outer gradient, so the
      decoder is never trained to make its own gradient a good encoding (the
      detached baseline of Fig. 2b).
  Returns:
    Latents `[batch, latent_dim]` of `z0`'s dtype, differentiable with
    respect to whatever `decode` closes over (unless `detach`).

  Raises:
    ValueError, when tracing (free at run time): an empty batch (`target` of
    0 examples: no latent to compute, and an empty batch in training is
    always a mistake); `num_steps` not an integer
    of at least 1; `z0` not `[batch, latent_dim]` with one row per example of
    `target`; `z0` or `target` not floating point; `decode`'s outputs (or
    the first of a tuple of them) shaped unlike `target`, whatever
    `inner_loss` is; `inner_loss` not returning `[batch]`; a decoder's
    failure on a shared start `[latent_dim]`, with what that shape means.
    A NaN in `target` is no error: the latents of its examples are NaN.
    To catch it, run the function under
    `jax.experimental.checkify.checkify(..., errors=checkify.nan_checks)`
    (docs/design.md, "Errors inside jit").
  """
  num_steps = _check_latent_inputs(target, z0, num_steps)
  shared = jnp.ndim(z0) == 1
  z = jnp.broadcast_to(z0, (jnp.shape(target)[0], z0.shape[0])) if shared else z0
  for step in range(num_steps):
    if step == 0 and shared:
      gradient = _gradient_at_shared_z0(decode, target, z0, inner_loss, loss_scale)
    else:
      gradient = _inner_gradient(decode, target, z, inner_loss, loss_scale)
    z = (z if step > 0 or start_from_z0 else 0.0) - step_size * gradient
  return jax.lax.stop_gradient(z) if detach else z


def _inner_gradient(decode: Decoder, target: Array, z: Array, inner_loss: PerExampleLoss,
                    loss_scale: float) -> Array:
  """`grad_z [loss_scale * sum_i L_inner(target_i, decode(z)_i)]` at latents z `[batch,
  latent_dim]`, decode's outputs and the loss's shape checked (at trace time)."""

  def summed_inner_loss(z: Array) -> Array:
    outputs = decode(z)
    _check_outputs(outputs, target)
    return loss_scale * jnp.sum(_per_example(inner_loss, outputs, target))

  return jax.grad(summed_inner_loss)(z)


def _gradient_at_shared_z0(decode: Decoder, target: Array, z0: Array,
                           inner_loss: PerExampleLoss, loss_scale: float) -> Array:
  """`grad_z [loss_scale * sum_i L_inner(target_i, decode(z)_i)]` at every row `z = z0`,
  one start `[latent_dim]`: `[batch, latent_dim]`, as `_inner_gradient` at `[batch,
  latent_dim]` copies of z0, without a batch of identical forward passes (and their share of
  the second-order backward pass): one forward pass, and a backward pass per example."""
  try:
    outputs, decode_vjp = jax.vjp(decode, z0[None])
  except Exception as err:  # pylint: disable=broad-except  # re-raised, saying what z0 meant
    first_line = (str(err).strip().splitlines() or [''])[0][:200]
    raise ValueError(
        f'decode failed on z0 of shape [{z0.shape[0]}] ({type(err).__name__}: {first_line}); '
        f'a 1-D z0 is one start [latent_dim] shared by every example: for one start per '
        f'example give [batch, latent_dim], e.g. origin({target.shape[0]}, latent_dim)'
    ) from err
  batch = target.shape[0]
  outputs = jax.tree.map(lambda o: jnp.broadcast_to(o, (batch, *o.shape[1:])), outputs)
  _check_outputs(outputs, target)
  output_grads = jax.grad(
      lambda o: loss_scale * jnp.sum(_per_example(inner_loss, o, target)))(outputs)
  # Example i's gradient is the backward pass of the one forward pass, fed its own error.
  per_example = lambda g: decode_vjp(jax.tree.map(lambda a: a[None], g))[0][0]
  return jax.vmap(per_example)(output_grads)


def _per_example(inner_loss: PerExampleLoss, outputs, target: Array) -> Array:
  """`inner_loss(outputs, target)`, checked to be one loss per example (at trace time)."""
  losses = inner_loss(outputs, target)
  if jnp.shape(losses) != jnp.shape(target)[:1]:
    raise ValueError(f'inner_loss must return one loss per example, shape '
                     f'[{jnp.shape(target)[0]}], got {list(jnp.shape(losses))}')
  return losses


def origin(batch_size: int, latent_dim: int, sigma: float = 0.0,
           keys: Array | None = None, dtype=None) -> Array:
  """Starting latents z0: the origin, or N(0, sigma^2) samples (App. C).

  Args:
    batch_size: number of examples, at least 1.
    latent_dim: size of each latent, at least 1.
    sigma: standard deviation, 0 or more; 0 gives the origin.
    keys: one PRNG key per example, `[batch_size]` (`jax.random.split(key,
      batch_size)`; legacy uint32 keys `[batch_size, 2]` too), needed when
      `sigma > 0`; per-example keys keep an example's z0 independent of its batch.
    dtype: floating dtype of z0; by default JAX's default float (float32, or
      float64 with `jax_enable_x64`), as `jnp.zeros` gives.

  Returns:
    `[batch_size, latent_dim]` of `dtype`.

  Raises:
    ValueError: `batch_size` or `latent_dim` not a positive integer, `sigma`
      negative, or (for `sigma > 0`) `keys` that are not one PRNG key per
      example (e.g. integer seeds).
  """
  for name, size in (('batch_size', batch_size), ('latent_dim', latent_dim)):
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
      raise ValueError(f'origin: {name} must be a positive integer, got {size!r}')
  if not sigma >= 0.0:  # also NaN
    raise ValueError(f'origin: sigma must be 0 (the origin) or a positive standard deviation, '
                     f'got {sigma!r}')
  dtype = jnp.dtype(float) if dtype is None else dtype
  dtype = jax.dtypes.canonicalize_dtype(dtype)
  if sigma == 0.0:
    return jnp.zeros((batch_size, latent_dim), dtype)
  keys = _example_keys(keys, batch_size, sigma)
  return sigma * jax.vmap(lambda key: jax.random.normal(key, (latent_dim,), dtype))(keys)


def _example_keys(keys: Array | None, batch_size: int, sigma: float) -> Array:
  """`keys` as typed PRNG keys `[batch_size]`, or a ValueError naming what they are instead
  (legacy uint32 keys `[batch_size, 2]` are wrapped: the same draws)."""
  need = (f'origin with sigma {sigma} needs one PRNG key per example, [{batch_size}] keys, '
          f'e.g. jax.random.split(jax.random.key(seed), {batch_size})')
  dtype = getattr(keys, 'dtype', None)
  if keys is None or dtype is None:
    raise ValueError(f'{need}; got {keys!r:.40}')
  if not jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
    try:  # raw key data, as jax.random.PRNGKey makes it
      keys = jax.random.wrap_key_data(keys)
    except (TypeError, ValueError):
      raise ValueError(f'{need}; got {dtype} {list(jnp.shape(keys))}, not keys') from None
  if jnp.shape(keys) != (batch_size,):
    raise ValueError(f'{need}; got {list(jnp.shape(keys))} keys')
  return keys
