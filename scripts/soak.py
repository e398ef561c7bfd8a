"""Soak test: training killed again and again ends where an uninterrupted run ends.

  python scripts/soak.py --steps 2000 --workdir runs/soak

Trains configs/siren_mnist_tiny.py on MNIST (IDX files) with train.py,
killing it at random moments (SIGKILL, and now and then SIGTERM) and
starting the same command again until it finishes; then trains the same
config without interruption and compares the two final train states bit
for bit. Prints one JSON line; exits 1 if they differ.
"""

import argparse
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
from absl import logging

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gon_jax.configs import siren_mnist_tiny  # pylint: disable=wrong-import-position
from gon_jax import checkpoints  # pylint: disable=wrong-import-position
from gon_jax.config import to_settings  # pylint: disable=wrong-import-position
from gon_jax.state import setup  # pylint: disable=wrong-import-position


def _command(args, workdir):
  return [sys.executable, str(REPO / 'train.py'), '--config', str(REPO / 'configs/siren_mnist_tiny.py'),
          '--workdir', str(workdir), '--config.data.source=idx', f'--config.data.dir={args.data_dir}',
          f'--config.num_steps={args.steps}', f'--config.checkpoint_every={args.checkpoint_every}',
          f'--config.eval_every={args.steps}', '--config.log_every=10',
          '--config.train_eval_examples=500']


def _final_state(args, workdir):
  config = siren_mnist_tiny.get_config()
  config.data.source, config.data.dir = 'idx', args.data_dir
  _, _, template = setup(to_settings(config))
  state, step = checkpoints.restore_latest(
      checkpoints.manager(str(workdir), read_only=True), template)
  return state, step


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=2000)
  parser.add_argument('--checkpoint_every', type=int, default=100)
  parser.add_argument('--data_dir', default='',
                      help="folder of MNIST's IDX files; '' for the download cache")
  parser.add_argument('--workdir', default='runs/soak')
  parser.add_argument('--max_wait', type=float, default=30.0,
                      help='kill a uniform random 0..max_wait seconds after training resumed')
  parser.add_argument('--seed', type=int, default=0, help='seeds the kill times')
  args = parser.parse_args()
  logging.set_verbosity(logging.ERROR)  # orbax warns about read-only managers
  os.makedirs(args.workdir, exist_ok=True)
  rng = random.Random(args.seed)
  interrupted = pathlib.Path(args.workdir) / 'interrupted'
  reference = pathlib.Path(args.workdir) / 'uninterrupted'
  env = dict(os.environ, JAX_PLATFORMS='cpu')

  kills = {'SIGKILL': 0, 'SIGTERM': 0}
  metrics = interrupted / 'metrics.jsonl'
  start = time.time()
  while True:
    with open(pathlib.Path(args.workdir) / 'interrupted.log', 'a', encoding='utf-8') as log:
      logged = metrics.stat().st_size if metrics.exists() else 0
      process = subprocess.Popen(_command(args, interrupted), stdout=log, stderr=log, env=env)
      # Kill a random time after this start has trained and logged some steps
      # (start-up alone, compiling, takes seconds).
      while process.poll() is None and (metrics.stat().st_size if metrics.exists() else 0) == logged:
        time.sleep(0.1)
      try:
        code = process.wait(timeout=rng.uniform(0.0, args.max_wait))
      except subprocess.TimeoutExpired:
        name = 'SIGTERM' if rng.random() < 0.2 else 'SIGKILL'
        process.send_signal(getattr(signal, name))
        code = process.wait()
        kills[name] += 1
        continue
    if code != 0:
      print(json.dumps({'error': f'train.py exited with {code}; see {interrupted}.log'}))
      sys.exit(1)
    break
  interrupted_seconds = time.time() - start
  start = time.time()
  with open(pathlib.Path(args.workdir) / 'uninterrupted.log', 'a', encoding='utf-8') as log:
    subprocess.run(_command(args, reference), stdout=log, stderr=log, env=env, check=True)
  reference_seconds = time.time() - start

  (a, step_a), (b, step_b) = _final_state(args, interrupted), _final_state(args, reference)
  leaves = list(zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
  identical = step_a == step_b == args.steps and all(np.array_equal(x, y) for x, y in leaves)
  print(json.dumps({
      'steps': args.steps, 'kills': kills, 'identical': bool(identical),
      'max_abs_difference': float(max(np.max(np.abs(np.asarray(x, np.float64) - y))
                                      for x, y in leaves)),
      'interrupted_seconds': round(interrupted_seconds), 'uninterrupted_seconds':
      round(reference_seconds), 'device': jax.devices()[0].device_kind}))
  sys.exit(0 if identical else 1)


if __name__ == '__main__':
  main()
