"""The train state and what training and evaluation both build from a config's settings."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from gon_jax.models import make_objective
from gon_jax.objectives import Objective
from gon_jax.settings import OptimizerSettings, Settings


class TrainState(struct.PyTreeNode):
  """Everything that changes during training, as a plain pytree."""
  step: jax.Array
  params: Any
  batch_stats: Any  # {} for decoders without BatchNorm
  opt_state: Any
  latents: Any  # the objective's latent table state (GLO: gon_jax.glo); else {}
  skipped_steps: jax.Array  # steps whose update was dropped as non-finite


def create_train_state(seed: int, objective: Objective, tx: optax.GradientTransformation,
                       num_train_examples: int = 0) -> TrainState:
  """Initial state on the host, the same on every process (drawn from `seed`).

  `num_train_examples` sizes a latent table (GLO).
  """
  key = jax.random.key(seed)
  variables = init_variables(objective, key)
  params = variables['params']
  latents = objective.latent_table.init(jax.random.fold_in(key, 1), num_train_examples)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     batch_stats=variables.get('batch_stats', {}),
                     opt_state=tx.init(params), latents=latents,
                     skipped_steps=jnp.zeros((), jnp.int32))
  return jax.tree.map(np.asarray, state)


def init_variables(objective: Objective, key: jax.Array) -> dict:
  """`objective.init_variables(key)` as one compiled program, cached per objective
  (objectives compare by their fields); traced (under jit or eval_shape), as part of the
  caller's program."""
  if isinstance(key, jax.core.Tracer):
    return objective.init_variables(key)
  return _compiled_init(objective, key)


# Initialisation runs once, so it is compiled without XLA's backend (LLVM) optimisations:
# run op by op or compiled optimised, drawing the parameters (threefry's bits compile
# slowly) took 15-25 s of silent start-up on a 2-core CPU; unoptimised, 2-4 s. The values
# equal the optimised program's to within 1 float32 ulp.
_compiled_init = jax.jit(lambda objective, key: objective.init_variables(key), static_argnums=0,
                         compiler_options={'xla_backend_optimization_level': 0})


def learning_rate(optimizer: OptimizerSettings) -> float | optax.Schedule:
  """`learning_rate`, or its schedule (`lr_schedule`, `warmup_steps`, over `num_steps`) of
  the step."""
  peak, warmup = optimizer.learning_rate, optimizer.warmup_steps
  if optimizer.lr_schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, optimizer.num_steps)
  if not warmup:
    return peak  # a constant: the optimiser state has no schedule count
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup),
                               optax.constant_schedule(peak)], [warmup])


def make_optimizer(optimizer: OptimizerSettings) -> optax.GradientTransformation:
  """Adam at `learning_rate(optimizer)`, after clipping gradients to global norm
  `grad_clip_norm` if it is positive."""
  adam = optax.adam(learning_rate(optimizer))
  return optax.chain(optax.clip_by_global_norm(optimizer.grad_clip_norm), adam) \
      if optimizer.grad_clip_norm else adam


def setup(settings: Settings, num_train_examples: int = 0
          ) -> tuple[Objective, optax.GradientTransformation, TrainState]:
  """Builds what training and evaluation share, from a validated config's settings
  (gon_jax.config.validate).

  `num_train_examples` sizes GLO's latent table (other models ignore it).

  Returns:
    `(objective, tx, initial host state)`; the module is `objective.model`.
  """
  objective = make_objective(settings)
  tx = make_optimizer(settings.optimizer)
  return objective, tx, create_train_state(settings.seed, objective, tx, num_train_examples)
