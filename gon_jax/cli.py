"""The command line of training and evaluation: flags, help, multi-process start-up,
one-line errors. train.py / eval.py and `gon-train` / `gon-eval` start here. The top layer:
nothing in the library imports it, so importing the rest of gon_jax defines no flags."""

import os
import signal
import sys
import traceback
from typing import Any, Callable, Sequence

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from gon_jax.errors import run_reporting_errors
from gon_jax.evaluate import evaluate_checkpoint
from gon_jax.flag_parsing import parse_flags_or_exit
from gon_jax.train import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, "A packaged config's name (siren_mnist; see gon_jax/configs) or a config "
    "file's path; default: the config the workdir was trained with (WORKDIR/config.json).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Folder for checkpoints, metrics and images.')
_ALLOW_RECIPE_CHANGE = flags.DEFINE_bool(
    'allow_recipe_change', False,
    'Resume a workdir with a config that changes its recipe (what is trained: optimiser, '
    'schedule, model, losses, GON options, data, seed, batch size), recording the change in '
    'WORKDIR/config_history.jsonl; without it, such a restart is refused. num_steps and '
    'num_epochs (unless lr_schedule is cosine), cadences and evaluation settings may change '
    'without it '
    '(docs/reliability.md).')
_TRAIN_ONLY_FLAGS = ('allow_recipe_change',)  # in train.py's --help only; refused elsewhere
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None,
    'host:port of process 0 for a multi-process run (jax.distributed.initialize); '
    'leave unset on clusters that jax detects by itself, and for one process.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes in a multi-process run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process in a multi-process run.')
_DISTRIBUTED = flags.DEFINE_bool('distributed', False,
                                 'Call jax.distributed.initialize() (auto-detected clusters).')
_REQUIRED = ('config', 'workdir')  # --config is filled in from the workdir when left out
flags.mark_flags_as_required(_REQUIRED)

# absl's --help lists the flags of the main module only (train.py has none),
# and absl's help flags exit with status 1: these print our help, exit 0.
_HELP_ARGS = ('-h', '--help', '-help', '-?', '--helpshort', '-helpshort')
_HELPFULL_ARGS = ('--helpfull', '-helpfull')
_HELP_SECTIONS = (
    ('flags', (('config', 'NAME_OR_FILE'), ('workdir', 'DIR'), ('allow_recipe_change', None))),
    ('multi-process runs (leave these out for one process)',
     (('coordinator_address', 'HOST:PORT'), ('num_processes', 'N'), ('process_id', 'I'),
      ('distributed', None))),
)


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


TRAIN_USAGE = """Trains a GON: gon-train --config NAME_OR_FILE --workdir DIR.

  gon-train --config conv_mnist --workdir runs/conv_mnist
  python train.py --config configs/conv_mnist.py --workdir runs/conv_mnist   # the same

Any config value can be overridden on the command line, e.g. --config.batch_size=128;
each config's docstring gives its run command. Started again with the same command
(or with --workdir alone), training resumes from the last checkpoint in DIR."""

EVAL_USAGE = """Evaluates the latest checkpoint of a workdir on the test split.

  gon-eval --workdir runs/conv_mnist        # the config it was trained with
  python eval.py --workdir runs/conv_mnist  # the same

Writes DIR/eval/: metrics.json, reconstructions.png, interpolation.png, samples.png,
and for some models superres.png and latents.png; the metrics also go to TensorBoard
(DIR/tensorboard, eval/...). Prints the metrics as JSON on its last line."""

_usage = [TRAIN_USAGE]  # the running script's, set by run()


def help_text() -> str:
  """--help: the script's usage, the flags a user needs, and config overrides."""
  lines = [_usage[0].strip(), '']
  for title, names in _HELP_SECTIONS:
    lines.append(f'{title}:')
    for name, metavar in names:
      if name in _TRAIN_ONLY_FLAGS and _usage[0] != TRAIN_USAGE:
        continue
      flag = flags.FLAGS[name]
      usage = f'--{name} {metavar}' if metavar else f'--[no]{name}'
      required = ' (required)' if name == 'workdir' else ''  # --config: see its help
      lines.append(flags.text_wrap(f'{usage}: {flag.help}{required}', indent='      ',
                                   firstline_indent='  '))
    lines.append('')
  lines += ['config overrides:',
            flags.text_wrap('--config.KEY=VALUE: sets any value of the config, e.g. '
                            '--config.num_steps=100 or --config.model.latent_dim=64; an '
                            'unknown KEY is an error that lists the valid ones.',
                            indent='      ', firstline_indent='  '),
            '', '--helpfull lists every flag, those of absl (logging, debugging) too.']
  return '\n'.join(lines)


def _parse_flags(argv: list[str]) -> list[str]:
  """app.run's flags_parser: help exits 0; anything wrong is one `error:` line, exit 1."""
  args = argv[1:argv.index('--')] if '--' in argv else argv[1:]
  if any(arg in _HELP_ARGS for arg in args):
    try:
      print(help_text(), flush=True)
    except BrokenPipeError:  # `train.py --help | head`: the rest is not wanted
      os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
    sys.exit(0)
  if any(arg in _HELPFULL_ARGS for arg in args):
    app.usage(writeto_stdout=True)  # absl's own, but exit 0: asking for help is no error
    sys.exit(0)
  return parse_flags_or_exit(argv, workdir_config=True, starts_runs=_usage[0] == TRAIN_USAGE)


