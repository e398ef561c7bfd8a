"""The VAE baseline of Table 2 on CIFAR-10: vgon_cifar10's decoder with a mirrored conv
encoder; same loss, data, batch and steps. Data as for configs/conv_cifar10.py (its python
archive, downloaded; or the image folder DIR with train/ and test/, JPEG re-encoded:
"CIFAR-10 (JPEG)"). Run:

  python train.py --config configs/vae_cifar10.py --workdir runs/vae_cifar10
  python train.py --config configs/vae_cifar10.py --workdir runs/vae_cifar10 --config.data.source=folder --config.data.dir=DIR
  python eval.py --workdir runs/vae_cifar10
"""

from gon_jax.configs import vgon_cifar10


def get_config():
  config = vgon_cifar10.get_config()
  config.model.name = 'vae'
  return config
