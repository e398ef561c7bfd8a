"""GLO, the multi-step baseline of Table 1: conv_mnist's decoder and one
latent per training image, optimised jointly (Adam, learning rate
glo.learning_rate); test latents are fitted with glo.test_steps Adam steps.
Run:

  python train.py --config configs/glo_mnist.py --workdir runs/glo_mnist
  python eval.py --config configs/glo_mnist.py --workdir runs/glo_mnist
"""

from gon_jax.configs import conv_mnist


def get_config():
  config = conv_mnist.get_config()
  config.model.name = 'glo'
  return config
