"""The GON classifier with a 2-D latent (Fig. 12): eval.py saves eval/latents.png,
the test latents coloured by class. Run:

  python train.py --config configs/gon_classifier_mnist_2d.py --workdir runs/gon_classifier_2d
  python eval.py --config configs/gon_classifier_mnist_2d.py --workdir runs/gon_classifier_2d
"""

from gon_jax.configs import gon_classifier_mnist


def get_config():
  config = gon_classifier_mnist.get_config()
  config.model.latent_dim = 2
  return config
