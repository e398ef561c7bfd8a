"""Variational GON on Fashion-MNIST. Run (the first run downloads Fashion-MNIST's IDX
files into ~/.cache/gon_jax/fashion_mnist):

  python train.py --config configs/vgon_fashion.py --workdir runs/vgon_fashion

Offline, Debian's `apt-get install dataset-fashion-mnist` ships the IDX files: add
--config.data.dir=/usr/share/datasets/fashion-mnist
"""

from gon_jax.configs import vgon_mnist


def get_config():
  config = vgon_mnist.get_config()
  config.data.name = 'fashion_mnist'
  return config
