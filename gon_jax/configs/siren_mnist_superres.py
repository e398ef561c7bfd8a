"""Implicit GON whose inner loss sees only a 14x14 subset of each 28x28 image
(every 2nd row and column) while the outer loss sees all of it (section 3.5):
the latent of a low-resolution image decodes to the full-resolution one. Run:

  python train.py --config configs/siren_mnist_superres.py --workdir runs/siren_superres

For inpainting instead, hide a centred square: --config.gon.observe=hole:10
"""

from gon_jax.configs import siren_mnist


def get_config():
  config = siren_mnist.get_config()
  config.gon.observe = 'lowres:2'
  return config
