"""The train state and what training and evaluation both build from a config."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import struct

from gon_jax.encode import check_config
from gon_jax.models import get_model, init_variables


class TrainState(struct.PyTreeNode):
  """Everything that changes during training, as a plain pytree."""
  step: jax.Array
  params: Any
  batch_stats: Any  # {} for decoders without BatchNorm
  opt_state: Any


def create_train_state(config: ml_collections.ConfigDict, model: nn.Module,
                       tx: optax.GradientTransformation) -> TrainState:
  """Initial state on the host, the same on every process (seeded)."""
  variables = init_variables(model, jax.random.key(config.seed), config.model.latent_dim)
  params = variables['params']
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     batch_stats=variables.get('batch_stats', {}),
                     opt_state=tx.init(params))
  return jax.tree.map(np.asarray, state)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  return optax.adam(config.learning_rate)


def setup(config: ml_collections.ConfigDict):
  """Validates the config and builds what training and evaluation share.

  Returns:
    `(model, tx, initial host state)`.

  Raises:
    ConfigError: a config value that cannot work.
  """
  model = get_model(config)
  check_config(config)
  tx = make_optimizer(config)
  return model, tx, create_train_state(config, model, tx)
