"""Convolutional GON on MNIST (32x32), the recipe of the official GON.py.

Run (the first run downloads MNIST's four IDX files, 11 MB, into ~/.cache/gon_jax/mnist):

  python train.py --config configs/conv_mnist.py --workdir runs/conv_mnist
  python eval.py --config configs/conv_mnist.py --workdir runs/conv_mnist

Offline, point --config.data.dir at a folder holding the four IDX files; with MNIST
prepared by tfds on this machine, add --config.data.source=tfds instead.
"""

import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
  config = common.base_config('conv')
  config.data.image_size = 32  # 28x28 MNIST is resized, as in GON.py
  config.model.latent_dim = 32
  config.model.features = 16
  config.model.channels = 1
  config.model.activation = 'elu'
  # Per-example normalisation: latents and reconstructions of an image do not
  # depend on the rest of its batch (README: "BatchNorm and GONs").
  config.model.norm = 'layer'
  return config
