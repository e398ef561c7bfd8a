"""The paper's 4,385-parameter implicit GON on MNIST (Fig. 4a, Fig. 15a).

Four sine layers of width 32 over 2 coordinates plus a 34-dimensional latent,
and a linear output: 36*32+32 + 3*(32*32+32) + 33 = 4,385 parameters. Run:

  python train.py --config configs/siren_mnist_tiny.py --workdir runs/siren_tiny
"""

from configs import siren_mnist


def get_config():
  config = siren_mnist.get_config()
  config.model.latent_dim = 34
  config.model.widths = (32, 32, 32, 32)
  return config
