"""Implicit GON on CIFAR-10, 32x32x3 colour images (tfds). Run:

  python train.py --config configs/siren_cifar10.py --workdir runs/siren_cifar10
"""

from configs import siren_mnist


def get_config():
  config = siren_mnist.get_config()
  config.data.source = 'tfds'  # CIFAR-10 ships no IDX files
  config.data.name = 'cifar10'
  config.data.image_size = 32
  config.model.channels = 3
  config.model.latent_dim = 64
  return config
