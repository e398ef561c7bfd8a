"""Variational GON on CIFAR-10 (32x32x3): vgon_mnist's recipe (Variational-GON.py's
decoder, latent 48, features 32, Bernoulli likelihood, layer norm, Adam 1e-3) with three
output channels. eval.py reports the test negative ELBO in bits/dim and writes a grid of
samples from N(0, I). Data as for configs/conv_cifar10.py (its python archive, downloaded;
or the image folder DIR with train/ and test/, JPEG re-encoded: "CIFAR-10 (JPEG)"). Run:

  python train.py --config configs/vgon_cifar10.py --workdir runs/vgon_cifar10
  python train.py --config configs/vgon_cifar10.py --workdir runs/vgon_cifar10 --config.data.source=folder --config.data.dir=DIR
  python eval.py --workdir runs/vgon_cifar10
"""

from gon_jax.configs import conv_cifar10, vgon_mnist


def get_config():
  return conv_cifar10.use_cifar10(vgon_mnist.get_config())
