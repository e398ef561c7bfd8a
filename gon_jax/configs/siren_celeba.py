"""Implicit GON on CelebA at 64x64x3: shift modulations of every sine layer from a
128-dimensional latent, one output per colour channel.

CelebA arrives by itself like MNIST (gon_jax.download: img_align_celeba.zip, 1.4 GB, and
list_eval_partition.txt from its authors' Google Drive, md5-checked, into
~/.cache/gon_jax/celeb_a; or --config.data.dir=FOLDER holding them). Each image is
cropped to its centred 178x178 square and resized to 64x64 as it is decoded; the 162,770
training images then take 8 GB of host memory as float32. Not trained here (no CelebA on
this offline machine). Run:

  python train.py --config configs/siren_celeba.py --workdir runs/siren_celeba
"""

from gon_jax.configs import siren_mnist


def get_config():
  config = siren_mnist.get_config()
  config.data.source = 'celeba'
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
