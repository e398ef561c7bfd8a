"""Training a GON: the one train step and the training loop."""

import functools
import os
import signal
import sys
import threading
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from jax.experimental import multihost_utils

from gon_jax import checkpoints, data, evaluate, images
from gon_jax.core import origin
from gon_jax.errors import RunStopped
from gon_jax.encode import draw, kl_weight, model_variables, reconstruct
from gon_jax.glo import sparse_adam_update
from gon_jax.metric_writer import MetricWriter
from gon_jax.models import LATENT_TABLE_MODELS, ConfigError, get_model
from gon_jax.parallel import Placement, make_placement
from gon_jax.state import TrainState, setup


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


def train_step(state: TrainState, batch: dict, *, model: nn.Module,
               tx: optax.GradientTransformation,
               config: ml_collections.ConfigDict,
               axis_name: str | None = None) -> tuple[TrainState, dict]:
  """One optimiser step on the outer loss, differentiated through the latents.

  Args:
    state: current train state.
    batch: this device's share of the global batch: `{'image': [batch,
      height, width, channels], 'label': [batch], 'index': [batch]}` (labels
      for the classifier, indices into GLO's latent table).
    model, tx, config: bound with functools.partial before compiling.
    axis_name: the pmap axis to average gradients over, or None under jit.

  Returns:
    `(new state, metrics)`, means over the batch: 'reconstruction', the outer
    loss per image (summed squared error, or the negative ELBO in nats for
    variational models); 'loss', what is minimised (with a classifier also
    'cross_entropy' and 'accuracy').
  """
  x = batch['image']
  batch_size = x.shape[0]
  keys = jax.vmap(lambda key: jax.random.split(key))(
      example_keys(config.seed, state.step, batch_size, axis_name))
  z0 = origin(batch_size, config.model.latent_dim, config.gon.z0_sigma, keys[:, 0])
  draws = draw(config, keys[:, 1], x.shape[1] * x.shape[2])
  beta = kl_weight(config, state.step)
  glo = config.model.name in LATENT_TABLE_MODELS
  rows = state.latents['table'][batch['index']] if glo else None
  classifier = config.classifier

  def mean_loss(params, rows, x, z0, draws, labels):
    variables = model_variables(params, state.batch_stats)
    _, latents, losses, batch_stats = reconstruct(model, variables, x, z0, config, True, draws,
                                                  beta, latents=rows)
    metrics = {'reconstruction': jnp.sum(losses) / batch_size}
    loss = metrics['reconstruction']
    if classifier.num_classes:
      logits = model.apply(variables, latents, method='classify')
      metrics['cross_entropy'] = jnp.sum(
          optax.softmax_cross_entropy_with_integer_labels(logits, labels)) / batch_size
      metrics['accuracy'] = jnp.sum(jnp.argmax(logits, -1) == labels) / batch_size
      loss = (classifier.reconstruction_weight * loss
              + classifier.classification_weight * metrics['cross_entropy'])
    metrics['loss'] = loss
    return loss, (batch_stats, metrics)

  loss_and_grads = jax.value_and_grad(mean_loss, argnums=(0, 1), has_aux=True)
  inputs = (rows, x, z0, draws, batch['label'])
  if not config.scan_chunk:
    (_, (batch_stats, metrics)), (grads, row_grads) = loss_and_grads(state.params, *inputs)
  else:
    # Examples are independent (no batch statistics), so the batch can be
    # processed a few examples at a time, summing gradients: each chunk's
    # activations stay in cache, which on CPU is worth more than large matmuls.
    chunks = jax.tree.map(lambda a: a.reshape(-1, config.scan_chunk, *a.shape[1:]), inputs)

    def add_chunk(total, chunk):
      (_, (_, chunk_metrics)), (chunk_grads, chunk_row_grads) = loss_and_grads(
          state.params, *chunk)
      return jax.tree.map(jnp.add, total, (chunk_metrics, chunk_grads)), chunk_row_grads

    metric_shapes = jax.eval_shape(lambda c: mean_loss(state.params, *c)[1][1],
                                   jax.tree.map(lambda a: a[0], chunks))
    zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), (metric_shapes, state.params))
    (metrics, grads), row_grads = jax.lax.scan(add_chunk, zeros, chunks)
    row_grads = None if row_grads is None else row_grads.reshape(-1, row_grads.shape[-1])
    batch_stats = state.batch_stats
  index = batch['index']
  if axis_name is not None:
    grads, metrics = jax.lax.pmean((grads, metrics), axis_name)
    if glo:  # every device applies every device's rows, so the tables stay equal
      devices = jax.lax.psum(1, axis_name)
      index = jax.lax.all_gather(index, axis_name).reshape(-1)
      row_grads = jax.lax.all_gather(row_grads, axis_name).reshape(-1, rows.shape[-1]) / devices
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  latents = (sparse_adam_update(state.latents, index, row_grads, config.glo.learning_rate)
             if glo else state.latents)
  metrics['grad_norm'] = optax.tree.norm(grads)
  # A step whose loss or gradient is not finite changes nothing but the step
  # count (the data moves on), so the state stays usable and checkpointable;
  # the training loop stops or counts it (config.nonfinite).
  finite = jnp.isfinite(metrics['loss']) & jnp.isfinite(metrics['grad_norm'])
  updated = state.replace(params=optax.apply_updates(state.params, updates),
                          batch_stats=batch_stats, opt_state=opt_state, latents=latents)
  new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), updated, state)
  skipped = state.skipped_steps + jnp.where(finite, 0, 1).astype(state.skipped_steps.dtype)
  new_state = new_state.replace(step=state.step + 1, skipped_steps=skipped)
  metrics.update(nonfinite=1.0 - finite.astype(jnp.float32),
                 skipped_steps=skipped.astype(jnp.float32))
  return new_state, metrics


