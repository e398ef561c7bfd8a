"""The tied-weights autoencoder of Table 1: conv_mnist's decoder, and an encoder
applying its transposed convolutions transposed (74,689 parameters: the
GON's 74,321 plus the encoder's biases and norms). Run:

  python train.py --config configs/tied_ae_mnist.py --workdir runs/tied_ae_mnist
"""

from gon_jax.configs import conv_mnist


def get_config():
  config = conv_mnist.get_config()
  config.model.name = 'tied_ae'
  return config
