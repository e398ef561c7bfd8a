"""GLO (Bojanowski et al., 2018), the multi-step baseline of Table 1: its latent
table (an optax-style init/update pair) and the fitting of test latents.

Every training image owns a latent, a row of a table optimised jointly with
the decoder; a batch's loss moves only its rows, each with its own Adam
moments and step count ("lazy" Adam), so rows not in the batch stay exactly
as they were. A test image's latent is fitted by gradient descent on the
frozen decoder. As in the paper's comparison, latents are not projected onto
a sphere.
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gon_jax.errors import ConfigError
from gon_jax.losses import PerExampleLoss

_B1, _B2, _EPS = 0.9, 0.999, 1e-8  # Adam's defaults


class LatentTable(NamedTuple):
  """Per-example latents learnt with the decoder, as an optax-style pair of
  pure functions over a state pytree (the train state's `latents`).

  init(key, num_examples) -> state.
  lookup(state, index [n]) -> the rows `[n, latent_dim]` of a batch, or None
    (no table: the latents come from elsewhere).
  update(state, index [n], row_grads [n, latent_dim], axis_name, apply) -> state:
    one optimiser step on the rows (over a pmap axis, every device's rows), or
    none where the scalar bool `apply` is False (the train step's finite guard).
  """
  init: Callable[[jax.Array, int], dict]
  lookup: Callable[[dict, jax.Array], jax.Array | None]
  update: Callable[[dict, jax.Array, jax.Array | None, str | None, jax.Array], dict]


NO_TABLE = LatentTable(init=lambda key, num_examples: {},
                       lookup=lambda state, index: None,
                       update=lambda state, index, row_grads, axis_name, apply: state)


def lazy_adam_table(latent_dim: int, init_sigma: float, learning_rate: float) -> LatentTable:
  """GLO's table: rows ~ N(0, init_sigma^2), each row with its own Adam moments
  and step count; a step moves only the batch's rows ("lazy" Adam).

  The state is `{'table': [num_examples, latent_dim], 'mu', 'nu': like it,
  'count': [num_examples] int32}`.
  """

  def init(key: jax.Array, num_examples: int) -> dict:
    if num_examples <= 0:
      raise ConfigError('a latent table (model glo) needs the number of training examples')
    table = init_sigma * jax.random.normal(key, (num_examples, latent_dim), jnp.float32)
    return {'table': table, 'mu': jnp.zeros_like(table), 'nu': jnp.zeros_like(table),
            'count': jnp.zeros((num_examples,), jnp.int32)}

  def update(state: dict, index: jax.Array, row_grads: jax.Array,
             axis_name: str | None, apply: jax.Array) -> dict:
    if axis_name is not None:  # every device applies every device's rows: the tables stay equal
      devices = jax.lax.psum(1, axis_name)
      index = jax.lax.all_gather(index, axis_name).reshape(-1)
      row_grads = jax.lax.all_gather(row_grads, axis_name).reshape(-1, latent_dim) / devices
    return _sparse_adam_update(state, index, row_grads, learning_rate, apply)

  return LatentTable(init, lambda state, index: state['table'][index], update)


def _sparse_adam_update(latents: dict, rows: jax.Array, grads: jax.Array,
                        learning_rate: float, apply: jax.Array) -> dict:
  """One Adam step on the rows `rows` `[n]` (distinct) with gradients `grads` `[n, latent_dim]`,
  or none if the scalar bool `apply` is False.

  Other rows, and their moments and counts, are unchanged. The guard selects between
  the batch's old and new rows, not whole tables: a `jnp.where` over the table and its
  moments reads and writes all of them every step (CIFAR-10: 50,000 x 512, three times),
  which made GLO's step ten times slower.
  """
  old = {name: latents[name][rows] for name in ('table', 'mu', 'nu', 'count')}
  count = old['count'] + 1
  mu = _B1 * old['mu'] + (1 - _B1) * grads
  nu = _B2 * old['nu'] + (1 - _B2) * jnp.square(grads)
  t = count[:, None].astype(jnp.float32)
  step = learning_rate * (mu / (1 - _B1 ** t)) / (jnp.sqrt(nu / (1 - _B2 ** t)) + _EPS)
  new = {'table': old['table'] - step, 'mu': mu, 'nu': nu, 'count': count}
  return {name: latents[name].at[rows].set(jnp.where(apply, new[name], old[name]))
          for name in new}


def fit_latents(decode: Callable[[jax.Array], jax.Array], target: jax.Array, z0: jax.Array,
                loss: PerExampleLoss, num_steps: int, learning_rate: float) -> jax.Array:
  """Latents of `target` `[batch, ...]` fitted from `z0` `[batch, latent_dim]` by Adam.

  Each example's latent minimises its own loss (the losses are summed), the
  decoder held fixed.
  """
  summed = lambda z: jnp.sum(loss(decode(z), target))
  optimizer = optax.adam(learning_rate)

  def step(carry, _):
    z, opt_state = carry
    updates, opt_state = optimizer.update(jax.grad(summed)(z), opt_state)
    return (optax.apply_updates(z, updates), opt_state), None

  (z, _), _ = jax.lax.scan(step, (z0, optimizer.init(z0)), length=num_steps)
  return jax.lax.stop_gradient(z)
