"""Orbax checkpoints of the train state in `<workdir>/checkpoints`."""

import os
from typing import Any

import ml_collections
import orbax.checkpoint as ocp

from gon_jax.models import ConfigError


def manager(workdir: str, config: ml_collections.ConfigDict,
            read_only: bool = False) -> ocp.CheckpointManager:
  """A manager keeping the last three checkpoints; saves happen in the background."""
  directory = os.path.abspath(os.path.join(workdir, 'checkpoints'))
  options = ocp.CheckpointManagerOptions(max_to_keep=3, create=not read_only,
                                         read_only=read_only)
  return ocp.CheckpointManager(directory, options=options)


def restore_latest(manager_: ocp.CheckpointManager, template: Any) -> tuple[Any, int]:
  """The latest checkpoint restored into `template`'s structure, and its step.

  Returns `(template, 0)` when there is none.

  Raises:
    ConfigError: the checkpoint does not fit the template (another model).
  """
  step = manager_.latest_step()
  if step is None:
    return template, 0
  try:
    state = manager_.restore(step, args=ocp.args.StandardRestore(template))
  except (ValueError, KeyError, TypeError) as err:
    raise ConfigError(
        f'{manager_.directory} holds a checkpoint (step {step}) that does not fit '
        f'this config\'s model: {str(err).splitlines()[0][:200]}; use another '
        '--workdir') from None
  return state, step


def save(manager_: ocp.CheckpointManager, step: int, state: Any) -> None:
  manager_.save(step, args=ocp.args.StandardSave(state))
