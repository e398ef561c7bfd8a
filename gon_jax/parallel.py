"""Placing the train state and batches on devices, and compiling the step.

Two ways to run one `train_step` over all devices, chosen by `config.parallel`:

* 'jit': `jax.jit` with the batch sharded over a one-axis `NamedSharding`
  mesh of every device of every process, the state replicated; XLA inserts
  the gradient all-reduce (the path JAX recommends).
* 'pmap': `jax.pmap` over this process's devices with axis name `AXIS`; the
  step averages gradients with `lax.pmean` and BatchNorm averages statistics
  over the axis.

Both compute the numbers of one device at the same global batch.
"""

import dataclasses
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gon_jax.settings import PerformanceSettings

AXIS = 'batch'


def compiler_options(cpu_ynn_fusions: bool = False) -> dict | None:
  """XLA options of every jitted step that runs the model (training, encoding, scoring): on
  CPU, without YNNPACK fusions unless `cpu_ynn_fusions` (performance.cpu_ynn_fusions).

  XLA:CPU hands dots, reductions and the elementwise work around them to
  YNNPACK as fused library calls. For GON steps, whose layers are narrow
  (16 to 64 channels), XLA's own loops and Eigen's matrix products are
  faster: about 1.5x for conv_mnist on a 2-core CPU, the same for
  siren_mnist (docs/performance.md). They are also wrong on some GON
  programs: jax 0.10.2's XLA:CPU with them gave different latents for the
  same inputs from one call to the next (finite, then up to 1e22) for a
  FiLM-modulated SIREN with Fourier features; without them, the same bits
  every call.
  """
  if jax.default_backend() != 'cpu' or cpu_ynn_fusions:
    return None
  return {'xla_cpu_experimental_ynn_fusion_type': ''}


def jit(fn: Callable, performance: PerformanceSettings, **jit_kwargs) -> Callable:
  """`jax.jit(fn, **jit_kwargs)` with the compiler options of `performance`: how evaluation,
  encoding and decoding compile what runs the model."""
  return jax.jit(fn, compiler_options=compiler_options(performance.cpu_ynn_fusions),
                 **jit_kwargs)


@dataclasses.dataclass(frozen=True)
class Placement:
  """How train states and batches live on devices for one parallel mode."""
  mode: str
  mesh: Mesh

  @property
  def axis_name(self) -> str | None:
    """The collective axis a step must name (pmap only)."""
    return AXIS if self.mode == 'pmap' else None

  def compile(self, step: Callable, options: dict | None = None,
              replicated_args: int = 0) -> Callable:
    """Compiles `step(state, batch, *replicated) -> (state, metrics)`; the old state is donated.

    `options` (XLA compiler options, e.g. `compiler_options()`) apply under jit;
    jax.pmap takes none. The `replicated_args` arguments after the batch are placed like
    the state (`put_state`).
    """
    if self.mode == 'pmap':
      return jax.pmap(step, axis_name=AXIS, donate_argnums=0)
    replicated = NamedSharding(self.mesh, PartitionSpec())
    sharded = NamedSharding(self.mesh, PartitionSpec(AXIS))
    return jax.jit(step, in_shardings=(replicated, sharded) + (replicated,) * replicated_args,
                   out_shardings=(replicated, replicated), donate_argnums=0,
                   compiler_options=options)

  def put_state(self, state: Any) -> Any:
    """Host state (the same on every process) -> replicated device state."""
    if self.mode == 'pmap':
      n = jax.local_device_count()
      return jax.tree.map(
          lambda x: jax.device_put(np.broadcast_to(x, (n, *np.shape(x))), _local_stack()),
          state)
    replicated = NamedSharding(self.mesh, PartitionSpec())
    return jax.tree.map(
        lambda x: jax.make_array_from_callback(
            np.shape(x), replicated, lambda index: np.asarray(x)[index]), state)

  def put_batch(self, batch: dict) -> Any:
    """This process's rows of the global batch -> a device batch."""
    if self.mode == 'pmap':
      n = jax.local_device_count()
      return jax.tree.map(
          lambda x: jax.device_put(x.reshape(n, x.shape[0] // n, *x.shape[1:]),
                                   _local_stack()), batch)
    sharded = NamedSharding(self.mesh, PartitionSpec(AXIS))
    if jax.process_count() == 1:  # one transfer for the whole batch: less host time per step
      return jax.device_put(batch, sharded)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharded, x), batch)

  def get(self, tree: Any) -> Any:
    """Replicated device values -> host numpy (one copy)."""
    if self.mode == 'pmap':  # this device's copy still has the device axis
      return jax.tree.map(lambda x: np.asarray(x.addressable_data(0))[0], tree)
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


def _local_stack() -> NamedSharding:
  """A leading axis split over this process's devices: pmap's input layout."""
  return NamedSharding(Mesh(np.array(jax.local_devices()), (AXIS,)), PartitionSpec(AXIS))


def make_placement(mode: str) -> Placement:
  """The placement of `mode` ('jit' or 'pmap', gon_jax.config.validate checks it) over every
  device."""
  return Placement(mode, Mesh(np.array(jax.devices()), (AXIS,)))
