"""Convolutional GON on CIFAR-10 (32x32x3): GON.py's decoder for colour images.

The official GON.py's decoder (ngf 16, ELU, four transposed convolutions) with three output
channels, conv_mnist's recipe (layer norm, PyTorch's layer initialisation, Adam 1e-3), and a
latent of 512 variables (566,355 parameters). The official code has no CIFAR-10 settings;
the paper's Figs. 3 and 10c train CIFAR-10 GONs with 512, 128 and 32 latent variables, and
this config defaults to the largest (Table 1's CIFAR-10 error, 9.12, is 25.3 dB of PSNR).
The other two: --config.model.latent_dim=128 (173,139 parameters) or
--config.model.latent_dim=32 (GON.py's own, 74,835).

Run (the first run downloads CIFAR-10's python archive, cifar-10-python.tar.gz, 163 MB,
md5-checked, into ~/.cache/gon_jax/cifar10; --config.data.dir=FOLDER reads the archive, or
its extracted cifar-10-batches-py/, from FOLDER instead):

  python train.py --config configs/conv_cifar10.py --workdir runs/conv_cifar10
  python eval.py --workdir runs/conv_cifar10

On CIFAR-10 as a folder of images, DIR holding train/<class>/*.jpg and test/<class>/*.jpg
(ImageFolder's layout, e.g. ../shared/data/cifar10_jpeg/cifar10_jpeg.tar.gz unpacked: JPEG
re-encodings of the images, so report figures on them as "CIFAR-10 (JPEG)"):

  python train.py --config configs/conv_cifar10.py --workdir runs/conv_cifar10 --config.data.source=folder --config.data.dir=DIR
  python eval.py --workdir runs/conv_cifar10

eval.py without --config uses the config the workdir recorded, data source included.
"""

import ml_collections

from gon_jax.configs import conv_mnist


def use_cifar10(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` reading CIFAR-10 (32x32x3) from its python archive, downloaded into the cache;
  the CIFAR-10 configs' one data section. Returns `config`, changed in place."""
  config.data.source = 'cifar'
  config.data.name = 'cifar10'
  config.data.image_size = 32
  config.model.channels = 3
  return config


def get_config() -> ml_collections.ConfigDict:
  config = use_cifar10(conv_mnist.get_config())
  config.model.latent_dim = 512  # Figs. 3 and 10c: 512, 128 or 32
  return config
