"""Benchmarks one config's train step; prints one JSON line.

  python benchmarks/bench.py --config configs/conv_mnist.py [--config.batch_size=128]

Reports the compile time, steps per second after warm-up (on a fixed batch
and, with --data, fed by the real input pipeline), peak memory (the device's
peak where the backend tracks it, GPU or TPU, and the process's peak resident
memory: host RAM, which is the device memory on CPU), the model FLOPs of a
step counted from the layer sizes (gon_jax/flops.py), and, measured in the
same run, the float32 matrix-multiply throughput of the first device, so that
`model_flops_ratio` (model FLOP/s over matmul FLOP/s) compares across machines.
"""

import json
import os
import pathlib
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from gon_jax import data  # pylint: disable=wrong-import-position
from gon_jax.flops import train_step_flops  # pylint: disable=wrong-import-position
from gon_jax.parallel import make_placement  # pylint: disable=wrong-import-position
from gon_jax.state import setup  # pylint: disable=wrong-import-position
from gon_jax.train import compile_train_step  # pylint: disable=wrong-import-position

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.')
_STEPS = flags.DEFINE_integer('steps', 50, 'Timed steps.')
_WARMUP = flags.DEFINE_integer('warmup', 5, 'Untimed steps after compiling.')
_DATA = flags.DEFINE_bool('data', False, 'Also time steps fed by the real data pipeline '
                          '(config.data); otherwise random images stand in.')
flags.mark_flag_as_required('config')


def _timed_steps(step_fn, state, next_batch, num_steps):
  start = time.perf_counter()
  for _ in range(num_steps):
    state, metrics = step_fn(state, next_batch())
  jax.block_until_ready(metrics)
  return state, num_steps / (time.perf_counter() - start)


def matmul_flops_per_second(size: int = 4096, repeats: int = 5) -> float:
  """Best float32 FLOP/s of a jitted `[size, size] @ [size, size]` on the default device."""
  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
  matmul = jax.jit(lambda x, y: x @ y)
  jax.block_until_ready(matmul(a, a))
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(matmul(a, a))
    best = min(best, time.perf_counter() - start)
  return 2 * size ** 3 / best


def benchmark(config) -> dict:
  placement = make_placement(config.parallel, config.batch_size)
  _, tx, host_state = setup(config)
  size, channels = config.data.image_size, config.model.channels
  rng = np.random.default_rng(0)
  fixed = {'image': rng.random((config.batch_size, size, size, channels), np.float32),
           'label': np.zeros(config.batch_size, np.int32),
           'index': np.arange(config.batch_size, dtype=np.int32)}
  step_fn = compile_train_step(config, placement, tx)
  state = placement.put_state(host_state)
  device_batch = placement.put_batch(fixed)

  start = time.perf_counter()
  compiled = step_fn.lower(state, device_batch).compile()
  compile_seconds = time.perf_counter() - start
  state, _ = _timed_steps(compiled, state, lambda: device_batch, _WARMUP.value)
  state, fixed_rate = _timed_steps(compiled, state, lambda: device_batch, _STEPS.value)
  result = {
      'config': os.path.basename(config_flags.get_config_filename(flags.FLAGS['config'])),
      'backend': jax.default_backend(), 'devices': jax.device_count(),
      'device_kind': jax.devices()[0].device_kind, 'parallel': config.parallel,
      'batch_size': config.batch_size, 'compile_seconds': round(compile_seconds, 2),
      'steps_per_second': round(fixed_rate, 3),
  }
  if _DATA.value:
    images, labels = data.load_split(config.data, 'train', config.data.image_size)
    batches = data.train_batches(images, labels, config.batch_size, config.seed)
    state, data_rate = _timed_steps(compiled, state,
                                    lambda: placement.put_batch(next(batches)), _STEPS.value)
    result['steps_per_second_real_data'] = round(data_rate, 3)
  step_flops = train_step_flops(config)
  machine = matmul_flops_per_second()
  result.update(model_gflop_per_step=round(step_flops / 1e9, 3),
                model_gflops=round(step_flops * fixed_rate / 1e9, 1),
                matmul_gflops=round(machine / 1e9, 1),
                model_flops_ratio=round(step_flops * fixed_rate / machine, 3))
  stats = jax.devices()[0].memory_stats() or {}
  result['peak_device_mb'] = (round(stats['peak_bytes_in_use'] / 2**20, 1)
                              if 'peak_bytes_in_use' in stats else None)
  result['peak_host_rss_mb'] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
  return result


def main(argv):
  del argv
  print(json.dumps(benchmark(_CONFIG.value)))


if __name__ == '__main__':
  app.run(main)
