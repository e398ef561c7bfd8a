"""Orbax checkpoints of the train state in `<workdir>/checkpoints`."""

import contextlib
import logging
import os
from typing import Any, Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp

from gon_jax import saved_config
from gon_jax.errors import ConfigError


def manager(workdir: str, *, read_only: bool = False) -> ocp.CheckpointManager:
  """A manager of `<workdir>/checkpoints` keeping the last three checkpoints; saves happen in
  the background.

  `read_only` (eval.py, tests): nothing is created, saved or deleted.
  """
  directory = os.path.abspath(os.path.join(workdir, 'checkpoints'))
  if not read_only:
    return ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(max_to_keep=3))
  # Orbax warns (absl WARNING) that a read-only manager neither saves nor
  # deletes, which is what read_only means: options that agree with it, and
  # a filter for the warning it always gives, keep eval.py's output clean.
  options = ocp.CheckpointManagerOptions(max_to_keep=None, save_interval_steps=0,
                                         create=False, read_only=True)
  with _dropping_absl_warnings('Given directory is read only'):
    return ocp.CheckpointManager(directory, options=options)


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


def restore_latest(manager_: ocp.CheckpointManager, template: Any, *,
                   missing_ok: bool = False) -> tuple[Any, int]:
  """The latest checkpoint restored into `template`'s structure, and its step.

  `missing_ok` (training, which starts from scratch): `(template, 0)` when there is none.

  Raises:
    FileNotFoundError: there is no checkpoint (unless `missing_ok`): untrained
      parameters must not pass for trained ones.
    ConfigError: the checkpoint does not fit the template (another model);
      the message names the first parameter that differs.
  """
  step = manager_.latest_step()
  if step is None and missing_ok:
    return template, 0
  if step is None:
    raise FileNotFoundError(f'no checkpoint in {manager_.directory}; train first: train.py '
                            'with this --workdir')
  here = shapes(template)
  mismatch = f'{manager_.directory} holds a checkpoint (step {step}) of another model'
  trained_with = saved_config.describe(os.path.dirname(str(manager_.directory)))
  advice = ('use another --workdir or the config it was trained with' +
            (f', recorded in {trained_with}: leave out --config to use it' if trained_with
             else ''))
  # The stored shapes, read before restoring: orbax restores stored shapes
  # whatever the template says, and fails on other trees with long messages.
  try:
    there = stored_shapes(manager_, step)
  except Exception:  # pylint: disable=broad-except  # an unexpected layout: compare after restoring
    there = None
  if there is not None and there != here:
    raise ConfigError(f'{mismatch}: {first_difference(there, here)}; {advice}')
  try:
    state = manager_.restore(step, args=ocp.args.StandardRestore(template))
  except (ValueError, KeyError, TypeError) as err:
    raise ConfigError(f'{mismatch} ({str(err).splitlines()[0][:160]}); {advice}') from None
  there = shapes(state)
  if there != here or jax.tree.structure(state) != jax.tree.structure(template):
    difference = first_difference(there, here) or 'its tree differs from this config\'s'
    raise ConfigError(f'{mismatch}: {difference}; {advice}')
  return state, step


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
  """`{path name: shape}` of the arrays of step `step`'s checkpoint, from its metadata."""
  handler = ocp.StandardCheckpointHandler()
  try:
    metadata = handler.metadata(manager_.directory / str(step) / 'default')
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


def save(manager_: ocp.CheckpointManager, step: int, state: Any) -> None:
  manager_.save(step, args=ocp.args.StandardSave(state))
