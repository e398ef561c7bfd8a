"""Implicit GON on MNIST: a SIREN of 4 layers of 256 over 28x28 coordinates.

The recipe of the official Implicit-GON.py: latent 32, w0 = 30, batch 64,
Adam 1e-4, 206,593 parameters. Run:

  python train.py --config configs/siren_mnist.py --workdir runs/siren_mnist
  python eval.py --config configs/siren_mnist.py --workdir runs/siren_mnist

eval.py also writes super-resolved (256x256), interpolation and sample grids.
"""

import ml_collections

from gon_jax.config import base_config


def get_config() -> ml_collections.ConfigDict:
  config = base_config('siren')
  config.data.image_size = 28  # the coordinate grid used in training
  config.num_steps = 500
  config.eval_every = 100
  config.checkpoint_every = 100
  config.log_every = 10
  config.train_eval_examples = 1000  # during training; eval.py uses the whole test split

  # 16 images at a time: their activations stay in cache, and they share one
  # forward pass at the origin (1.5x faster than 1 or 64 at a time on a
  # 2-core CPU; docs/performance.md).
  config.performance.scan_chunk = 16
  config.eval_batch_size = 16

  config.model.latent_dim = 32
  config.model.widths = (256, 256, 256, 256)
  config.model.channels = 1
  config.model.w0 = 30.0

  config.gon.inner_reduction = 'official'  # Implicit-GON.py: mean over the batch, sum over pixels
  return config
