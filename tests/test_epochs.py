"""Training length in epochs (num_epochs) and the per-epoch records of a run (epochs.jsonl)."""

import contextlib
import io
import json
import shutil

import ml_collections
import numpy as np
import pytest

import testing_utils
from gon_jax import data, saved_config
from gon_jax.config import base_config, steps_for, steps_per_epoch, validate, with_resolved_steps
from gon_jax.errors import ConfigError
from gon_jax.epoch_losses import PER_STEP, EpochLosses
from gon_jax.train import train_and_evaluate


def test_an_epoch_is_the_steps_batch_indices_takes_for_one_pass():
  # 100 examples in batches of 16: 6 steps an epoch, the last 4 examples of each order left out.
  assert steps_per_epoch(100, 16) == 6
  first_epoch = np.concatenate([data.batch_indices(100, 16, 0, step) for step in range(6)])
  assert len(set(first_epoch.tolist())) == 96  # one pass, each example at most once
  next_epoch = np.concatenate([data.batch_indices(100, 16, 0, step) for step in range(6, 12)])
  assert sorted(first_epoch.tolist()) != sorted(next_epoch.tolist())  # another permutation
  config = base_config()
  config.batch_size, config.num_steps, config.num_epochs = 16, 1000, 3
  assert steps_for(config, 100) == 18
  config.num_epochs = 0
  assert steps_for(config, 100) == 1000  # 0: num_steps
  config.batch_size, config.num_epochs = 64, 500
  assert steps_for(config, 60_000) == 500 * 937  # MNIST: 60,000 // 64 = 937 (32 left out)
  config.batch_size, config.num_epochs = 128, 1
  with pytest.raises(ConfigError, match='an epoch of 100 training images has no step of '
                     'batch_size 128'):
    steps_for(config, 100)


def test_num_epochs_replaces_num_steps_and_the_resolved_steps_are_checked():
  config = base_config()
  config.batch_size, config.num_steps, config.num_epochs = 16, 1000, 2
  config.warmup_steps = 5000  # above num_steps, but not above the epochs' steps: not refused
  validate(config, num_devices=1)
  with pytest.raises(ConfigError, match=r'warmup_steps 5000 must be in \[0, num_steps 12 '
                     r'\(2 epochs of 6 steps\)\]'):
    with_resolved_steps(config, 100)
  config.warmup_steps = 0
  resolved = with_resolved_steps(config, 100)
  assert (resolved.num_steps, resolved.num_epochs) == (12, 2)
  assert config.num_steps == 1000  # the given config is left as it was
  config.performance.steps_per_call = 5
  config.log_every = config.eval_every = config.checkpoint_every = 5
  with pytest.raises(ConfigError, match=r'^num_steps=12 \(2 epochs of 6 steps\) is not a '
                     r'multiple of performance.steps_per_call=5$'):
    with_resolved_steps(config, 100)
  config.num_epochs = 0
  assert with_resolved_steps(config, 100) is config


@pytest.mark.parametrize('value', [-1, 2.5, True, '3'])
def test_num_epochs_must_be_a_whole_number(value):
  # Built from a dict, as a config file may build it: any type gets through to validate.
  config = ml_collections.ConfigDict({**base_config().to_dict(), 'num_epochs': value})
  with pytest.raises(ConfigError) as refused:
    validate(config, num_devices=1)
  assert str(refused.value) == (f'num_epochs={value!r}: use a whole number of epochs, or 0 to '
                                'train num_steps steps')


def test_epoch_eval_examples_is_checked():
  config = base_config()
  config.epoch_eval_examples = -2
  with pytest.raises(ConfigError, match=r'^epoch_eval_examples=-2: use -1'):
    validate(config, num_devices=1)


def test_num_epochs_is_free_like_num_steps_and_the_recipe_under_cosine(tmp_path):
  saved = base_config()
  saved_config.save(saved, str(tmp_path))
  given = saved.copy_and_resolve_references()
  given.num_epochs, given.epoch_eval_examples = 10, 500
  changes = saved_config.compare_with_saved(given, str(tmp_path))
  assert [(c.key, c.recipe) for c in changes] == [('epoch_eval_examples', False),
                                                  ('num_epochs', False)]
  given.lr_schedule = 'cosine'
  with pytest.raises(ConfigError, match="num_epochs 0 -> 10 \\(with lr_schedule 'cosine', "
                     "num_epochs sets the learning rate's decay"):
    saved_config.compare_with_saved(given, str(tmp_path))


