"""Orbax checkpoints of the train state in `<workdir>/checkpoints`, each step verified.

Each step that training saves gets a record of its files' SHA-256s, `<step>/sha256.json`
(gon_jax.file_hashes), written once orbax has committed the step (saves run in the
background: the record follows at the next save, `wait_until_finished` or `close`); a step
orbax deletes (`max_to_keep`) takes its record with it. Before a step is read, its record is
checked: a damaged or truncated file is a DamagedFileError naming the step and the file.

A step without a record was written before records were kept (an old workdir), or training
was killed between orbax's commit and the record (its files were complete at the commit):
such a step is read as before, its stored shapes compared with the model's, and a file that
cannot be read is called damaged. An empty step folder is said to be empty.

Training (`restore_latest(..., missing_ok=True)`) resumes from the newest intact step, moves
the damaged newer ones aside (`<step>.damaged`, which orbax ignores, so that their steps can
be saved again) and says so in one line on stderr; eval.py and `gon_jax.load` refuse a
damaged newest step.
"""

import contextlib
import logging
import os
import pathlib
import sys
from typing import Any, Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from gon_jax import file_hashes, saved_config
from gon_jax.errors import ConfigError, DamagedFileError

ITEM = 'default'  # the folder of a step that holds the state (orbax's name for a lone item)
METADATA = '_METADATA'  # the tree, shapes and dtypes of a step's arrays (orbax's)
DAMAGED_SUFFIX = '.damaged'  # of the step folders training moves aside
# Orbax's absl warnings as it lists the steps, which this module says in its own words: that
# a read-only manager is read-only, and that a step folder is empty (verify_step).
_ORBAX_WARNINGS_SAID_OTHERWISE = ('Given directory is read only', 'Metadata file does not exist')


class Manager(ocp.CheckpointManager):
  """An orbax CheckpointManager that writes a step's record once orbax has committed it, and
  closes at the end of a `with` block.

  Orbax commits a step in the background; this manager records it when it next waits for
  the background work (`wait_until_finished`, which `save` and `close` call first), on
  process 0 only (the files are shared).
  """

  def __init__(self, directory: str, options: ocp.CheckpointManagerOptions, read_only: bool):
    super().__init__(directory, options=options)
    self.read_only = read_only
    self._unrecorded = None  # the step saved last, until its record is written
    self._closed = False

  def save(self, step: int, *args, **kwargs) -> bool:
    """orbax's `save`, after recording the step saved before (orbax waits for it anyway)."""
    self.wait_until_finished()
    saved = super().save(step, *args, **kwargs)
    if saved:
      self._unrecorded = step
    return saved

  def wait_until_finished(self) -> None:
    """Waits for the background save, then writes the record of the step it committed."""
    step, self._unrecorded = self._unrecorded, None
    super().wait_until_finished()  # raises if the save failed: then there is nothing to record
    folder = step_folder(self, step) if step is not None else None
    if folder is not None and folder.is_dir() and jax.process_index() == 0:
      file_hashes.write_record(folder)

  def close(self) -> None:
    """Waits for (and records) the last save and closes orbax's threads; again: nothing."""
    if not self._closed:
      self._closed = True
      super().close()

  def __enter__(self) -> 'Manager':
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def manager(workdir: str, *, read_only: bool = False) -> Manager:
  """A manager of `<workdir>/checkpoints` keeping the last three checkpoints; saves happen in
  the background, each step recorded once committed (see `Manager`).

  Use it in `with` (or call `close()`), so that the last save is recorded and orbax's threads
  end on every path.

  `read_only` (eval.py, `gon_jax.load`, tests): nothing is created, saved or deleted.
  """
  directory = os.path.abspath(os.path.join(workdir, 'checkpoints'))
  if not read_only:
    options = ocp.CheckpointManagerOptions(max_to_keep=3)
  else:
    # Orbax warns (absl WARNING) that a read-only manager neither saves nor
    # deletes, which is what read_only means: options that agree with it, and
    # a filter for the warning it always gives, keep eval.py's output clean.
    options = ocp.CheckpointManagerOptions(max_to_keep=None, save_interval_steps=0,
                                           create=False, read_only=True)
  with _dropping_absl_warnings(*_ORBAX_WARNINGS_SAID_OTHERWISE):
    return Manager(directory, options, read_only)


