"""Variational GON on CelebA at 64x64x3: the decoder gains one up-sampling block
(widths 256, 128, 64, 32). CelebA arrives by itself as for configs/siren_celeba.py
(centred square crops resized to 64x64). Run:

  python train.py --config configs/vgon_celeba.py --workdir runs/vgon_celeba
"""

from gon_jax.configs import vgon_mnist


def get_config():
  config = vgon_mnist.get_config()
  config.data.source = 'celeba'
  config.data.name = 'celeb_a'
  config.data.image_size = 64
  config.model.channels = 3
  return config
