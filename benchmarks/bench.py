"""Benchmarks a config's train step; prints one JSON line per measurement.

  python benchmarks/bench.py --config configs/conv_mnist.py [--config.batch_size=128]
  python benchmarks/bench.py --all [--devices 2] [--data [--data_dir DIR]]

`--all` measures conv_mnist, vgon_mnist and siren_mnist at batch 64, each in
its own process (so that peak memory is the config's); `--devices N` also
runs each with data parallelism over N host devices
(XLA_FLAGS=--xla_force_host_platform_device_count=N) to show the scaling.

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
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import step_profile  # pylint: disable=wrong-import-position
from gon_jax import data  # pylint: disable=wrong-import-position
from gon_jax.config import to_settings, validate  # pylint: disable=wrong-import-position
from gon_jax.flops import train_step_flops  # pylint: disable=wrong-import-position
from gon_jax.parallel import make_placement  # pylint: disable=wrong-import-position
from gon_jax.state import setup  # pylint: disable=wrong-import-position
from gon_jax.train_step import compile_train_step, compile_train_steps  # pylint: disable=wrong-import-position

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.')
_ALL = flags.DEFINE_bool('all', False, 'Benchmark every config of ALL_CONFIGS, one process each.')
_DEVICES = flags.DEFINE_integer('devices', 1, 'Also run with data parallelism over this many '
                                'devices (host devices on CPU).')
_STEPS = flags.DEFINE_integer('steps', 50, 'Timed steps.')
_WARMUP = flags.DEFINE_integer('warmup', 5, 'Untimed steps after compiling.')
_PROFILE = flags.DEFINE_integer('profile', 0, 'Also trace this many steps and print where the '
                                'time goes, by pass and kind of operation (benchmarks/step_profile.py).')
_DATA = flags.DEFINE_bool('data', False, 'Also time steps fed by the real data pipeline '
                          '(config.data); otherwise random images stand in.')
_NUM_TRAIN = flags.DEFINE_integer('num_train', 60_000, "Training images: the size of GLO's latent "
                                  'table (other models ignore it).')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'With --data: read the four IDX files in this '
                                'folder (config.data.source=idx); unset: the config\'s data (MNIST downloads into the cache).')

REPO = pathlib.Path(__file__).resolve().parents[1]
# config -> (timed steps, warm-up steps): the SIREN's step takes over a second on a CPU.
_RESIDENT_IMAGES = 4096  # the random training split of a steps_per_call benchmark
ALL_CONFIGS = {'conv_mnist': (50, 5), 'vgon_mnist': (50, 5), 'siren_mnist': (10, 2)}


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


def compiled_step(config):
  """The config's train step compiled, with its initial state and a fixed random batch on device.

  Returns:
    `(compiled step, device state, device batch, placement, compile seconds)`.
  """
  settings = validate(config)  # as train.py: the parallel mode, the batch over the devices
  placement = make_placement(config.parallel)
  _, tx, host_state = setup(settings, _NUM_TRAIN.value)
  size, channels = config.data.image_size, config.model.channels
  rng = np.random.default_rng(0)
  fixed = {'image': rng.random((config.batch_size, size, size, channels), np.float32),
           'label': np.zeros(config.batch_size, np.int32),
           'index': np.arange(config.batch_size, dtype=np.int32)}
  state = placement.put_state(host_state)
  per_call = config.performance.steps_per_call
  if per_call == 1:
    step_fn, device_batch, extra = compile_train_step(settings, placement, tx), fixed, ()
  else:  # K steps a call over a device-resident set of random images, as train.py runs them
    step_fn = compile_train_steps(settings, placement, tx)
    train_set = {'image': rng.integers(0, 256, (_RESIDENT_IMAGES, size, size, channels), np.uint8),
                 'label': np.zeros(_RESIDENT_IMAGES, np.int32)}
    device_batch = next(data.call_indices(_RESIDENT_IMAGES, config.batch_size, config.seed,
                                          per_call))
    extra = (placement.put_state(train_set),)
  device_batch = placement.put_batch(device_batch)
  start = time.perf_counter()
  compiled = step_fn.lower(state, device_batch, *extra).compile()
  compile_seconds = time.perf_counter() - start
  if extra:
    call = compiled
    compiled = lambda state, batch: call(state, batch, *extra)  # pylint: disable=unnecessary-lambda-assignment
  return compiled, state, device_batch, placement, compile_seconds


def benchmark(config) -> dict:
  compiled, state, device_batch, placement, compile_seconds = compiled_step(config)
  per_call = config.performance.steps_per_call
  if per_call > 1 and (_DATA.value or _PROFILE.value):
    raise app.UsageError('--data and --profile time one step a call: leave '
                         'performance.steps_per_call at 1 with them')
  # Calls of K steps each (K = performance.steps_per_call): steps // K of them.
  warmup_calls, timed_calls = (max(1, steps // per_call) for steps in (_WARMUP.value, _STEPS.value))
  state, _ = _timed_steps(compiled, state, lambda: device_batch, warmup_calls)
  state, call_rate = _timed_steps(compiled, state, lambda: device_batch, timed_calls)
  fixed_rate = call_rate * per_call
  result = {
      'config': os.path.basename(config_flags.get_config_filename(flags.FLAGS['config'])),
      'backend': jax.default_backend(), 'devices': jax.device_count(),
      'device_kind': jax.devices()[0].device_kind, 'parallel': config.parallel,
      'batch_size': config.batch_size, 'steps_per_call': per_call,
      'compile_seconds': round(compile_seconds, 2),
      'steps_per_second': round(fixed_rate, 3),
  }
  if _DATA.value:
    if _DATA_DIR.value:
      config.data.source, config.data.dir = 'idx', _DATA_DIR.value
    images, labels = data.load_split(config.data, 'train', config.data.image_size,
                                     config.model.channels)
    batches = data.prefetch(data.train_batches(images, labels, config.batch_size, config.seed),
                            placement.put_batch)
    state, _ = _timed_steps(compiled, state, lambda: next(batches), _WARMUP.value)
    state, data_rate = _timed_steps(compiled, state, lambda: next(batches), _STEPS.value)
    batches.close()
    result['steps_per_second_real_data'] = round(data_rate, 3)
  if _PROFILE.value:
    if jax.default_backend() != 'cpu':
      raise app.UsageError('--profile reads the XLA:CPU trace (one event per operation run); '
                           f'on {jax.default_backend()} events time kernel launches, not kernels')
    breakdown = step_profile.profile(compiled, state, device_batch, _PROFILE.value)
    print(step_profile.format_table(breakdown))
    for name, step_pass, kind, ms in breakdown['top']:
      print(f'{ms:8.3f} ms  {step_pass:20s} {kind:14s} {name}')
    result['profile_ms'] = {key: (round(value, 3) if isinstance(value, float) else
                                  {k: round(v, 3) for k, v in value.items()})
                            for key, value in breakdown.items() if key in
                            ('step_ms', 'ops_ms', 'by_pass', 'by_kind')}
  step_flops = train_step_flops(to_settings(config))
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


def _in_subprocess(config_args: list[str], devices: int) -> None:
  """Runs this script on one config with `devices` host devices; echoes its JSON line."""
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  result = subprocess.run([sys.executable, __file__, *config_args], env=env, check=True,
                          capture_output=True, text=True)
  print(result.stdout.strip().splitlines()[-1], flush=True)


def _argv_without(*names: str) -> list[str]:
  """This command's arguments without the flags `names` (and their values)."""
  args, kept = iter(sys.argv[1:]), []
  for arg in args:
    name = arg.split('=', 1)[0]
    if name in names:
      if '=' not in arg and name != '--all':  # a value-taking flag: skip its value too
        next(args, None)
      continue
    kept.append(arg)
  return kept


def main(argv):
  del argv
  device_counts = sorted({1, _DEVICES.value})
  if _ALL.value:  # the other flags (--data, --data_dir, --profile) go to every run
    shared_args = _argv_without('--all', '--devices', '--steps', '--warmup', '--config')
    for name, (steps, warmup) in ALL_CONFIGS.items():
      for devices in device_counts:
        _in_subprocess(['--config', str(REPO / 'configs' / f'{name}.py'), f'--steps={steps}',
                        f'--warmup={warmup}', *shared_args], devices)
  elif _CONFIG.value is None:
    raise app.UsageError('give --config FILE or --all')
  elif _DEVICES.value > 1 and jax.device_count() == 1:
    for devices in device_counts:
      _in_subprocess(_argv_without('--devices'), devices)
  else:
    print(json.dumps(benchmark(_CONFIG.value)))


if __name__ == '__main__':
  app.run(main)
