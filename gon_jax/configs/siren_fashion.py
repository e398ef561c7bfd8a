"""Implicit GON on Fashion-MNIST, 28x28, the siren_mnist recipe. Run (the first run
downloads Fashion-MNIST's IDX files into ~/.cache/gon_jax/fashion_mnist):

  python train.py --config configs/siren_fashion.py --workdir runs/siren_fashion

Offline, Debian's `apt-get install dataset-fashion-mnist` ships the IDX files: add
--config.data.dir=/usr/share/datasets/fashion-mnist
"""

from gon_jax.configs import siren_mnist


def get_config():
  config = siren_mnist.get_config()
  config.data.name = 'fashion_mnist'
  return config