class _MessageFilter(logging.Filter):
  """Drops log records whose message starts with one of `prefixes`."""

  def __init__(self, prefixes: tuple[str, ...]):
    super().__init__()
    self._prefixes = prefixes

  def filter(self, record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(self._prefixes)


@contextlib.contextmanager
def _dropping_absl_warnings(*prefixes: str) -> Iterator[None]:
  """Within `with`, absl log records starting with `prefixes` are dropped; others pass."""
  absl_logger = logging.getLogger('absl')  # absl.logging's python logger, which orbax uses
  dropping = _MessageFilter(prefixes)
  absl_logger.addFilter(dropping)
  try:
    yield
  finally:
    absl_logger.removeFilter(dropping)


def step_folder(manager_: ocp.CheckpointManager, step: int) -> pathlib.Path:
  """`<workdir>/checkpoints/<step>`, the folder of a committed step."""
  return pathlib.Path(str(manager_.directory)) / str(step)


def verify_step(manager_: ocp.CheckpointManager, step: int) -> None:
  """Raises DamagedFileError unless step `step` passes its check before it is read: every
  file of its record (`<step>/sha256.json`) there with its recorded size and SHA-256. A step
  without a record (written before records were kept; see the module's docstring) needs
  files only.

  Raises:
    DamagedFileError: a file is missing, truncated or changed, or the record is damaged (the
      message names the step and the file); or the step's folder holds no files.
  """
  folder = step_folder(manager_, step)
  what = f'the checkpoint of step {step}'
  if file_hashes.has_record(folder):
    file_hashes.check_record(folder, what)
  elif not any(path.is_file() for path in folder.rglob('*')):
    raise DamagedFileError(f'{what} is empty: {folder} holds no files (a write that never '
                           'finished, or its files were removed)')


def restore_latest(manager_: Manager, template: Any, *,
                   missing_ok: bool = False) -> tuple[Any, int]:
  """The newest checkpoint restored into `template`'s structure, and its step.

  The step is verified first (`verify_step`).

  `missing_ok` (training, which starts from scratch and resumes): `(template, 0)` when there
  is no checkpoint; a damaged newest step is passed over for the newest intact one, and the
  damaged steps are moved aside to `<step>.damaged` (unless the manager is read-only), so
  that training can save them again; one line on stderr (process 0) says which step was
  damaged, why, and which step training resumes from.

  Raises:
    FileNotFoundError: there is no checkpoint (unless `missing_ok`): untrained
      parameters must not pass for trained ones.
    DamagedFileError: the newest step is damaged or empty (with `missing_ok`: every step
      is); the message names the step and the file, and an older step to use instead.
    ConfigError: the checkpoint does not fit the template (another model);
      the message names the first parameter that differs.
  """
  steps = sorted(manager_.all_steps(), reverse=True)
  if not steps and missing_ok:
    return template, 0
  if not steps:
    raise FileNotFoundError(f'no checkpoint in {manager_.directory}: train a model in this '
                            'workdir first')
  damaged = []  # (step, error) of the newer steps passed over
  for step in steps:
    try:
      state = _restore_step(manager_, step, template)
    except DamagedFileError as err:
      if not missing_ok:
        raise DamagedFileError(f'{err}{_older_step_advice(manager_, step)}') from None
      damaged.append((step, err))
      continue
    if damaged:
      _set_aside(manager_, damaged, step)
    return state, step
  raise DamagedFileError(f'{damaged[0][1]}; no older checkpoint is intact either: move '
                         f'{manager_.directory} away to train from step 0')


def _restore_step(manager_: Manager, step: int, template: Any) -> Any:
  """Step `step` verified, its stored shapes compared with `template`'s, then restored."""
  verify_step(manager_, step)
  verified = file_hashes.has_record(step_folder(manager_, step))
  here = shapes(template)
  mismatch = f'{manager_.directory} holds a checkpoint (step {step}) of another model'
  trained_with = saved_config.describe(os.path.dirname(str(manager_.directory)))
  # Said to Python callers (gon_jax.load, train_and_evaluate) and the command line alike.
  advice = ('use another workdir, or the config it was trained with' +
            (f', recorded in {trained_with} (train.py and eval.py read it when --config is '
             'left out)' if trained_with else ''))
  # The stored shapes, read before restoring: orbax restores stored shapes
  # whatever the template says, and fails on other trees with long messages.
  # A step without metadata (an old orbax's layout) is compared after restoring.
  has_metadata = (step_folder(manager_, step) / ITEM / METADATA).is_file()
  there = _metadata_shapes(manager_, step) if has_metadata else None
  if there is not None and there != here:
    raise ConfigError(f'{mismatch}: {first_difference(there, here)}; {advice}')
  try:
    with _dropping_closed_loop_callbacks():
      state = manager_.restore(step, args=ocp.args.StandardRestore(template))
  except Exception as err:  # pylint: disable=broad-except  # orbax's and tensorstore's, many kinds
    reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
    if verified:  # the files are as written, and their tree does not fit this model's
      raise ConfigError(f'{mismatch} ({reason}); {advice}') from None
    raise DamagedFileError(
        f'the checkpoint of step {step} is damaged: reading {step_folder(manager_, step)} '
        f'failed ({reason}); it has no {file_hashes.RECORD} (written before checkpoints were '
        'recorded) to name the file') from None
  there = shapes(state)
  if there != here or jax.tree.structure(state) != jax.tree.structure(template):
    difference = first_difference(there, here) or 'its tree differs from this config\'s'
    raise ConfigError(f'{mismatch}: {difference}; {advice}')
  return state


def _older_step_advice(manager_: Manager, step: int) -> str:
  """'; to use the older checkpoint of step S, move <step folder> away' for the newest older
  step that passes its check, or ''."""
  for older in sorted((s for s in manager_.all_steps() if s < step), reverse=True):
    try:
      verify_step(manager_, older)
    except DamagedFileError:
      continue
    return (f'; to use the older checkpoint of step {older}, move '
            f'{step_folder(manager_, step)} away')
  return ''


def _set_aside(manager_: Manager, damaged: list[tuple[int, DamagedFileError]],
               resumed: int) -> None:
  """Moves the damaged steps to `<step>.damaged` (orbax ignores such folders, and training
  may save their steps again) and says so in one line on stderr."""
  main = jax.process_index() == 0
  moved = []
  if not manager_.read_only:
    if main:
      for step, _ in damaged:
        folder = step_folder(manager_, step)
        target, copies = folder.with_name(f'{step}{DAMAGED_SUFFIX}'), 1
        while target.exists():  # damaged before: keep both
          copies += 1
          target = folder.with_name(f'{step}{DAMAGED_SUFFIX}.{copies}')
        os.rename(folder, target)
        moved.append(target.name)
    if jax.process_count() > 1:  # every process reloads the steps once they are moved
      multihost_utils.sync_global_devices('gon_jax: damaged checkpoints set aside')
    with _dropping_absl_warnings(*_ORBAX_WARNINGS_SAID_OTHERWISE):
      manager_.reload()
  if main:
    others = [str(step) for step, _ in damaged[1:]]
    also = (f'; so is the checkpoint of step {others[0]}' if len(others) == 1 else
            f'; so are those of steps {", ".join(others)}' if others else '')
    aside = f'; moved aside to {", ".join(moved)} in {manager_.directory}' if moved else ''
    print(f'{damaged[0][1]}{also}; resuming from step {resumed}, the newest intact '
          f'checkpoint{aside}', file=sys.stderr, flush=True)


@contextlib.contextmanager
def _dropping_closed_loop_callbacks() -> Iterator[None]:
  """Within `with`, and after it if it raised, unraisable `RuntimeError('Event loop is
  closed')`s are dropped (sys.unraisablehook).

  When orbax fails to read a step (only a step without a record reaches orbax damaged), the
  reads it had started and not finished call back into the event loop it has closed, while it
  raises or later: each would print a traceback around the caller's one-line error.
  """
  previous = sys.unraisablehook

  def unraisable(info):
    if not (isinstance(info.exc_value, RuntimeError)
            and str(info.exc_value) == 'Event loop is closed'):
      previous(info)

  sys.unraisablehook = unraisable
  yield  # an exception leaves the hook in place: the abandoned reads call back later
  if sys.unraisablehook is unraisable:
    sys.unraisablehook = previous


def _path_name(path: tuple) -> str:
  """'params/Dense_0/kernel' for a jax key path, whatever kinds of keys it has."""
  parts = []
  for key in path:
    for attribute in ('key', 'name', 'idx'):  # DictKey, GetAttrKey, SequenceKey
      if hasattr(key, attribute):
        parts.append(str(getattr(key, attribute)))
        break
    else:
      parts.append(str(key))
  return '/'.join(parts)


def shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  """`{path name: shape}` of a tree's arrays, in the tree's order."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {_path_name(path): tuple(np.shape(leaf)) for path, leaf in leaves}


def stored_shapes(manager_: ocp.CheckpointManager, step: int) -> dict[str, tuple[int, ...]]:
  """`{path name: shape}` of the arrays of step `step`'s checkpoint, from its metadata, once
  the step is verified (`verify_step`).

  Raises:
    DamagedFileError: the step fails its check (the message names an older step to use
      instead), or its metadata cannot be read.
  """
  try:
    verify_step(manager_, step)
  except DamagedFileError as err:
    raise DamagedFileError(f'{err}{_older_step_advice(manager_, step)}') from None
  return _metadata_shapes(manager_, step)


def _metadata_shapes(manager_: ocp.CheckpointManager, step: int) -> dict[str, tuple[int, ...]]:
  """`stored_shapes` without the check; DamagedFileError naming the file it cannot read."""
  handler = ocp.StandardCheckpointHandler()
  try:
    metadata = handler.metadata(step_folder(manager_, step) / ITEM)
  except Exception as err:  # pylint: disable=broad-except  # JSON's, orbax's: a damaged file
    path = step_folder(manager_, step) / ITEM / METADATA
    raise DamagedFileError(f'the checkpoint of step {step} is damaged: {path} cannot be read '
                           f'({type(err).__name__}: {str(err).splitlines()[0][:120]})'
                           ) from None
  finally:
    handler.close()
  leaves, _ = jax.tree_util.tree_flatten_with_path(
      metadata, is_leaf=lambda x: hasattr(x, 'shape'))
  return {_path_name(path): tuple(leaf.shape) for path, leaf in leaves}


def first_difference(there: dict[str, tuple], here: dict[str, tuple]) -> str | None:
  """Names the first parameter (this config's order; model parameters first) that differs."""
  shape = lambda dims: f'[{", ".join(map(str, dims))}]'
  differences = [f'{name} is {shape(there[name])} there, {shape(dims)} here'
                 if name in there else f'{name} {shape(dims)} is not there'
                 for name, dims in here.items() if there.get(name) != dims]
  differences += [f'{name} {shape(dims)} is there, not here'
                  for name, dims in there.items() if name not in here]
  if not differences:
    return None
  differences.sort(key=lambda text: not text.startswith('params/'))  # stable: order kept
  more = f' (and {len(differences) - 1} more arrays)' if len(differences) > 1 else ''
  return differences[0] + more


def save(manager_: Manager, step: int, state: Any) -> None:
  """Saves `state` as step `step` in the background; its record follows once it is committed
  (`Manager`)."""
  manager_.save(step, args=ocp.args.StandardSave(state))
