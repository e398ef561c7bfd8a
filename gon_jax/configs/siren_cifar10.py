"""Implicit GON on CIFAR-10, 32x32x3 colour images, with shift modulations of every sine
layer: the implicit ablation's winner, which on colour digits also beat concatenation
(docs/results.md). eval.py renders the test latents at 4x, 128x128 (superres_size; Fig. 5
trains at 32x32 and renders at 256x256: --config.superres_size=256). Data as for
configs/conv_cifar10.py (its python archive, downloaded into the cache the first time as
MNIST is; or the image folder DIR with train/ and test/, JPEG re-encoded: "CIFAR-10
(JPEG)"). Run:

  python train.py --config configs/siren_cifar10.py --workdir runs/siren_cifar10
  python train.py --config configs/siren_cifar10.py --workdir runs/siren_cifar10 --config.data.source=folder --config.data.dir=DIR
  python eval.py --workdir runs/siren_cifar10
"""

from gon_jax.configs import conv_cifar10, siren_mnist


def get_config():
  config = conv_cifar10.use_cifar10(siren_mnist.get_config())
  config.model.latent_dim = 64
  config.model.conditioning = 'shift'
  config.superres_size = 128  # 4x the 32x32 it trains on
  return config
