"""Convolutional GON on MNIST (32x32): GON.py's network, tuned to learn fast.

The official GON.py's decoder (latent 32, ngf 16, ELU; 74,321 parameters) and
PyTorch's layer initialisation, with two changes to its recipe: layer norm
instead of BatchNorm (per-example latents) and Adam 1e-3 instead of 1e-4
(docs/results.md, "Time to quality": the official 3000-step quality in about 200
steps). configs/conv_mnist_official.py is the official recipe.

Run (the first run downloads MNIST's four IDX files, 11 MB, into ~/.cache/gon_jax/mnist):

  python train.py --config configs/conv_mnist.py --workdir runs/conv_mnist
  python eval.py --config configs/conv_mnist.py --workdir runs/conv_mnist

Offline, point --config.data.dir at a folder holding the four IDX files; with MNIST
prepared by tfds on this machine, add --config.data.source=tfds instead.
"""

import ml_collections

from gon_jax.config import base_config


def get_config() -> ml_collections.ConfigDict:
  config = base_config('conv')
  config.data.image_size = 32  # 28x28 MNIST is resized, as in GON.py
  config.model.latent_dim = 32
  config.model.features = 16
  config.model.channels = 1
  config.model.activation = 'elu'
  # Per-example normalisation: latents and reconstructions of an image do not
  # depend on the rest of its batch (docs/models.md, "BatchNorm and GONs").
  config.model.norm = 'layer'
  config.model.init = 'pytorch'
  config.learning_rate = 1e-3  # 1e-4 (GON.py) learns 5x slower (docs/results.md)
  return config
