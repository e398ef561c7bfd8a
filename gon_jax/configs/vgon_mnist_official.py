"""The variational GON with the official Variational-GON.py's recipe, as closely as gon_jax runs it.

Variational-GON.py (cwkx/GON): latent 48, ngf 32, 32x32 MNIST, BatchNorm,
ELU, a Bernoulli likelihood with KL weight 1, the negative ELBO at z0 = 0 as
the inner loss averaged over the batch, Adam 1e-4, batch 64, PyTorch's
default layer initialisation. As in conv_mnist_official, the inner pass
normalises with BatchNorm's running averages (docs/models.md, "BatchNorm and GONs").
1500 steps: where the official recipe, in eager PyTorch, measured 0.324
bits/dim (docs/results.md). Run:

  python train.py --config configs/vgon_mnist_official.py --workdir runs/vgon_mnist_official
  python eval.py --config configs/vgon_mnist_official.py --workdir runs/vgon_mnist_official
"""

import ml_collections

from gon_jax.configs import vgon_mnist


def get_config() -> ml_collections.ConfigDict:
  config = vgon_mnist.get_config()
  config.num_steps = 1500
  config.model.norm = 'batch'
  config.learning_rate = 1e-4
  config.eval_every = config.checkpoint_every = 500
  return config
