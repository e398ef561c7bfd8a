"""What train.py and eval.py share: flags, multi-process start-up, one-line errors."""

import os
import sys
import traceback
from typing import Any, Callable

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from gon_jax.errors import parse_flags_or_exit, run_reporting_errors

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (configs/*.py).',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Folder for checkpoints, metrics and images.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None,
    'host:port of process 0 for a multi-process run (jax.distributed.initialize); '
    'leave unset on clusters that jax detects by itself, and for one process.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes in a multi-process run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process in a multi-process run.')
_DISTRIBUTED = flags.DEFINE_bool('distributed', False,
                                 'Call jax.distributed.initialize() (auto-detected clusters).')
flags.mark_flags_as_required(['config', 'workdir'])

def initialize_distributed() -> None:
  """Joins a multi-process run when the flags ask for one."""
  if _COORDINATOR.value is None and not _DISTRIBUTED.value:
    return
  # CPU devices need a collectives backend to all-reduce across processes;
  # the setting does not affect GPUs or TPUs.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                             num_processes=_NUM_PROCESSES.value,
                             process_id=_PROCESS_ID.value)


def run(main: Callable[[ml_collections.ConfigDict, str], Any]) -> None:
  """Runs `main(config, workdir)` as an absl app."""

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
    if not flags.FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    initialize_distributed()
    try:
      run_reporting_errors(main, _CONFIG.value, _WORKDIR.value)
    except Exception as err:  # pylint: disable=broad-except
      if jax.process_count() == 1:
        raise
      # In a multi-process run, exit at once: jax's exit handler would wait
      # for a lost process at a shutdown barrier until the heartbeat timeout,
      # then abort with a page of C++ logs.
      lost = isinstance(err, jax.errors.JaxRuntimeError) or 'Gloo' in str(err)
      if not lost:  # a bug: keep its traceback
        traceback.print_exc()
      reason = ' '.join(str(err).split())[:200]
      print(f'error: process {jax.process_index()} lost the other processes of the run '
            f'({reason}); the last checkpoint is kept: start every process again with the '
            'same command to resume' if lost else
            f'error: process {jax.process_index()} failed ({reason})',
            file=sys.stderr, flush=True)
      os._exit(1)  # pylint: disable=protected-access

  app.run(_main, flags_parser=parse_flags_or_exit)
