"""Implicit GON on CIFAR-10, 32x32x3 colour images (its python archive downloads into the
cache the first time, as MNIST does), with shift modulations of every sine layer: the
implicit ablation's winner, which on colour digits also beat concatenation
(docs/results.md). Run:

  python train.py --config configs/siren_cifar10.py --workdir runs/siren_cifar10
"""

from gon_jax.configs import siren_mnist


def get_config():
  config = siren_mnist.get_config()
  config.data.source = 'cifar'  # its python archive, downloaded into the cache
  config.data.name = 'cifar10'
  config.data.image_size = 32
  config.model.channels = 3
  config.model.latent_dim = 64
  config.model.conditioning = 'shift'
  return config
