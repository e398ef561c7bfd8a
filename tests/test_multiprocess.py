"""Two processes on 127.0.0.1 (jax.distributed, CPU collectives gloo) train as one."""

import socket

import pytest

from gon_jax.config import to_settings
from gon_jax import checkpoints
from gon_jax.state import setup

from testing_utils import assert_runs_match, run_script, tiny_config


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _final_state(config, workdir):
  _, _, template = setup(to_settings(config))
  state, step = checkpoints.restore_latest(
      checkpoints.manager(str(workdir), read_only=True), template)
  assert step == config.num_steps
  return state


@pytest.mark.slow
@pytest.mark.parametrize('parallel', ['jit', 'pmap'])
def test_two_processes_match_one(blob_dir, tmp_path, parallel):
  flags = [f'--config.data.dir={blob_dir}', f'--config.parallel={parallel}',
           '--config.model.norm=batch']  # BatchNorm statistics must cross processes too
  single = run_script('train.py', tmp_path / 'one', *flags)
  assert single.returncode == 0, single.stderr[-2000:]

  address = f'127.0.0.1:{_free_port()}'
  workers = [run_script('train.py', tmp_path / 'two', *flags, f'--coordinator_address={address}',
                        '--num_processes=2', f'--process_id={i}', background=True)
             for i in range(2)]
  for worker in workers:
    _, stderr = worker.communicate(timeout=300)
    assert worker.returncode == 0, stderr[-2000:]

  config = tiny_config(blob_dir, norm='batch')
  config.num_steps = 3
  one, two = _final_state(config, tmp_path / 'one'), _final_state(config, tmp_path / 'two')
  assert_runs_match(two, one)  # float32 sums over two hosts round differently