def compile_train_step(config: ml_collections.ConfigDict, placement: Placement,
                       tx: optax.GradientTransformation) -> Callable:
  """`train_step` bound to the config's model and compiled for `placement`."""
  return placement.compile(functools.partial(
      train_step, model=get_model(config, axis_name=placement.axis_name), tx=tx,
      config=config, axis_name=placement.axis_name), compiler_options(config))


def compiler_options(config: ml_collections.ConfigDict) -> dict | None:
  """XLA options of the train step: on CPU, without YNNPACK fusions unless `cpu_ynn_fusions`.

  XLA:CPU hands dots, reductions and the elementwise work around them to
  YNNPACK as fused library calls. For GON steps, whose layers are narrow
  (16 to 64 channels), XLA's own loops and Eigen's matrix products are
  faster: about 1.5x for conv_mnist on a 2-core CPU, the same for
  siren_mnist (README "Performance").
  """
  if jax.default_backend() != 'cpu' or config.cpu_ynn_fusions:
    return None
  return {'xla_cpu_experimental_ynn_fusion_type': ''}


NONFINITE_POLICIES = ('stop', 'skip')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains, checkpointing to and resuming from `workdir`, evaluating as it goes.

  Everything that can be wrong with the config or the data is checked before
  anything is written to `workdir`. Started again with the same config after
  being killed, training continues from the latest checkpoint and ends with
  the state an uninterrupted run ends with (data order and random keys are
  functions of the seed and the step).

  Returns:
    The final train state on the host.

  Raises:
    RunStopped: SIGTERM or SIGINT arrived (a checkpoint of the current step
      was saved first), or a step was not finite under `nonfinite='stop'`
      (nothing saved after the last checkpoint).
  """
  placement = make_placement(config.parallel, config.batch_size)
  if config.scan_chunk and (config.batch_size // jax.device_count()) % config.scan_chunk:
    raise ConfigError(f'scan_chunk {config.scan_chunk} does not divide the batch of each '
                      f'device ({config.batch_size // jax.device_count()})')
  if config.nonfinite not in NONFINITE_POLICIES:
    raise ConfigError(f'unknown nonfinite {config.nonfinite!r}; '
                      f'valid: {", ".join(NONFINITE_POLICIES)}')
  train_images, train_labels, test_images, test_labels = evaluate.load_data(config)
  if config.train_eval_examples > 0:
    test_images = test_images[:config.train_eval_examples]
    test_labels = test_labels[:config.train_eval_examples]
  model, tx, state = setup(config, len(train_images))

  manager = checkpoints.manager(workdir, config)
  state, start_step = checkpoints.restore_latest(manager, state)
  is_main = jax.process_index() == 0
  if start_step >= config.num_steps:
    if is_main:
      print(f'nothing to train: the checkpoint of step {start_step} in '
            f'{os.path.join(workdir, "checkpoints")} has reached num_steps '
            f'({config.num_steps}); raise --config.num_steps to train on', file=sys.stderr)
    return state
  writer = MetricWriter(workdir) if is_main else None

  step_fn = compile_train_step(config, placement, tx)
  device_state = placement.put_state(state)
  evaluator = evaluate.make_evaluator(model, config)
  batches = data.prefetch(data.train_batches(
      train_images, train_labels, config.batch_size, config.seed, start_step,
      jax.process_index(), jax.process_count()), placement.put_batch)

  progress = None
  try:
    with StopSignals() as signals:
      # The first step, which compiles, runs before the progress bar starts
      # its clock: timed by the bar, compilation would make its ETA hours long.
      device_state, metrics, compile_seconds = _first_step(step_fn, device_state, next(batches),
                                                           is_main)
      progress = _progress_bar(start_step + 1, config.num_steps, is_main)
      loop_start = last_time = time.perf_counter()
      last_step, eval_seconds, results = start_step + 1, 0.0, None
      previous = None  # (step, metrics) of the step before, checked once the next one is queued
      postfix = {}
      for step in range(start_step + 1, config.num_steps + 1):
        if step > start_step + 1:
          device_state, metrics = step_fn(device_state, next(batches))
          progress.update(1)
        if previous and config.nonfinite == 'stop':
          _check_finite(*previous, placement, manager)
        previous = (step, metrics)
        if step % config.log_every == 0 or step == config.num_steps:
          scalars = {f'train/{k}': float(v) for k, v in placement.get(metrics).items()}
          postfix = dict(loss=f"{scalars['train/loss']:.3f}")
          if step > last_step:  # the first step's time was compilation: no rate
            now = time.perf_counter()
            scalars['train/steps_per_second'] = (step - last_step) / (now - last_time)
            last_time, last_step = now, step
            postfix['steps_per_s'] = f"{scalars['train/steps_per_second']:.2f}"
          progress.set_postfix(postfix)
          if writer:
            writer.write(step, scalars)
        if step % config.eval_every == 0 or step == config.num_steps:
          eval_start = time.perf_counter()
          if is_main:
            # The bar stands still meanwhile (minutes for a large test set): say why.
            progress.set_postfix_str(f'evaluating {len(test_images)} test images', refresh=True)
            results = _evaluate_and_log(step, placement.get(device_state), evaluator,
                                        test_images, test_labels, writer, workdir,
                                        config.grid_size)
            progress.set_postfix(postfix)
          last_time = time.perf_counter()  # steps/s counts training only
          eval_seconds += last_time - eval_start
        signal_name = signals.received()
        if step % config.checkpoint_every == 0 or step == config.num_steps or signal_name:
          if config.nonfinite == 'stop':  # never save a step that was not finite
            _check_finite(step, metrics, placement, manager)
            previous = None  # checked
          checkpoints.save(manager, step, placement.get(device_state))
        if signal_name and step < config.num_steps:
          manager.wait_until_finished()
          raise RunStopped(f'{signal_name} at step {step}: saved a checkpoint; run the same '
                           f'command to resume', 128 + getattr(signal, signal_name))
    manager.wait_until_finished()
    train_seconds = time.perf_counter() - loop_start - eval_seconds
  finally:
    batches.close()
    if progress is not None:
      progress.close()
    if writer:
      writer.close()
  if is_main:
    print(_summary(config.num_steps - start_step, start_step, train_seconds, compile_seconds,
                   eval_seconds, results,
                   os.path.join(workdir, 'checkpoints', str(config.num_steps))),
          file=sys.stderr, flush=True)
  return placement.get(device_state)


def _evaluate_and_log(step: int, state: TrainState, evaluator: Callable,
                      test_images: np.ndarray, test_labels: np.ndarray,
                      writer: MetricWriter, workdir: str, grid_size: int) -> dict:
  """Evaluates `state` on the test images; logs the metrics and the reconstruction grid."""
  results, recon, _ = evaluator(model_variables(state.params, state.batch_stats),
                                test_images, test_labels)
  writer.write(step, {f'test/{k}': v for k, v in results.items() if k not in evaluate.COUNTS})
  grid = images.save_reconstructions(
      os.path.join(workdir, 'images', f'reconstructions_{step:07d}.png'),
      test_images, recon, grid_size)
  writer.write_image(step, 'test/reconstructions', grid)
  return results


def _first_step(step_fn: Callable, state: Any, batch: Any,
                announce: bool) -> tuple[Any, Any, float]:
  """Runs the first step of a run, which compiles `step_fn`: `(state, metrics, seconds)`.

  Announced on stderr when `announce` (process 0): compilation takes tens of
  seconds on a CPU, before any step, and looks like a hang otherwise. (A
  step compiled ahead of time, `.lower().compile()`, would not do: under
  pmap with several processes the state's type changes after the first step.)
  """
  if announce:
    print('compiling the train step (XLA; tens of seconds on a CPU, more for large models)...',
          file=sys.stderr, flush=True)
  start = time.perf_counter()
  state, metrics = step_fn(state, batch)
  jax.block_until_ready(metrics)
  seconds = time.perf_counter() - start
  if announce:
    print(f'compiled the train step and ran its first step in {seconds:.1f} s',
          file=sys.stderr, flush=True)
  return state, metrics, seconds


def _summary(steps: int, start_step: int, train_seconds: float, compile_seconds: float,
             eval_seconds: float, results: dict | None, checkpoint: str) -> str:
  """The line that ends a run: its speed, the last evaluation and where the checkpoint is.

  `compile_seconds` is the first step's time, `train_seconds` the other steps'.
  """
  resumed = f' (from step {start_step})' if start_step else ''
  rate = (f'{(steps - 1) / max(train_seconds, 1e-9):.1f} steps/s after ' if steps > 1 else '')
  plural = 's' if steps > 1 else ''
  line = (f'trained {steps} step{plural}{resumed} in {compile_seconds + train_seconds:.1f} s '
          f'({rate}{compile_seconds:.1f} s compiling; {eval_seconds:.1f} s evaluating besides)')
  if results:
    test = f'test SSE {results["sse"]:.2f}, PSNR {results["psnr"]:.2f} dB'
    if 'bits_per_dim' in results:
      test += f', {results["bits_per_dim"]:.3f} bits/dim'
    if 'accuracy' in results:
      test += f', accuracy {results["accuracy"]:.4f}'
    line += f'; {test} on {results["num_images"]} images'
  return f'{line}; checkpoint {checkpoint}'


def _check_finite(step: int, metrics: dict, placement: Placement, manager) -> None:
  """Raises RunStopped if step `step`'s loss or gradient norm was not finite."""
  values = placement.get(metrics)
  if not values['nonfinite']:
    return
  quantity, value = next((name, values[key]) for key, name in
                         (('loss', 'loss'), ('grad_norm', 'gradient norm'))
                         if not np.isfinite(values[key]))
  manager.wait_until_finished()
  last = manager.latest_step()
  kept = f'the last checkpoint (step {last}) is kept' if last else 'no checkpoint was saved'
  raise RunStopped(f'non-finite {quantity} ({value}) at step {step}; stopped, {kept}; try '
                   f'--config.grad_clip_norm=1.0, a lower learning_rate, or '
                   f"--config.nonfinite=skip", 1)


class StopSignals:
  """Within `with`, SIGTERM and SIGINT (Ctrl-C) are noted, not fatal.

  The training loop polls `received()` after each step and saves before it
  exits. A second Ctrl-C interrupts at once. In a multi-process run every
  process learns of a signal that any one of them got, so that they all
  save the same step (saving is collective).
  """
  SIGNALS = ('SIGTERM', 'SIGINT')

  def __init__(self):
    self._name = None
    self._previous = {}

  def __enter__(self) -> 'StopSignals':
    if threading.current_thread() is threading.main_thread():  # signals need the main thread
      for name in self.SIGNALS:
        self._previous[name] = signal.signal(getattr(signal, name), self._note)
      if getattr(self._previous['SIGINT'], 'pressed', False):  # a Ctrl-C in start-up was lost
        self.__exit__()
        raise KeyboardInterrupt
    return self

  def _note(self, signum, frame):
    del frame
    self._name = signal.Signals(signum).name
    signal.signal(signal.SIGINT, self._previous['SIGINT'])  # a second Ctrl-C is fatal

  def __exit__(self, *exc) -> None:
    for name, handler in self._previous.items():
      signal.signal(getattr(signal, name), handler)

  def received(self) -> str | None:
    """The name of the signal received by this or (multi-process) any process, or None."""
    if jax.process_count() == 1:
      return self._name
    code = self.SIGNALS.index(self._name) + 1 if self._name else 0
    codes = multihost_utils.process_allgather(np.array(code, np.int32))
    return self.SIGNALS[int(np.max(codes)) - 1] if np.max(codes) else None


def _progress_bar(start: int, total: int, enabled: bool) -> tqdm.tqdm:
  return tqdm.tqdm(initial=start, total=total, disable=not enabled,
                   dynamic_ncols=True, unit='step')
