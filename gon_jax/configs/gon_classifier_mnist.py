"""The GON classifier of Eq. 13 on MNIST: conv_mnist's GON, a linear softmax
layer on the latent, trained with cross-entropy and the reconstruction loss
(set classifier.reconstruction_weight=0 for a classifier only). eval.py
reports test accuracy. Run:

  python train.py --config configs/gon_classifier_mnist.py --workdir runs/gon_classifier
  python eval.py --config configs/gon_classifier_mnist.py --workdir runs/gon_classifier
"""

from gon_jax.configs import conv_mnist


def get_config():
  config = conv_mnist.get_config()
  config.classifier.num_classes = 10
  return config
