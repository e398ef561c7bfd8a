"""Variational GON on MNIST (section 3.3, Variational-GON.py): 268,033 parameters.

Latent 48, features 32, 32x32, Bernoulli likelihood on [0, 1] pixels, KL
weight 1, batch 64, PyTorch's layer initialisation, layer norm and Adam 1e-3
(Variational-GON.py: BatchNorm and 1e-4, configs/vgon_mnist_official.py;
1e-3 learns faster, docs/results.md). eval.py reports the
test negative ELBO in bits/dim and writes a grid of samples from N(0, I). Run:

  python train.py --config configs/vgon_mnist.py --workdir runs/vgon_mnist
  python eval.py --config configs/vgon_mnist.py --workdir runs/vgon_mnist
"""

import ml_collections

from gon_jax.config import base_config


def get_config() -> ml_collections.ConfigDict:
  config = base_config('vgon')
  config.data.image_size = 32

  config.model.latent_dim = 48
  config.model.features = 32
  config.model.channels = 1
  config.model.activation = 'elu'
  config.model.norm = 'layer'
  config.model.likelihood = 'bernoulli'  # or 'gaussian' (fixed gaussian_sigma)
  config.model.gaussian_sigma = 0.1
  config.model.kl_weight = 1.0  # beta
  config.model.kl_warmup_steps = 0  # linear warm-up of beta; 0: none

  # The inner loss is the same negative ELBO at z0 = 0; the official code
  # averages it over the batch.
  config.gon.inner_reduction = 'official'
  config.model.init = 'pytorch'
  config.learning_rate = 1e-3
  return config