def _interrupted_default(workdir: str | None) -> str:
  """run's `interrupted` for scripts that save nothing along the way (eval.py)."""
  del workdir
  return 'interrupted (Ctrl-C)'


def training_interrupted(workdir: str | None) -> str:
  """The `stopped:` line of train.py for a Ctrl-C outside the training loop's own
  handling (start-up, or a second Ctrl-C in the loop): what the workdir keeps."""
  if workdir is None:
    return 'interrupted (Ctrl-C) before training started; nothing was saved'
  folder = os.path.join(workdir, 'checkpoints')
  # Committed checkpoints are folders named by their step; orbax writes into
  # temporary folders with longer names and renames them when complete.
  steps = [int(name) for name in (os.listdir(folder) if os.path.isdir(folder) else ())
           if name.isdigit()]
  if not steps:
    return 'interrupted (Ctrl-C); no checkpoint was saved'
  return (f'interrupted (Ctrl-C); the last checkpoint (step {max(steps)}) is kept: run the '
          'same command to resume')


class _RaiseOnCtrlC:
  """The SIGINT handler from start-up on: raises KeyboardInterrupt, and notes
  that it did, since Python loses an exception raised inside a callback that C
  code calls (jax's garbage-collection hook): StopSignals checks `pressed`."""

  def __init__(self):
    self.pressed = False

  def __call__(self, signum, frame):
    del signum, frame
    self.pressed = True
    raise KeyboardInterrupt


def _quiet_lost_ctrl_c(hook: Callable) -> Callable:
  """`hook` (sys.unraisablehook) without the traceback of a KeyboardInterrupt that Python
  lost in a callback: _RaiseOnCtrlC noted it, and the run stops with one line."""

  def unraisable(info):
    if not isinstance(info.exc_value, KeyboardInterrupt):
      hook(info)

  return unraisable


def train_main(ctrl_c: Sequence[Any] = ()) -> None:
  """gon-train, train.py: see TRAIN_USAGE."""

  def train(config: ml_collections.ConfigDict, workdir: str) -> Any:
    return train_and_evaluate(config, workdir, allow_recipe_change=_ALLOW_RECIPE_CHANGE.value)

  run(train, TRAIN_USAGE, interrupted=training_interrupted, ctrl_c=ctrl_c)


def eval_main(ctrl_c: Sequence[Any] = ()) -> None:
  """gon-eval, eval.py: see EVAL_USAGE."""
  run(evaluate_checkpoint, EVAL_USAGE, ctrl_c=ctrl_c)


def run(main: Callable[[ml_collections.ConfigDict, str], Any], usage: str = TRAIN_USAGE,
        interrupted: Callable[[str | None], str] = _interrupted_default,
        ctrl_c: Sequence[Any] = ()) -> None:
  """Runs `main(config, workdir)` as an absl app.

  Args:
    main: the script's work.
    usage: what --help prints above the flags.
    interrupted: given the workdir (None if `main` had not started), the line
      printed after `stopped: ` when Ctrl-C interrupts the script outside
      `main`'s own handling of SIGINT; the exit code is then 130.
    ctrl_c: not empty if Ctrl-C was pressed before (the scripts note it while
      they import gon_jax, see train.py): stops at once.
  """

  started = []  # not empty once main runs
  _usage[0] = usage

  def _main(argv):
    if len(argv) > 1:  # absl's UsageError would print the whole usage too
      print(f'error: unexpected arguments: {" ".join(argv[1:])} (flags take the form '
            '--name=VALUE; see --help)', file=sys.stderr)
      sys.exit(1)
    given = [name for name in _TRAIN_ONLY_FLAGS if flags.FLAGS[name].present]
    if given and usage != TRAIN_USAGE:  # not ignored: the user expects it to act
      print(f'error: --{given[0]} is a flag of train.py only', file=sys.stderr)
      sys.exit(1)
    if not flags.FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    initialize_distributed()
    started.append(True)
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

  try:
    # From here Ctrl-C raises KeyboardInterrupt, so that start-up work (a
    # data download, say) stops at once and `finally` blocks run; absl lets
    # it through to here.
    signal.signal(signal.SIGINT, _RaiseOnCtrlC())
    sys.unraisablehook = _quiet_lost_ctrl_c(sys.unraisablehook)
    if ctrl_c:
      raise KeyboardInterrupt
    app.run(_main, flags_parser=_parse_flags)
  except KeyboardInterrupt:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C ends the exit at once
    print(f'stopped: {interrupted(_WORKDIR.value if started else None)}', file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    # Not sys.exit: after a compilation was interrupted, the interpreter's
    # clean-up can crash in jax (segmentation fault, exit -11), and in a
    # multi-process run it would wait at jax's shutdown barrier.
    os._exit(130)  # pylint: disable=protected-access
