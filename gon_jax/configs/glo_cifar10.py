"""GLO, the multi-step baseline of Table 1, on CIFAR-10: conv_cifar10's decoder and one
latent per training image (50,000 x 512), optimised jointly; test latents are fitted with
glo.test_steps Adam steps. Data as for configs/conv_cifar10.py (its python archive,
downloaded; or the image folder DIR with train/ and test/, JPEG re-encoded: "CIFAR-10
(JPEG)"). Run:

  python train.py --config configs/glo_cifar10.py --workdir runs/glo_cifar10
  python train.py --config configs/glo_cifar10.py --workdir runs/glo_cifar10 --config.data.source=folder --config.data.dir=DIR
  python eval.py --workdir runs/glo_cifar10
"""

from gon_jax.configs import conv_cifar10


def get_config():
  config = conv_cifar10.get_config()
  config.model.name = 'glo'
  return config
