"""Convolutional GON on MNIST (32x32), the recipe of the official GON.py.

Run (offline, with MNIST as the four IDX files in a folder):

  python train.py --config configs/conv_mnist.py --workdir runs/conv_mnist \
      --config.data.source=idx --config.data.dir=../shared/data/mnist
  python eval.py --config configs/conv_mnist.py --workdir runs/conv_mnist \
      --config.data.source=idx --config.data.dir=../shared/data/mnist

With tfds data prepared on this machine, leave out the two data flags.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.batch_size = 64  # global, over all devices and processes
  config.num_steps = 1000
  config.learning_rate = 1e-4
  # 'jit': jax.jit over a NamedSharding data mesh; 'pmap': jax.pmap over local devices.
  config.parallel = 'jit'

  config.data = ml_collections.ConfigDict()
  config.data.source = 'tfds'  # or 'idx': a folder with the four IDX files
  config.data.name = 'mnist'
  config.data.dir = ''  # tfds data_dir, or the IDX folder
  config.data.image_size = 32  # 28x28 MNIST is resized, as in GON.py
  config.data.download = True  # tfds only: may tfds download and prepare it?

  config.model = ml_collections.ConfigDict()
  config.model.name = 'conv'
  config.model.latent_dim = 32
  config.model.features = 16
  config.model.channels = 1
  config.model.activation = 'elu'
  # Per-example normalisation: latents and reconstructions of an image do not
  # depend on the rest of its batch (README: "BatchNorm and GONs").
  config.model.norm = 'layer'

  config.gon = ml_collections.ConfigDict()
  config.gon.num_steps = 1  # latent gradient steps
  config.gon.step_size = 1.0
  config.gon.detach = False
  config.gon.z0_sigma = 0.0  # z0 ~ N(0, sigma^2) in training; the origin at evaluation
  config.gon.start_from_z0 = True  # z = z0 - grad (True) or z = -grad
  # Inner loss per example: 'sum' over pixels, 'mean' over pixels, or
  # 'official' (GON.py: mean over batch and pixels; the latent then shrinks
  # with 1 / batch_size).
  config.gon.inner_reduction = 'sum'

  config.log_every = 50
  config.eval_every = 500
  config.checkpoint_every = 500
  config.eval_batch_size = 500
  config.num_eval_examples = -1  # -1: the whole test split
  config.grid_size = 8  # the reconstruction grid shows grid_size**2 test images
  return config
