"""Orbax checkpoints of the train state in `<workdir>/checkpoints`."""

import os
from typing import Any

import jax
import ml_collections
import numpy as np
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
  mismatch = f'{manager_.directory} holds a checkpoint (step {step}) of another model'
  try:
    state = manager_.restore(step, args=ocp.args.StandardRestore(template))
  except (ValueError, KeyError, TypeError) as err:
    raise ConfigError(f'{mismatch} ({str(err).splitlines()[0][:160]}); use another '
                      '--workdir or the config it was trained with') from None
  # Orbax restores stored shapes whatever the template says, so compare them.
  shapes = lambda tree: jax.tree.map(np.shape, tree)
  if jax.tree.structure(state) != jax.tree.structure(template) or shapes(state) != shapes(template):
    raise ConfigError(f'{mismatch}: its parameters differ from this config\'s; use another '
                      '--workdir or the config it was trained with')
  return state, step


def save(manager_: ocp.CheckpointManager, step: int, state: Any) -> None:
  manager_.save(step, args=ocp.args.StandardSave(state))
