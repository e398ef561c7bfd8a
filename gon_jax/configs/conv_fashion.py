"""Convolutional GON on Fashion-MNIST: conv_mnist's decoder and recipe (74,321 parameters,
layer norm, Adam 1e-3, 1,000 steps) on Fashion-MNIST's 32x32 greyscale clothes. Run (the
first run downloads Fashion-MNIST's IDX files into ~/.cache/gon_jax/fashion_mnist):

  python train.py --config configs/conv_fashion.py --workdir runs/conv_fashion
  python eval.py --workdir runs/conv_fashion

Offline, Debian's `apt-get install dataset-fashion-mnist` ships the IDX files: add
--config.data.dir=/usr/share/datasets/fashion-mnist. The pretrained `conv_fashion`
(gon_jax.load('conv_fashion'), docs/pretrained.md) is this run.
"""

import ml_collections

from gon_jax.configs import conv_mnist


def get_config() -> ml_collections.ConfigDict:
  config = conv_mnist.get_config()
  config.data.name = 'fashion_mnist'
  return config
