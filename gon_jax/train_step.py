"""The train step: one optimiser step of any objective, differentiated through its latents
(`train_step`, pure), K of them in one call (`train_steps`), and both compiled for a
placement (`compile_train_step`, `compile_train_steps`); gon_jax.train's loop runs them."""

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from gon_jax import data
from gon_jax.epoch_losses import PER_STEP, EpochLosses
from gon_jax.models import make_objective
from gon_jax.objectives import Objective
from gon_jax.passes import check_batch
from gon_jax.parallel import Placement, compiler_options
from gon_jax.settings import Settings
from gon_jax.state import TrainState


def example_keys(seed: int, step: jax.Array, local_batch: int,
                 axis_name: str | None) -> jax.Array:
  """One PRNG key per example of this device's share of the global batch.

  Keys depend on (seed, step, the example's position in the global batch)
  only, so random choices are the same for any number of devices and after
  resumption.

  Returns:
    `[local_batch]` keys.
  """
  first = 0 if axis_name is None else jax.lax.axis_index(axis_name) * local_batch
  step_key = jax.random.fold_in(jax.random.key(seed), step)
  return jax.vmap(lambda i: jax.random.fold_in(step_key, i))(first + jnp.arange(local_batch))


def train_step(state: TrainState, batch: dict, *, objective: Objective,
               tx: optax.GradientTransformation, seed: int, scan_chunk: int = 0,
               axis_name: str | None = None) -> tuple[TrainState, dict]:
  """One optimiser step on the objective's loss, differentiated through the latents.

  Args:
    state: current train state.
    batch: this device's share of the global batch: `{'image': [batch,
      height, width, channels], 'label': [batch], 'index': [batch]}` (labels
      for the classifier, indices into a latent table).
    objective, tx: the loss and the optimiser, bound with functools.partial before
      compiling, as are the other keywords.
    seed: the run's seed: example i of step s draws with fold_in(fold_in(key(seed), s), i).
    scan_chunk: 0, or examples per chunk of a scan over the batch (performance.scan_chunk).
    axis_name: the pmap axis to average gradients over, or None under jit.

  Returns:
    `(new state, metrics)`: the objective's metrics (means over the batch),
    'grad_norm', and 'nonfinite' and 'skipped_steps' of the finite guard.

  Raises:
    ValueError (at trace time): a batch without images or with entries of another length
    (passes.check_batch); an objective whose BatchNorm averages over another axis than
    `axis_name` (Objective.check_axis_name: make it with make_objective(settings, axis_name)).
  """
  check_batch(batch)
  objective.check_axis_name(axis_name, state.batch_stats)
  batch_size = batch['image'].shape[0]
  keys = example_keys(seed, state.step, batch_size, axis_name)
  table = objective.latent_table
  rows = table.lookup(state.latents, batch['index'])
  loss_fn = functools.partial(objective.loss, batch_stats=state.batch_stats, step=state.step,
                              mean_over=batch_size)
  (metrics, batch_stats), (grads, row_grads) = _gradients(
      loss_fn, state.params, rows, (batch, keys), scan_chunk)
  if axis_name is not None:
    grads, metrics = jax.lax.pmean((grads, metrics), axis_name)
  batch_stats = state.batch_stats if batch_stats is None else batch_stats
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  metrics['grad_norm'] = optax.tree.norm(grads)
  # A step whose loss or gradient is not finite changes nothing but the step
  # count (the data moves on), so the state stays usable and checkpointable;
  # the training loop stops or counts it (config.nonfinite). The latent table
  # guards the batch's rows itself: selecting whole tables costs a pass over them.
  finite = jnp.isfinite(metrics['loss']) & jnp.isfinite(metrics['grad_norm'])
  updated = state.replace(params=optax.apply_updates(state.params, updates),
                          batch_stats=batch_stats, opt_state=opt_state, latents=None)
  new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), updated,
                           state.replace(latents=None))
  new_state = new_state.replace(latents=table.update(state.latents, batch['index'], row_grads,
                                                     axis_name, finite))
  skipped = state.skipped_steps + jnp.where(finite, 0, 1).astype(state.skipped_steps.dtype)
  new_state = new_state.replace(step=state.step + 1, skipped_steps=skipped)
  metrics.update(nonfinite=1.0 - finite.astype(jnp.float32),
                 skipped_steps=skipped.astype(jnp.float32))
  return new_state, metrics


