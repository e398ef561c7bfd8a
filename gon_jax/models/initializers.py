"""Parameter initialisers shared by the model families.

`INITS` names the two conventions a convolutional model can start from
(`config.model.init`): 'flax' (flax's defaults: LeCun-normal kernels, zero
biases) and 'pytorch' (PyTorch's defaults for Linear, Conv2d and
ConvTranspose2d: kaiming_uniform with a = sqrt(5), i.e. kernels and biases
uniform in +-1/sqrt(fan_in), where a transposed convolution's fan_in is its
*output* channels times the kernel's area, as PyTorch computes it from the
weight's shape [in, out, k, k]).
"""

import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

INITS = ('flax', 'pytorch')
Initializer = Callable[..., jax.Array]


def uniform(bound: float) -> Initializer:
  """U(-bound, bound)."""
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def kernel_and_bias(init: str, fan_in: int) -> tuple[Initializer, Initializer]:
  """`(kernel_init, bias_init)` of a layer whose PyTorch fan_in is `fan_in` under `init`."""
  if init == 'pytorch':
    bound = 1.0 / math.sqrt(fan_in)
    return uniform(bound), uniform(bound)
  return nn.initializers.lecun_normal(), nn.initializers.zeros
