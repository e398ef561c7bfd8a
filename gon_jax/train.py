"""Training a GON: `train_and_evaluate`, the loop that runs the train step (gon_jax.train_step),
logs, evaluates, checkpoints and resumes."""

import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterator

import jax
import ml_collections
import numpy as np
import optax
import tqdm
from jax.experimental import multihost_utils

from gon_jax import checkpoints, data, evaluate, images, saved_config
from gon_jax.epoch_losses import PER_STEP, EpochLosses, epochs_ended
from gon_jax.config import steps_per_epoch, to_settings, validate, with_resolved_steps
from gon_jax.errors import ConfigError, DataError, Diverged, RunStopped
from gon_jax.metric_writer import MetricWriter
from gon_jax.objectives import model_variables
from gon_jax.parallel import Placement, make_placement
from gon_jax.settings import Settings
from gon_jax.state import TrainState, setup
from gon_jax.train_step import compile_train_step, compile_train_steps


def _compiled_steps_and_inputs(settings: Settings, placement: Placement,
                               tx: optax.GradientTransformation, train_images: np.ndarray,
                               train_labels: np.ndarray, start_step: int
                               ) -> tuple[Callable, Iterator]:
  """The compiled call of `performance.steps_per_call` steps, and its prefetched inputs from
  `start_step` on: the host's batches (one step a call), or K steps' indices into the
  training split, which moves to the device once.

  Raises:
    ConfigError: `start_step` is not a multiple of `steps_per_call`.
  """
  processes = (start_step, jax.process_index(), jax.process_count())
  steps_per_call = settings.performance.steps_per_call
  if start_step % steps_per_call:
    raise ConfigError(f'the checkpoint of step {start_step} is not at a multiple of '
                      f'performance.steps_per_call={steps_per_call}: resume with a '
                      f'steps_per_call that divides {start_step}')
  if steps_per_call == 1:
    batches = data.train_batches(train_images, train_labels, settings.batch_size,
                                 settings.seed, *processes)
    return (compile_train_step(settings, placement, tx),
            data.prefetch(batches, placement.put_batch))
  train_set = placement.put_state({'image': train_images, 'label': train_labels})
  steps_fn = compile_train_steps(settings, placement, tx)
  indices = data.call_indices(len(train_images), settings.batch_size, settings.seed,
                              steps_per_call, *processes)
  return (lambda state, call_indices: steps_fn(state, call_indices, train_set),
          data.prefetch(indices, placement.put_batch))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       allow_recipe_change: bool = False) -> TrainState:
  """Trains, checkpointing to and resuming from `workdir`, evaluating as it goes.

  Everything that can be wrong with the config or the data is checked before
  anything is written to `workdir`. Started again with the same config after
  being killed, training continues from the latest checkpoint and ends with
  the state an uninterrupted run ends with (data order and random keys are
  functions of the seed and the step).

  The run trains `num_steps` steps, or with `num_epochs` > 0 that many epochs of
  `len(training split) // batch_size` steps (gon_jax.config.steps_for; said on stderr), and
  records each epoch's mean training loss and its test loss (`EpochLosses`) in
  `<workdir>/epochs.jsonl`.

  A workdir is resumed with the recipe it was trained with (its config.json): a config that
  changes it is refused, unless `allow_recipe_change`, and the change is then recorded in
  `<workdir>/config_history.jsonl` (gon_jax.saved_config.compare_with_saved; its FREE_KEYS,
  such as num_steps and the cadences, may change freely, and their changes are recorded too).

  Args:
    config: the run's config.
    workdir: where checkpoints, config.json, metrics and images are written.
    allow_recipe_change: resume even if `config` changes the recipe of `workdir`'s run.

  Returns:
    The final train state on the host.

  Raises:
    ConfigError, DataError: the config or the data cannot work, or the config changes the
      recipe of the workdir's run (and `allow_recipe_change` is False).
    RunStopped: SIGTERM or SIGINT arrived (a checkpoint of the current step
      was saved first), or a step was not finite under `nonfinite='stop'`
      (nothing saved after the last checkpoint).
  """
  settings = validate(config)
  placement = make_placement(config.parallel)
  train_images, train_labels, test_images, test_labels = _training_data(config, settings)
  given_steps = config.num_steps
  # From here on num_steps is the run's length, also where num_epochs sets it: the schedule,
  # the loop, resumption, config.json and the recipe's comparison all see it.
  config = with_resolved_steps(config, len(train_images))
  # After the checks of the config and the data, which say what cannot work at all; before
  # anything is restored or written.
  changes = saved_config.compare_with_saved(config, workdir, allow_recipe_change)
  settings = to_settings(config)  # with num_steps resolved: what the modules below take
  objective, tx, state = setup(settings, len(train_images))
  per_epoch = steps_per_epoch(len(train_images), config.batch_size)
  is_main = jax.process_index() == 0
  if is_main and config.num_epochs:
    print(_epochs_line(config, given_steps, len(train_images)), file=sys.stderr, flush=True)

  # The manager is closed on every path (its record of the last step is written then).
  with checkpoints.manager(workdir) as manager:
    state, start_step = checkpoints.restore_latest(manager, state, missing_ok=True)
    if start_step >= config.num_steps:
      if is_main:
        print(_nothing_to_train_line(config, workdir, start_step, per_epoch), file=sys.stderr)
      return state
    run = _Run(config, workdir, placement, manager,
               evaluate.make_evaluator(objective, settings.evaluation),
               test_images, test_labels, is_main, per_epoch)
    step_fn, batches = _compiled_steps_and_inputs(settings, placement, tx, train_images,
                                                  train_labels, start_step)
    if is_main:  # the loop then saves the config as config.json
      saved_config.record(workdir, start_step, changes)
    return _loop_to_the_end(run, step_fn, state, batches, start_step)


