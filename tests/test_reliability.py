"""Training that survives: kills, signals, kills during a checkpoint write,
non-finite steps, gradient clipping, a lost process."""

import os
import signal
import socket
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

import testing_utils
from gon_jax import checkpoints, data, train, train_step
from gon_jax.config import to_settings, validate
from gon_jax.errors import ConfigError, RunStopped
from gon_jax.parallel import AXIS, Placement
from gon_jax.state import learning_rate, make_optimizer, setup

STEPS = 200
FLAGS = [f'--config.num_steps={STEPS}', '--config.log_every=1', f'--config.eval_every={STEPS}',
         '--config.checkpoint_every=20']


def _config(blob_dir):
  config = testing_utils.tiny_config(blob_dir, norm='layer')  # = TINY_FLAGS on conv_mnist
  config.num_steps = STEPS
  return config


def _final_state(config, workdir):
  _, _, template = setup(to_settings(config))
  state, step = checkpoints.restore_latest(
      checkpoints.manager(str(workdir), read_only=True), template)
  assert step == STEPS
  return state


def _assert_bit_identical(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


def _logged_step(workdir) -> int:
  path = workdir / 'metrics.jsonl'
  if not path.exists():
    return 0
  lines = [line for line in path.read_text().splitlines() if line.strip()]
  return int(lines[-1].split(',')[0].split(':')[1]) if lines else 0


def _wait_for_step(workdir, process, step, timeout=120):
  start = time.time()
  while _logged_step(workdir) < step:
    assert process.poll() is None, 'training ended before it could be interrupted'
    assert time.time() - start < timeout
    time.sleep(0.01)


@pytest.fixture(scope='module')
def reference(blob_dir, tmp_path_factory):
  """The final state of an uninterrupted run."""
  workdir = tmp_path_factory.mktemp('uninterrupted')
  result = testing_utils.run_script('train.py', workdir, f'--config.data.dir={blob_dir}', *FLAGS)
  assert result.returncode == 0, result.stderr[-2000:]
  return _final_state(_config(blob_dir), workdir)


@pytest.mark.slow
def test_sigkill_then_same_command_is_bit_identical(blob_dir, tmp_path, reference):
  flags = [f'--config.data.dir={blob_dir}', *FLAGS]
  for kill_at in (30, 95):  # twice, at moments unrelated to the checkpoints
    process = testing_utils.run_script('train.py', tmp_path, *flags, background=True,
                                       stderr_path=tmp_path / 'stderr.txt')
    _wait_for_step(tmp_path, process, kill_at)
    process.kill()
    process.wait()
    assert _logged_step(tmp_path) < STEPS
  result = testing_utils.run_script('train.py', tmp_path, *flags)
  assert result.returncode == 0, result.stderr[-2000:]
  _assert_bit_identical(_final_state(_config(blob_dir), tmp_path), reference)


@pytest.mark.slow
@pytest.mark.parametrize('signal_name', ['SIGTERM', 'SIGINT'])
def test_signal_saves_then_resume_is_bit_identical(blob_dir, tmp_path, reference, signal_name):
  flags = [f'--config.data.dir={blob_dir}', *FLAGS, f'--config.checkpoint_every={STEPS}']
  process = testing_utils.run_script('train.py', tmp_path, *flags, background=True,
                                     stderr_path=tmp_path / 'stderr.txt')
  _wait_for_step(tmp_path, process, 10)
  process.send_signal(getattr(signal, signal_name))
  assert process.wait(timeout=60) == 128 + getattr(signal, signal_name)
  last = (tmp_path / 'stderr.txt').read_text().strip().splitlines()[-1]
  assert last.startswith(f'stopped: {signal_name} at step ') and 'resume' in last, last
  step = int(last.split(' at step ')[1].split(':')[0])
  assert 10 <= step < STEPS and os.listdir(tmp_path / 'checkpoints') == [str(step)]
  result = testing_utils.run_script('train.py', tmp_path, *flags)
  assert result.returncode == 0, result.stderr[-2000:]
  _assert_bit_identical(_final_state(_config(blob_dir), tmp_path), reference)


@pytest.mark.slow
def test_kill_during_a_checkpoint_write_keeps_the_previous_one(blob_dir, tmp_path, reference):
  flags = [f'--config.data.dir={blob_dir}', *FLAGS]
  process = testing_utils.run_script('tests/block_checkpoint_commit.py', tmp_path, *flags,
                                     background=True, env={'BLOCK_STEP': '60'},
                                     stderr_path=tmp_path / 'stderr.txt')
  assert process.stdout.readline().strip() == 'BLOCKED'  # step 60's files are being written
  process.kill()
  process.wait()
  names = os.listdir(tmp_path / 'checkpoints')
  assert '60' not in names and any(name.startswith('60.') for name in names), names  # torn
  config = _config(blob_dir)
  _, _, template = setup(to_settings(config))
  _, step = checkpoints.restore_latest(
      checkpoints.manager(str(tmp_path), read_only=True), template)
  assert step == 40
  result = testing_utils.run_script('train.py', tmp_path, *flags)
  assert result.returncode == 0, result.stderr[-2000:]
  _assert_bit_identical(_final_state(config, tmp_path), reference)


def _step_fn(config, num_train_examples=0):
  placement = Placement('jit', Mesh(np.array(jax.devices()[:1]), (AXIS,)))
  _, tx, state = setup(to_settings(config), num_train_examples)
  return train_step.compile_train_step(to_settings(config), placement, tx), placement, state


@pytest.mark.slow
@pytest.mark.parametrize('model', ['conv', 'glo'])
def test_a_non_finite_step_changes_nothing_but_the_counts(blob_dir, model):
  config = _config(blob_dir)
  config.model.name = model  # glo: the latent table guards its batch's rows itself
  images, labels = data.load_split(config.data, 'train', config.data.image_size)
  step_fn, placement, state = _step_fn(config, len(images))
  batches = data.train_batches(images, labels, config.batch_size, config.seed)
  state, _ = step_fn(placement.put_state(state), placement.put_batch(next(batches)))
  state = placement.get(state)  # a finite step first: GLO's rows and moments are not zero
  batch = next(batches)
  batch['image'] = batch['image'].copy()
  batch['image'][0, 0, 0, 0] = np.nan
  before = jax.tree.map(np.copy, state)
  after, metrics = step_fn(placement.put_state(state), placement.put_batch(batch))
  after, metrics = placement.get((after, metrics))
  assert metrics['nonfinite'] == 1.0 and metrics['skipped_steps'] == 1.0
  assert not np.isfinite(metrics['loss'])
  assert int(after.step) == 2 and int(after.skipped_steps) == 1
  _assert_bit_identical((after.params, after.opt_state, after.batch_stats, after.latents),
                        (before.params, before.opt_state, before.batch_stats, before.latents))
  if model == 'glo':
    assert np.any(before.latents['count'] == 1)  # the first step moved rows, the second none


@pytest.mark.slow
def test_non_finite_run_stops_or_skips(blob_dir, tmp_path):
  config = _config(blob_dir)
  config.num_steps, config.checkpoint_every, config.eval_every = 6, 1, 6
  config.learning_rate = 3e38  # the first update overflows the parameters' arithmetic
  with pytest.raises(RunStopped, match=r'non-finite (loss|gradient norm) .* at step 2; '
                     r'stopped, the last checkpoint \(step 1\) is kept') as stopped:
    train.train_and_evaluate(config, str(tmp_path / 'stop'))
  assert stopped.value.exit_code == 1
  config.nonfinite = 'skip'
  state = train.train_and_evaluate(config, str(tmp_path / 'skip'))
  assert int(state.step) == 6 and int(state.skipped_steps) == 5


def test_gradient_clipping_by_global_norm(blob_dir):
  config = _config(blob_dir)
  config.grad_clip_norm = 0.5
  params = {'w': jnp.ones(4)}
  tx = make_optimizer(to_settings(config).optimizer)
  _, opt_state = tx.update({'w': 100.0 * jnp.ones(4)}, tx.init(params), params)
  first_moment = opt_state[1][0].mu['w']  # Adam's mean is (1 - b1) * the clipped gradient
  np.testing.assert_allclose(jnp.linalg.norm(first_moment), 0.1 * 0.5, rtol=1e-5)


@pytest.mark.slow
def test_losing_a_process_ends_the_other_quickly(blob_dir, tmp_path):
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    address = f'127.0.0.1:{s.getsockname()[1]}'
  flags = [f'--config.data.dir={blob_dir}', *FLAGS, '--config.num_steps=100000',
           f'--coordinator_address={address}', '--num_processes=2']
  workers = [testing_utils.run_script('train.py', tmp_path, *flags, f'--process_id={i}',
                                      background=True, stderr_path=tmp_path / f'stderr{i}.txt')
             for i in range(2)]
  _wait_for_step(tmp_path, workers[0], 10)
  workers[1].kill()
  start = time.time()
  assert workers[0].wait(timeout=60) == 1
  assert time.time() - start < 30
  last = (tmp_path / 'stderr0.txt').read_text().strip().splitlines()[-1]
  assert last.startswith('error: process 0 lost the other processes of the run'), last


def test_learning_rate_schedules(blob_dir):
  config = _config(blob_dir)
  config.learning_rate, config.num_steps = 1e-3, 100
  # constant: a float, so no schedule state
  assert learning_rate(to_settings(config).optimizer) == 1e-3
  config.warmup_steps = 10
  values = [float(learning_rate(to_settings(config).optimizer)(i)) for i in (0, 5, 10, 99)]
  np.testing.assert_allclose(values, [0.0, 5e-4, 1e-3, 1e-3], rtol=1e-6)
  config.lr_schedule = 'cosine'
  values = [float(learning_rate(to_settings(config).optimizer)(i)) for i in (5, 10, 55, 100)]
  np.testing.assert_allclose(values, [5e-4, 1e-3, 5e-4, 0.0], rtol=1e-5, atol=1e-9)
  config.warmup_steps = 101
  with pytest.raises(ConfigError, match=r'warmup_steps 101 must be in \[0, num_steps 100\]'):
    validate(config)
  config.warmup_steps, config.lr_schedule = 0, 'linear'
  with pytest.raises(ConfigError, match="unknown lr_schedule 'linear'; valid: constant, cosine"):
    validate(config)
