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
from gon_jax.glo import init_latent_table
from gon_jax.models import LATENT_TABLE_MODELS, ConfigError, get_model, init_variables


class TrainState(struct.PyTreeNode):
  """Everything that changes during training, as a plain pytree."""
  step: jax.Array
  params: Any
  batch_stats: Any  # {} for decoders without BatchNorm
  opt_state: Any
  latents: Any  # GLO: the latent table and its Adam state (gon_jax.glo); else {}
  skipped_steps: jax.Array  # steps whose update was dropped as non-finite


def create_train_state(config: ml_collections.ConfigDict, model: nn.Module,
                       tx: optax.GradientTransformation,
                       num_train_examples: int = 0) -> TrainState:
  """Initial state on the host, the same on every process (seeded).

  `num_train_examples` sizes GLO's latent table.
  """
  key = jax.random.key(config.seed)
  variables = _compiled_init(model, key, config.model.latent_dim)
  params = variables['params']
  latents = {}
  if config.model.name in LATENT_TABLE_MODELS:
    if num_train_examples <= 0:
      raise ConfigError(f'model {config.model.name!r} needs the number of training examples')
    latents = init_latent_table(jax.random.fold_in(key, 1), num_train_examples, config.model.latent_dim,
                                config.glo.init_sigma)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     batch_stats=variables.get('batch_stats', {}),
                     opt_state=tx.init(params), latents=latents,
                     skipped_steps=jnp.zeros((), jnp.int32))
  return jax.tree.map(np.asarray, state)


# One compiled program (cached per model: modules compare by their fields): run
# op by op, initialisation took 10-20 s of silent start-up on a 2-core CPU.
_compiled_init = jax.jit(init_variables, static_argnums=(0, 2))


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam, after clipping gradients to global norm `grad_clip_norm` if it is positive."""
  adam = optax.adam(config.learning_rate)
  if config.grad_clip_norm < 0:
    raise ConfigError(f'grad_clip_norm {config.grad_clip_norm}: use 0 (off) or a positive norm')
  return optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), adam) \
      if config.grad_clip_norm else adam


def setup(config: ml_collections.ConfigDict, num_train_examples: int = 0):
  """Validates the config and builds what training and evaluation share.

  `num_train_examples` sizes GLO's latent table (other models ignore it).

  Returns:
    `(model, tx, initial host state)`.

  Raises:
    ConfigError: a config value that cannot work.
  """
  model = get_model(config)
  check_config(config)
  tx = make_optimizer(config)
  return model, tx, create_train_state(config, model, tx, num_train_examples)
