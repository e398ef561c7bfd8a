"""The convolutional GON with the official GON.py's recipe, as closely as gon_jax runs it.

GON.py (cwkx/GON): latent 32, ngf 16, 32x32 MNIST, BatchNorm, ELU, Adam
1e-4, batch 64, the inner loss averaged over the batch and the pixels, and
PyTorch's default layer initialisation. One difference stays: the inner pass
at the origin normalises with BatchNorm's running averages (docs/models.md,
"BatchNorm and GONs"), so that evaluation with running averages works; GON.py uses
batch statistics there. 3000 steps: where the official recipe reaches test
SSE 9.94 in eager PyTorch (docs/results.md). Run:

  python train.py --config configs/conv_mnist_official.py --workdir runs/conv_mnist_official
  python eval.py --config configs/conv_mnist_official.py --workdir runs/conv_mnist_official
"""

import ml_collections

from gon_jax.configs import conv_mnist


def get_config() -> ml_collections.ConfigDict:
  config = conv_mnist.get_config()
  config.num_steps = 3000
  config.model.norm = 'batch'
  config.learning_rate = 1e-4
  config.gon.inner_reduction = 'official'
  config.eval_every = config.checkpoint_every = 1000
  return config
