"""Each epoch's mean training loss and test loss: `<workdir>/epochs.jsonl` (EpochLosses).

The training loop (gon_jax.train) hands every call's per-step losses to an EpochLosses, which
keeps them on the device until an epoch ends, and writes one record per epoch; the curves over
epochs (the paper's Fig. 2c and App. E) are read back from that file (gon_jax.experiments.compare).
"""

import json
import os
from typing import Callable

import numpy as np

from gon_jax.metric_writer import json_line, read_jsonl, write_jsonl

# In `train_steps`' metrics: `{name: [K]}` of EpochLosses.METRICS, one value per step of the call.
PER_STEP = 'per_step'
EPOCHS_FILENAME = 'epochs.jsonl'  # in the workdir: one record per epoch (EpochLosses)
# In the workdir: the sums of the epoch under way at each recent checkpoint (EpochLosses).
EPOCH_PARTIAL_FILENAME = 'epoch_partial.json'


def epochs_ended(step: int, per_call: int, per_epoch: int) -> range:
  """The epochs whose last step is one of the call's, `step - per_call + 1` to `step` (epoch
  e ends at step e * per_epoch)."""
  return range((step - per_call) // per_epoch + 1, step // per_epoch + 1)


class EpochLosses:
  """Each epoch's mean training loss, for its record in `<workdir>/epochs.jsonl`.

  Epoch e is the steps (e - 1) * steps_per_epoch + 1 to e * steps_per_epoch (steps counted
  from 1, as the loop counts them). Its record: `{"epoch": e, "step": its last step,
  "train_loss": the mean over its steps of the training metric 'reconstruction' (the batch's
  mean summed squared error per image; the negative ELBO in nats for variational models),
  "train_steps": the steps averaged, "test_loss": the evaluator's 'sse' (or
  'negative_elbo_nats') after its last step, "test_images": on how many}`; "skipped_steps"
  when steps were not finite (under nonfinite='skip', left out of the mean), "first_step" when
  the steps averaged began later than the epoch (a resumed run without the sums of its
  checkpoint), "test_step" when the test loss is of a later step (steps_per_call does not
  divide the epoch: the first call's end after it); no test loss with epoch_eval_examples=0.

  The steps' metrics stay on the device until an epoch ends, a checkpoint is saved, or 1024
  calls wait: no transfer per step. At each checkpoint the sums of the epoch under way go to
  `<workdir>/epoch_partial.json`, keyed by the step, so that a run resumed from it records
  the same epochs as an uninterrupted run; resuming also drops the records of epochs that
  ended after the checkpoint (they are recorded again).
  """
  METRICS = ('reconstruction', 'nonfinite')  # of each step (PER_STEP, or the step's own)
  _MAX_PENDING = 1024

  def __init__(self, per_epoch: int, carried: dict | None = None):
    """`per_epoch`: train steps an epoch; `carried`: the sums of the epoch under way
    (`partial`), or None."""
    self.steps_per_epoch = per_epoch
    self._pending = []  # (the call's last step, its metrics on the device)
    # epoch -> {'first_step', 'train_steps', 'loss_sum', 'skipped_steps'}
    self._sums = {} if carried is None else {carried['epoch']: {
        key: value for key, value in carried.items() if key != 'epoch'}}

  @classmethod
  def resume(cls, workdir: str, per_epoch: int, start_step: int) -> 'EpochLosses':
    """The sums of a run that goes on from `start_step` in `workdir` (none from step 0 or an
    epoch's end); epochs.jsonl keeps the records of the epochs that ended by then."""
    path = os.path.join(workdir, EPOCHS_FILENAME)
    if os.path.exists(path):
      write_jsonl(path, [r for r in read_jsonl(path) if r['step'] <= start_step])
    carried = None
    if start_step % per_epoch:
      carried = _read_partials(workdir).get(str(start_step))
    return cls(per_epoch, carried)

  def epoch_of(self, step: int) -> int:
    """The epoch that step `step` (from 1) belongs to."""
    return (step - 1) // self.steps_per_epoch + 1

  def add(self, step: int, metrics: dict, get: Callable) -> None:
    """Keeps the METRICS of the call that ended at `step` (device arrays, of one step or under
    PER_STEP of each; `get` brings them to the host when 1024 calls wait)."""
    per_step = metrics.get(PER_STEP, metrics)
    self._pending.append((step, {name: per_step[name] for name in self.METRICS}))
    if len(self._pending) >= self._MAX_PENDING:
      self._collect(get)

  def _collect(self, get: Callable) -> None:
    """Adds the waiting calls' losses to their epochs' sums, in float64, step by step."""
    for last, metrics in self._pending:
      values = get(metrics)
      losses, nonfinite = (np.atleast_1d(values[name]) for name in self.METRICS)
      for step, loss, skipped in zip(range(last - len(losses) + 1, last + 1), losses, nonfinite):
        sums = self._sums.setdefault(self.epoch_of(step), {
            'first_step': step, 'train_steps': 0, 'loss_sum': 0.0, 'skipped_steps': 0})
        if skipped:
          sums['skipped_steps'] += 1
        else:
          sums['train_steps'] += 1
          sums['loss_sum'] += float(loss)
    self._pending = []

  def pop_ended(self, step: int, per_call: int, get: Callable) -> list[dict]:
    """The records (without the test loss) of the epochs that ended in the call that ended at
    `step`; their sums are dropped."""
    self._collect(get)
    records = []
    for epoch in epochs_ended(step, per_call, self.steps_per_epoch):
      sums = self._sums.pop(epoch)
      record = {'epoch': epoch, 'step': epoch * self.steps_per_epoch,
                'train_loss': (sums['loss_sum'] / sums['train_steps'] if sums['train_steps']
                               else float('nan')),
                'train_steps': sums['train_steps']}
      if sums['skipped_steps']:
        record['skipped_steps'] = sums['skipped_steps']
      if sums['first_step'] != (epoch - 1) * self.steps_per_epoch + 1:
        record['first_step'] = sums['first_step']
      records.append(record)
    return records

  def write(self, workdir: str, record: dict) -> None:
    """Appends `record` to `<workdir>/epochs.jsonl`."""
    with open(os.path.join(workdir, EPOCHS_FILENAME), 'a', encoding='utf-8') as f:
      f.write(json_line(record) + '\n')

  def partial(self, get: Callable) -> dict | None:
    """The sums of the epoch under way, `{'epoch', 'first_step', 'train_steps', 'loss_sum',
    'skipped_steps'}`, or None at an epoch's end."""
    self._collect(get)
    if not self._sums:
      return None
    (epoch, sums), = self._sums.items()  # the ended epochs were popped
    return {'epoch': epoch, **sums}

  def save_partial(self, workdir: str, step: int, get: Callable) -> None:
    """Saves the sums of the epoch under way at the checkpoint of `step`, beside those of the
    checkpoints since the epoch before began (a resumption may find an older checkpoint)."""
    partial = self.partial(get)
    path = os.path.join(workdir, EPOCH_PARTIAL_FILENAME)
    kept = {key: value for key, value in _read_partials(workdir).items()
            if int(key) < step and value['epoch'] >= self.epoch_of(step)}
    if partial:
      kept[str(step)] = partial
    if not kept and not os.path.exists(path):
      return
    temporary = path + '.tmp'
    with open(temporary, 'w', encoding='utf-8') as f:
      json.dump(kept, f)
    os.replace(temporary, path)


def _read_partials(workdir: str) -> dict[str, dict]:
  """`{str(step): partial sums}` of `<workdir>/epoch_partial.json`; none if absent."""
  path = os.path.join(workdir, EPOCH_PARTIAL_FILENAME)
  if not os.path.exists(path):
    return {}
  with open(path, encoding='utf-8') as f:
    return json.load(f)
