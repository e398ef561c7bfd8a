"""Implicit GON on CelebA at 64x64x3 (tfds; CelebA ships no IDX files): shift
modulations of every sine layer from a 128-dimensional latent, one output per
colour channel. Not trained here (no CelebA on this offline machine). Run:

  python train.py --config configs/siren_celeba.py --workdir runs/siren_celeba
"""

from configs import siren_mnist


def get_config():
  config = siren_mnist.get_config()
  config.data.source = 'tfds'
  config.data.name = 'celeb_a'
  config.data.image_size = 64
  config.model.channels = 3
  config.model.latent_dim = 128
  # The latent shifts every layer, not only the first (functa's modulations
  # for CelebA).
  config.model.conditioning = 'shift'
  config.performance.scan_chunk = 4
  config.eval_batch_size = 4
  return config