def _calls(losses, per_call, nonfinite=()):
  """Fake metrics, as `get` returns them, of calls of `per_call` steps over `losses` (step s's
  loss is losses[s - 1]): `[(the call's last step, metrics)]`; a call of several steps has
  each one's under PER_STEP."""
  calls = []
  for end in range(per_call, len(losses) + 1, per_call):
    steps = range(end - per_call + 1, end + 1)
    values = {'reconstruction': np.array([losses[s - 1] for s in steps], np.float32),
              'nonfinite': np.array([float(s in nonfinite) for s in steps], np.float32)}
    shown = {name: value[-1] for name, value in values.items()}
    calls.append((end, shown if per_call == 1 else {**shown, PER_STEP: values}))
  return calls


def _records(losses, steps_per_epoch, per_call, nonfinite=()):
  epochs, records = EpochLosses(steps_per_epoch), []
  for step, metrics in _calls(losses, per_call, nonfinite):
    epochs.add(step, metrics, get=lambda tree: tree)
    records += epochs.pop_ended(step, per_call, get=lambda tree: tree)
  return records


def test_epoch_means_are_exact_for_any_steps_per_call():
  losses = np.arange(1, 13, dtype=np.float32)  # steps 1..12, loss = step
  expected = [{'epoch': 1, 'step': 5, 'train_loss': 3.0, 'train_steps': 5},
              {'epoch': 2, 'step': 10, 'train_loss': 8.0, 'train_steps': 5}]
  assert _records(losses[:10], 5, 1) == expected
  # Calls of 2 steps: epoch 1 ends inside the call of steps 5-6, its mean is still of 1-5.
  assert _records(losses[:10], 5, 2) == expected
  # Calls of 4 steps over epochs of 2: each call ends two epochs.
  assert [r['train_loss'] for r in _records(losses[:8], 2, 4)] == [1.5, 3.5, 5.5, 7.5]
  # A step that was not finite (nonfinite='skip') is left out of the mean, and counted.
  losses[2] = np.nan
  assert _records(losses[:5], 5, 1, nonfinite=(3,)) == [
      {'epoch': 1, 'step': 5, 'train_loss': 3.0, 'train_steps': 4, 'skipped_steps': 1}]


def test_the_sums_of_an_epoch_under_way_carry_over_a_resumption(tmp_path):
  losses = np.linspace(1, 2, 10, dtype=np.float32)
  straight = _records(losses, 5, 1)
  identity = lambda tree: tree  # pylint: disable=unnecessary-lambda-assignment
  epochs = EpochLosses(5)
  for step, metrics in _calls(losses, 1)[:7]:
    epochs.add(step, metrics, identity)
    epochs.pop_ended(step, 1, identity)
  epochs.save_partial(str(tmp_path), 7, identity)  # the checkpoint of step 7
  resumed = EpochLosses.resume(str(tmp_path), 5, 7)
  records = []
  for step, metrics in _calls(losses, 1)[7:]:
    resumed.add(step, metrics, identity)
    records += resumed.pop_ended(step, 1, identity)
  assert records == straight[1:]  # the same mean, to the last bit
  # Without the sums of step 7 (a lost file), the record says which steps it averaged.
  (tmp_path / 'epoch_partial.json').unlink()
  resumed = EpochLosses.resume(str(tmp_path), 5, 7)
  for step, metrics in _calls(losses, 1)[7:]:
    resumed.add(step, metrics, identity)
    records = resumed.pop_ended(step, 1, identity)
  assert records[0]['train_steps'] == 3 and records[0]['first_step'] == 8
  np.testing.assert_allclose(records[0]['train_loss'], np.mean(losses[7:10]), rtol=1e-6)


def _tiny_epoch_config(idx_dir):
  """tiny_config on `idx_dir`'s 36 training images: epochs of 36 // 8 = 4 steps, 2 of them."""
  config = testing_utils.tiny_config(idx_dir, norm='layer')
  config.num_epochs = 2
  config.log_every = config.eval_every = config.checkpoint_every = 1000
  return config