def _gradients(loss_fn: Callable, params: Any, rows: Any, examples: Any,
               chunk: int) -> tuple[tuple[dict, Any], tuple[Any, Any]]:
  """`((metrics, batch_stats), (grads, row_grads))` of `loss_fn(params, rows, *examples)`.

  `chunk` > 0 (performance.scan_chunk) processes the batch `chunk` examples
  at a time, summing metrics and gradients: the same numbers when examples
  are independent (no batch statistics: batch_stats come back as None, for
  unchanged), and on CPU each chunk's activations stay in cache, which is worth
  more than large matrix products. `examples` and `rows` have a leading batch axis.
  """
  loss_and_grads = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)
  if not chunk:
    (_, aux), grads = loss_and_grads(params, rows, *examples)
    return aux, grads
  chunks = jax.tree.map(lambda a: a.reshape(-1, chunk, *a.shape[1:]), (rows, examples))

  def add_chunk(total, chunk_inputs):
    chunk_rows, chunk_examples = chunk_inputs
    (_, (chunk_metrics, _)), (chunk_grads, chunk_row_grads) = loss_and_grads(
        params, chunk_rows, *chunk_examples)
    return jax.tree.map(jnp.add, total, (chunk_metrics, chunk_grads)), chunk_row_grads

  first = jax.tree.map(lambda a: a[0], chunks)
  metric_shapes = jax.eval_shape(lambda c: loss_fn(params, c[0], *c[1])[1][0], first)
  zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), (metric_shapes, params))
  (metrics, grads), row_grads = jax.lax.scan(add_chunk, zeros, chunks)
  row_grads = jax.tree.map(lambda g: g.reshape(-1, *g.shape[2:]), row_grads)
  return (metrics, None), (grads, row_grads)


def train_steps(state: TrainState, indices: jax.Array, train_set: dict, *,
                step_fn: Callable) -> tuple[TrainState, dict]:
  """`steps_per_call` train steps in one call, on batches gathered on the device.

  The same steps as `step_fn` called on the host's batches of the same indices: one
  call and no transfer but the indices per K steps, for devices that wait on launches.

  Args:
    state: current train state.
    indices: int32 `[batch, K]`: this device's rows of the batches of the next K steps
      (`data.call_indices`).
    train_set: the whole training split on the device: `{'image': uint8 [num_examples,
      height, width, channels] (or floats in [0, 1]), 'label': [num_examples]}`.
    step_fn: `train_step` with its keywords bound.

  Returns:
    `(state after K steps, metrics)`: the metrics of the last step, or of the first step
    that was not finite (its 'nonfinite' is 1), so that the loop's checks see it; and under
    PER_STEP those of `EpochLosses.METRICS` of every step, `[K]` each (the epoch's means).
  """
  def one_step(state, step_indices):
    batch = {'image': data.to_float(train_set['image'][step_indices]),
             'label': train_set['label'][step_indices], 'index': step_indices}
    return step_fn(state, batch)

  state, metrics = jax.lax.scan(one_step, state, indices.T)
  nonfinite = metrics['nonfinite']
  shown = jnp.where(nonfinite.max() > 0, jnp.argmax(nonfinite), nonfinite.shape[0] - 1)
  per_step = {name: metrics[name] for name in EpochLosses.METRICS}
  return state, {**jax.tree.map(lambda m: m[shown], metrics), PER_STEP: per_step}


def compile_train_step(settings: Settings, placement: Placement,
                       tx: optax.GradientTransformation) -> Callable:
  """`train_step` bound to the settings' objective and compiled for `placement`:
  `step(state, batch) -> (state, metrics)`."""
  return placement.compile(bound_train_step(settings, placement, tx),
                           compiler_options(settings.performance.cpu_ynn_fusions))


def compile_train_steps(settings: Settings, placement: Placement,
                        tx: optax.GradientTransformation) -> Callable:
  """`train_steps` compiled for `placement`: `steps(state, indices, train_set) -> (state,
  metrics)`, the train set placed with `placement.put_state`."""
  return placement.compile(
      functools.partial(train_steps, step_fn=bound_train_step(settings, placement, tx)),
      compiler_options(settings.performance.cpu_ynn_fusions), replicated_args=1)


def bound_train_step(settings: Settings, placement: Placement,
                     tx: optax.GradientTransformation) -> Callable:
  """`train_step` with the settings' objective (made for `placement`'s axis), `tx`, seed and
  scan chunk bound: `step(state, batch) -> (state, metrics)`, not yet compiled."""
  return functools.partial(
      train_step, objective=make_objective(settings, axis_name=placement.axis_name), tx=tx,
      seed=settings.seed, scan_chunk=settings.performance.scan_chunk,
      axis_name=placement.axis_name)
