"""Variational GON on Fashion-MNIST. Run (Debian's dataset-fashion-mnist ships the IDX files):

  python train.py --config configs/vgon_fashion.py --workdir runs/vgon_fashion \
      --config.data.source=idx --config.data.dir=/usr/share/datasets/fashion-mnist
"""

from configs import vgon_mnist


def get_config():
  config = vgon_mnist.get_config()
  config.data.name = 'fashion_mnist'
  return config