@pytest.fixture(scope='module')
def small_blobs(tmp_path_factory):
  return testing_utils.write_blob_digits(tmp_path_factory.mktemp('small_blobs'), num_train=36,
                                         num_test=16)


def _epoch_records(workdir):
  return [json.loads(line) for line in (workdir / 'epochs.jsonl').read_text().splitlines()]


@pytest.mark.slow
def test_a_run_in_epochs_records_each_epoch_and_resumes_mid_epoch_exactly(small_blobs, tmp_path):
  config = _tiny_epoch_config(small_blobs)
  stderr = io.StringIO()
  with contextlib.redirect_stderr(stderr):
    train_and_evaluate(config, str(tmp_path / 'straight'))
  assert stderr.getvalue().startswith(
      'num_epochs=2: training 8 steps, 2 epochs of 4 (36 training images // batch_size 8, the '
      "last 4 of each epoch's order left out); num_epochs replaces num_steps=4\n")
  straight = _epoch_records(tmp_path / 'straight')
  assert [(r['epoch'], r['step'], r['train_steps'], r['test_images']) for r in straight] == [
      (1, 4, 4, 16), (2, 8, 4, 16)]
  assert all(np.isfinite([r['train_loss'], r['test_loss']]).all() for r in straight)
  assert straight[1]['train_loss'] < straight[0]['train_loss']  # it learns
  saved = json.loads((tmp_path / 'straight' / 'config.json').read_text())
  assert (saved['num_epochs'], saved['num_steps']) == (2, 8)  # the resolved steps recorded
  metrics = [json.loads(line) for line in
             (tmp_path / 'straight' / 'metrics.jsonl').read_text().splitlines()]
  assert [(m['step'], m['epoch/epoch']) for m in metrics if 'epoch/train_loss' in m] == [
      (4, 1), (8, 2)]
  final = [m for m in metrics if m['step'] == 8 and 'test/sse' in m][0]
  assert straight[1]['test_loss'] == final['test/sse']  # the final evaluation, not another

  # Stopped at step 6, mid-epoch 2 (num_steps, then epochs: both free), then resumed.
  resumed = tmp_path / 'resumed'
  config.num_epochs, config.num_steps = 0, 6
  train_and_evaluate(config, str(resumed))
  assert [r['epoch'] for r in _epoch_records(resumed)] == [1]
  shutil.copytree(resumed, tmp_path / 'lost_sums')
  with open(resumed / 'epochs.jsonl', 'a', encoding='utf-8') as f:
    f.write(json.dumps({**straight[1], 'train_loss': 0.0}) + '\n')  # past the checkpoint
  config.num_epochs = 2
  train_and_evaluate(config, str(resumed))
  assert _epoch_records(resumed) == straight  # nothing lost, nothing twice, the same bits

  (tmp_path / 'lost_sums' / 'epoch_partial.json').unlink()
  train_and_evaluate(config, str(tmp_path / 'lost_sums'))
  lost = _epoch_records(tmp_path / 'lost_sums')[1]
  assert (lost['train_steps'], lost['first_step'], lost['test_loss']) == (
      2, 7, straight[1]['test_loss'])


@pytest.mark.slow
def test_steps_per_call_records_the_same_epochs(small_blobs, tmp_path):
  # 36 // 8 = 4 steps an epoch in calls of 4, and of 8: two epochs end in each call.
  config = _tiny_epoch_config(small_blobs)
  config.log_every = config.eval_every = config.checkpoint_every = 8
  train_and_evaluate(config, str(tmp_path / 'single'))
  config.performance.steps_per_call, config.parallel = 8, 'pmap'  # PER_STEP per device too
  train_and_evaluate(config, str(tmp_path / 'scanned'))
  single, scanned = (_epoch_records(tmp_path / name) for name in ('single', 'scanned'))
  assert [(r['epoch'], r['step'], r['train_steps']) for r in scanned] == [(1, 4, 4), (2, 8, 4)]
  np.testing.assert_allclose([r['train_loss'] for r in scanned],
                             [r['train_loss'] for r in single], rtol=1e-4)
  assert scanned[0]['test_step'] == 8 and 'test_step' not in scanned[1]  # tested after the call
