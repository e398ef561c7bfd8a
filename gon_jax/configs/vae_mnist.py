"""The VAE baseline of Table 2: vgon_mnist's decoder with a mirrored conv encoder.

Same loss, data, batch and steps as configs/vgon_mnist.py. Run:

  python train.py --config configs/vae_mnist.py --workdir runs/vae_mnist
  python eval.py --config configs/vae_mnist.py --workdir runs/vae_mnist
"""

from gon_jax.configs import vgon_mnist


def get_config():
  config = vgon_mnist.get_config()
  config.model.name = 'vae'
  return config
