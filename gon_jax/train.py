"""Training a GON: the one train step and the training loop."""

import functools
import json
import os
import time
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
import tqdm
from tensorboardX import SummaryWriter

from gon_jax import checkpoints, data, evaluate, images
from gon_jax.core import origin
from gon_jax.encode import draw, kl_weight, model_variables, reconstruct
from gon_jax.models import ConfigError, get_model
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
    batch: `{'image': [batch, height, width, channels], ...}`, this device's
      share of the global batch.
    model, tx, config: bound with functools.partial before compiling.
    axis_name: the pmap axis to average gradients over, or None under jit.

  Returns:
    `(new state, {'loss': the mean outer loss per image: summed squared
    error, or the negative ELBO in nats for variational models})`.
  """
  x = batch['image']
  keys = jax.vmap(lambda key: jax.random.split(key))(
      example_keys(config.seed, state.step, x.shape[0], axis_name))
  z0 = origin(x.shape[0], config.model.latent_dim, config.gon.z0_sigma, keys[:, 0])
  draws = draw(config, keys[:, 1], x.shape[1] * x.shape[2])
  beta = kl_weight(config, state.step)

  def mean_loss(params, x, z0, draws):
    variables = model_variables(params, state.batch_stats)
    _, _, losses, batch_stats = reconstruct(model, variables, x, z0, config, True, draws, beta)
    return jnp.sum(losses) / batch['image'].shape[0], batch_stats

  loss_and_grads = jax.value_and_grad(mean_loss, has_aux=True)
  if not config.scan_chunk:
    (loss, batch_stats), grads = loss_and_grads(state.params, x, z0, draws)
  else:
    # Examples are independent (no batch statistics), so the batch can be
    # processed a few examples at a time, summing gradients: each chunk's
    # activations stay in cache, which on CPU is worth more than large matmuls.
    chunks = jax.tree.map(lambda a: a.reshape(-1, config.scan_chunk, *a.shape[1:]),
                          (x, z0, draws))

    def add_chunk(total, chunk):
      (chunk_loss, _), chunk_grads = loss_and_grads(state.params, *chunk)
      return jax.tree.map(jnp.add, total, (chunk_loss, chunk_grads)), None

    zeros = (jnp.zeros(()), jax.tree.map(jnp.zeros_like, state.params))
    (loss, grads), _ = jax.lax.scan(add_chunk, zeros, chunks)
    batch_stats = state.batch_stats
  if axis_name is not None:
    grads, loss = jax.lax.pmean((grads, loss), axis_name)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(step=state.step + 1,
                            params=optax.apply_updates(state.params, updates),
                            batch_stats=batch_stats, opt_state=opt_state)
  return new_state, {'loss': loss}


def compile_train_step(config: ml_collections.ConfigDict, placement: Placement,
                       tx: optax.GradientTransformation) -> Callable:
  """`train_step` bound to the config's model and compiled for `placement`."""
  return placement.compile(functools.partial(
      train_step, model=get_model(config, axis_name=placement.axis_name), tx=tx,
      config=config, axis_name=placement.axis_name))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains, checkpointing to and resuming from `workdir`, evaluating as it goes.

  Everything that can be wrong with the config or the data is checked before
  anything is written to `workdir`.

  Returns:
    The final train state on the host.
  """
  placement = make_placement(config.parallel, config.batch_size)
  model, tx, state = setup(config)
  if config.scan_chunk and (config.batch_size // jax.device_count()) % config.scan_chunk:
    raise ConfigError(f'scan_chunk {config.scan_chunk} does not divide the batch of each '
                      f'device ({config.batch_size // jax.device_count()})')
  train_images, train_labels = data.load_split(config.data, 'train', config.data.image_size)
  test_images, _ = data.load_split(config.data, 'test', config.data.image_size)
  if config.train_eval_examples > 0:
    test_images = test_images[:config.train_eval_examples]

  manager = checkpoints.manager(workdir, config)
  state, start_step = checkpoints.restore_latest(manager, state)
  is_main = jax.process_index() == 0
  writer = MetricWriter(workdir) if is_main else None

  step_fn = compile_train_step(config, placement, tx)
  device_state = placement.put_state(state)
  evaluator = evaluate.make_evaluator(model, config)
  batches = data.train_batches(
      train_images, train_labels, config.batch_size, config.seed, start_step,
      jax.process_index(), jax.process_count())

  progress = _progress_bar(start_step, config.num_steps, is_main)
  last_time, last_step = time.perf_counter(), start_step
  for step in range(start_step + 1, config.num_steps + 1):
    device_state, metrics = step_fn(device_state, placement.put_batch(next(batches)))
    progress.update(1)
    if step % config.log_every == 0 or step == config.num_steps:
      loss = float(placement.get(metrics)['loss'])
      now = time.perf_counter()
      rate = (step - last_step) / (now - last_time)
      last_time, last_step = now, step
      progress.set_postfix(loss=f'{loss:.3f}', steps_per_s=f'{rate:.2f}')
      if writer:
        writer.write(step, {'train/loss': loss, 'train/steps_per_second': rate})
    if step % config.eval_every == 0 or step == config.num_steps:
      if is_main:
        state = placement.get(device_state)
        results, recon, _ = evaluator(model_variables(state.params, state.batch_stats),
                                   test_images)
        writer.write(step, {f'test/{k}': v for k, v in results.items()})
        images.save_reconstructions(
            os.path.join(workdir, 'images', f'reconstructions_{step:07d}.png'),
            test_images, recon, config.grid_size)
      last_time = time.perf_counter()  # steps/s counts training only
    if step % config.checkpoint_every == 0 or step == config.num_steps:
      checkpoints.save(manager, step, placement.get(device_state))
  progress.close()
  manager.wait_until_finished()
  if writer:
    writer.close()
  return placement.get(device_state)


def _progress_bar(start: int, total: int, enabled: bool) -> tqdm.tqdm:
  return tqdm.tqdm(initial=start, total=total, disable=not enabled,
                   dynamic_ncols=True, unit='step')


class MetricWriter:
  """Scalars to TensorBoard event files and to `metrics.jsonl` in the workdir."""

  def __init__(self, workdir: str):
    self._summary = SummaryWriter(os.path.join(workdir, 'tensorboard'))
    self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a', encoding='utf-8')

  def write(self, step: int, scalars: dict[str, float]) -> None:
    for name, value in scalars.items():
      self._summary.add_scalar(name, value, step)
    self._jsonl.write(json.dumps({'step': step, **scalars}) + '\n')
    self._jsonl.flush()

  def close(self) -> None:
    self._summary.close()
    self._jsonl.close()
