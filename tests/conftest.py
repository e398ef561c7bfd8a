"""Two CPU devices for every test, so data-parallel code runs for real."""

import atexit
import os
import shutil
import tempfile

import chex
import jax
import pytest

import testing_utils

chex.set_n_cpu_devices(2)
# Compile without XLA's backend (LLVM) optimisations, in the tests and the scripts they start
# (XLA_FLAGS is inherited): the suite's programs are small and mostly compiled, not run
# (test_train, test_cli and test_baselines: 7.6 instead of 10.2 minutes on a 2-core CPU).
# Results stay within float rounding of the optimised programs'.
os.environ['XLA_FLAGS'] += ' --xla_backend_optimization_level=0'

# One XLA compilation cache for the session, shared with the train.py and
# eval.py processes the tests start (they inherit the environment): dozens of
# them compile the same small programs, which is most of the suite's time.
_CACHE = tempfile.mkdtemp(prefix='gon_jax_tests_xla_cache_')
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ.update(JAX_COMPILATION_CACHE_DIR=_CACHE,
                  JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0.3')
jax.config.update('jax_compilation_cache_dir', _CACHE)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.3)
# The decoded data cache ($XDG_CACHE_HOME/gon_jax/decoded) of the tests and of the processes
# they start: the session's own, not the user's ~/.cache.
_XDG_CACHE = tempfile.mkdtemp(prefix='gon_jax_tests_xdg_cache_')
atexit.register(shutil.rmtree, _XDG_CACHE, ignore_errors=True)
os.environ['XDG_CACHE_HOME'] = _XDG_CACHE


@pytest.fixture(scope='session')
def blob_dir(tmp_path_factory):
  """A tiny learnable IDX data set (see testing_utils.write_blob_digits)."""
  return testing_utils.write_blob_digits(tmp_path_factory.mktemp('blobs'))


@pytest.fixture(scope='session')
def tiny_run(blob_dir, tmp_path_factory):
  """`(workdir, config)`: a workdir with the checkpoint of step 2 of tiny_config (16x16
  images, latent 8, LayerNorm), one per test process (trained once: six modules use it).
  Tests may add to it (eval.py's eval/), never change or remove what training wrote: a test
  that must, copies it."""
  from gon_jax.train import train_and_evaluate  # pylint: disable=import-outside-toplevel
  workdir = tmp_path_factory.mktemp('run')
  config = testing_utils.tiny_config(blob_dir, norm='layer')
  config.num_steps = config.eval_every = 2
  train_and_evaluate(config, str(workdir))
  return workdir, config