def _loop_to_the_end(run: '_Run', step_fn: Callable, state: TrainState, batches: Iterator,
                     start_step: int) -> TrainState:
  """Runs the loop from `start_step`, closing the inputs and the run on every way out;
  says the run's summary line (process 0) and returns the final state on the host."""
  try:
    device_state = run.loop(step_fn, run.placement.put_state(state), batches, start_step)
  finally:
    batches.close()
    run.close()
  if run.is_main:
    print(run.summary(start_step), file=sys.stderr, flush=True)
  return run.placement.get(device_state)


class _Run:
  """The training loop of `train_and_evaluate`: steps, logs, evaluations, checkpoints."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, placement: Placement,
               manager: Any, evaluator: Callable, test_images: np.ndarray,
               test_labels: np.ndarray, is_main: bool, per_epoch: int):
    self.config, self.workdir, self.placement, self.manager = config, workdir, placement, manager
    self.evaluator, self.test_images, self.test_labels = evaluator, test_images, test_labels
    self.is_main, self.steps_per_epoch = is_main, per_epoch  # train steps an epoch
    self.epochs = None  # EpochLosses, process 0's
    self.writer = None  # opened inside the signal guard: a start-up Ctrl-C leaves no files
    self.progress = None
    self.compile_seconds = self.train_seconds = self.eval_seconds = 0.0
    self.results = None  # of the last evaluation
    self._postfix = {}
    self._last_time, self._last_step = 0.0, 0

  def loop(self, step_fn: Callable, device_state: Any, batches: Iterator, start_step: int) -> Any:
    """Trains from `start_step` to `num_steps`; returns the device state."""
    config, placement = self.config, self.placement
    per_call = config.performance.steps_per_call  # steps a call of step_fn takes
    with StopSignals() as signals:
      if self.is_main:
        # After the checkpoint restored: a wrong --config never overwrites the workdir's.
        saved_config.save(config, self.workdir)
        self.writer = MetricWriter(self.workdir)
        self.epochs = EpochLosses.resume(self.workdir, self.steps_per_epoch, start_step)
      # The first call, which compiles, runs before the progress bar starts
      # its clock: timed by the bar, compilation would make its ETA hours long.
      device_state, metrics, self.compile_seconds = _first_step(
          step_fn, device_state, next(batches), self.is_main)
      first = start_step + per_call
      self.progress = _progress_bar(first, config.num_steps, self.is_main)
      loop_start = self._last_time = time.perf_counter()
      self._last_step = first
      previous = None  # (step, metrics) of the call before, checked once the next one is queued
      for step in range(first, config.num_steps + 1, per_call):
        if step > first:
          device_state, metrics = step_fn(device_state, next(batches))
          self.progress.update(per_call)
        if previous and config.nonfinite == 'stop':
          _check_finite(*previous, placement, self.manager, per_call)
        previous = (step, metrics)
        if self.is_main:
          self.epochs.add(step, metrics, placement.get)
        last = step == config.num_steps
        if step % config.log_every == 0 or last:
          self._log(step, metrics)
        evaluated = step % config.eval_every == 0 or last
        if evaluated:
          self._evaluate(step, device_state)
        if epochs_ended(step, per_call, self.steps_per_epoch):
          if config.nonfinite == 'stop':  # an epoch that diverged at its end is not recorded
            _check_finite(step, metrics, placement, self.manager, per_call)
            previous = None  # checked
          if self.is_main:
            self._record_epochs(step, device_state, evaluated)
        signal_name = signals.received()
        if step % config.checkpoint_every == 0 or last or signal_name:
          if config.nonfinite == 'stop':  # never save a step that was not finite
            _check_finite(step, metrics, placement, self.manager, per_call)
            previous = None  # checked
          checkpoints.save(self.manager, step, placement.get(device_state))
          if self.is_main:  # the sums of the epoch under way, for a run resumed from here
            self.epochs.save_partial(self.workdir, step, placement.get)
        if signal_name and not last:
          self.manager.wait_until_finished()
          raise RunStopped(f'{signal_name} at step {step}: saved a checkpoint; run the same '
                           f'command to resume', 128 + getattr(signal, signal_name))
    self.manager.wait_until_finished()
    self.train_seconds = time.perf_counter() - loop_start - self.eval_seconds
    return device_state

  def _log(self, step: int, metrics: dict) -> None:
    scalars = {f'train/{k}': float(v) for k, v in self.placement.get(metrics).items()
               if k != PER_STEP}
    self._postfix = dict(loss=f"{scalars['train/loss']:.3f}")
    if step > self._last_step:  # the first step's time was compilation: no rate
      now = time.perf_counter()
      scalars['train/steps_per_second'] = (step - self._last_step) / (now - self._last_time)
      self._last_time, self._last_step = now, step
      self._postfix['steps_per_s'] = f"{scalars['train/steps_per_second']:.2f}"
    self.progress.set_postfix(self._postfix)
    if self.writer:
      self.writer.write(step, scalars)

  def _evaluate(self, step: int, device_state: Any) -> None:
    """Evaluates on the test images (process 0); logs the metrics and the reconstruction grid."""
    if self.is_main:
      self.results, recon = self._test(device_state, self.test_images, self.test_labels)
      self.writer.write(step, {f'test/{k}': v for k, v in self.results.items()
                               if k not in evaluate.COUNTS})
      grid = images.save_reconstructions(
          os.path.join(self.workdir, 'images', f'reconstructions_{step:07d}.png'),
          self.test_images, recon, self.config.grid_size)
      self.writer.write_image(step, 'test/reconstructions', grid)

  def _test(self, device_state: Any, test_images: np.ndarray,
            test_labels: np.ndarray) -> tuple[dict, np.ndarray]:
    """The evaluator's `(metrics, reconstructions)` of `test_images`, timed apart from
    training (process 0)."""
    start = time.perf_counter()
    # The bar stands still meanwhile (minutes for a large test set): say why.
    self.progress.set_postfix_str(f'evaluating {len(test_images)} test images', refresh=True)
    state = self.placement.get(device_state)
    results, recon, _ = self.evaluator(model_variables(state.params, state.batch_stats),
                                       test_images, test_labels)
    self.progress.set_postfix(self._postfix)
    elapsed = time.perf_counter() - start
    # steps/s counts training only: the interval since the last logged step loses this time
    # (an epoch's test may fall between two logged steps).
    self._last_time += elapsed
    self.eval_seconds += elapsed
    return results, recon

  def _record_epochs(self, step: int, device_state: Any, evaluated: bool) -> None:
    """Records the epochs that ended in the call that ended at `step` (process 0): their mean
    training loss and the test loss at `step` (on `epoch_eval_examples` test images)."""
    count = self.config.epoch_eval_examples
    count = len(self.test_images) if count == -1 else min(count, len(self.test_images))
    test = {}
    if count:
      results = (self.results if evaluated and count == len(self.test_images) else
                 self._test(device_state, self.test_images[:count], self.test_labels[:count])[0])
      test = {'test_loss': results.get('negative_elbo_nats', results['sse']),
              'test_images': count}
    for record in self.epochs.pop_ended(step, self.config.performance.steps_per_call,
                                        self.placement.get):
      record.update(test)
      if count and step != record['step']:  # steps_per_call does not divide the epoch
        record['test_step'] = step
      self.epochs.write(self.workdir, record)
      self.writer.write(record['step'], {f'epoch/{key}': record[key] for key in
                                         ('epoch', 'train_loss', 'test_loss') if key in record})

  def close(self) -> None:
    """Closes the progress bar, the metric writer and the checkpoint manager, on every way out
    of `loop`: the manager waits for the last save and records it (checkpoints.Manager)."""
    if self.progress is not None:
      self.progress.close()
    if self.writer:
      self.writer.close()
    self.manager.close()

  def summary(self, start_step: int) -> str:
    """The line that ends a run: its speed, the last evaluation and where the checkpoint is."""
    config = self.config
    return _summary(config.num_steps - start_step, start_step, self.train_seconds,
                    self.compile_seconds, self.eval_seconds, self.results,
                    os.path.join(self.workdir, 'checkpoints', str(config.num_steps)),
                    config.performance.steps_per_call)


def _training_data(config: ml_collections.ConfigDict,
                   settings: Settings) -> tuple[np.ndarray, ...]:
  """`(train images, train labels, test images, test labels)` of the run: the test split cut
  to `train_eval_examples`; a DataError for a batch larger than the training split."""
  train_images, train_labels, test_images, test_labels = data.load_data(
      settings.data, settings.model['channels'], settings.classifier.num_classes)
  if config.train_eval_examples > 0:
    test_images = test_images[:config.train_eval_examples]
    test_labels = test_labels[:config.train_eval_examples]
  if config.batch_size > len(train_images):  # an epoch would have no step
    raise DataError(f'batch_size {config.batch_size} is more than the {len(train_images)} '
                    f'training images; use a batch_size of at most {len(train_images)}')
  return train_images, train_labels, test_images, test_labels


def _nothing_to_train_line(config: ml_collections.ConfigDict, workdir: str, start_step: int,
                           per_epoch: int) -> str:
  """What a run whose checkpoint has reached its length says."""
  length = (f'{config.num_steps} = num_epochs {config.num_epochs} * {per_epoch} steps'
            if config.num_epochs else config.num_steps)
  key = 'num_epochs' if config.num_epochs else 'num_steps'
  return (f'nothing to train: the checkpoint of step {start_step} in '
          f'{os.path.join(workdir, "checkpoints")} has reached num_steps ({length}); '
          f'raise --config.{key} to train on')


def _epochs_line(config: ml_collections.ConfigDict, given_steps: int, num_train: int) -> str:
  """What num_epochs > 0 trains, said as the run starts; num_steps, if another, replaced."""
  per_epoch = steps_per_epoch(num_train, config.batch_size)
  line = (f'num_epochs={config.num_epochs}: training {config.num_steps} steps, '
          f'{config.num_epochs} epochs of {per_epoch} ({num_train} training images // '
          f'batch_size {config.batch_size}, the last {num_train % config.batch_size} of each '
          'epoch\'s order left out)')
  if given_steps != config.num_steps:
    line += f'; num_epochs replaces num_steps={given_steps}'
  return line


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
             eval_seconds: float, results: dict | None, checkpoint: str,
             per_call: int = 1) -> str:
  """The line that ends a run: its speed, the last evaluation and where the checkpoint is.

  `compile_seconds` is the first call's time (`per_call` steps), `train_seconds` the others'.
  """
  resumed = f' (from step {start_step})' if start_step else ''
  rate = (f'{(steps - per_call) / max(train_seconds, 1e-9):.1f} steps/s after '
          if steps > per_call else '')
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


def _check_finite(step: int, metrics: dict, placement: Placement, manager,
                  per_call: int = 1) -> None:
  """Raises RunStopped if the loss or gradient norm of the call that ended at step `step`
  (`per_call` steps) was not finite."""
  values = placement.get(metrics)
  if not values['nonfinite']:
    return
  quantity, value = next((name, values[key]) for key, name in
                         (('loss', 'loss'), ('grad_norm', 'gradient norm'))
                         if not np.isfinite(values[key]))
  manager.wait_until_finished()
  last = manager.latest_step()
  kept = f'the last checkpoint (step {last}) is kept' if last else 'no checkpoint was saved'
  where = f'at step {step}' if per_call == 1 else f'in steps {step - per_call + 1}-{step}'
  raise Diverged(f'non-finite {quantity} ({value}) {where}; stopped, {kept}; try '
                 f'--config.grad_clip_norm=1.0, a lower learning_rate, or '
                 f"--config.nonfinite=skip", step)


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



if __name__ == '__main__':  # the command line lives on top, in gon_jax.cli, which imports this
  sys.exit('error: python -m gon_jax.train is not a command; run python train.py or gon-train '
           '(the same flags)')
