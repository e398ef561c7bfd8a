"""The autoencoder baseline of Table 1: conv_mnist's decoder after a mirrored
convolutional encoder (148,673 parameters, twice the GON's). Run:

  python train.py --config configs/ae_mnist.py --workdir runs/ae_mnist
"""

from gon_jax.configs import conv_mnist


def get_config():
  config = conv_mnist.get_config()
  config.model.name = 'ae'
  return config
