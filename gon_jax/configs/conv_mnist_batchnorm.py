"""conv_mnist with BatchNorm, as in the paper, evaluated with running averages.

The inner pass at z0 uses BatchNorm's running averages, in training too (all
examples are identical at the origin, their batch variance is zero); the outer
pass normalises with batch statistics in training and running averages at
evaluation. Run:

  python train.py --config configs/conv_mnist_batchnorm.py --workdir runs/conv_mnist_bn
"""

from gon_jax.configs import conv_mnist


def get_config():
  config = conv_mnist.get_config()
  config.model.norm = 'batch'
  return config
