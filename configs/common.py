"""What every config shares: optimisation, data, GON options, logging."""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.batch_size = 64  # global, over all devices and processes
  config.num_steps = 1000
  config.learning_rate = 1e-4
  config.grad_clip_norm = 0.0  # clip gradients to this global norm; 0: off
  # A step with a non-finite loss or gradient norm changes nothing; then
  # 'stop': end the run with an error (the last checkpoint is kept), or
  # 'skip': go on, counting such steps (train/skipped_steps).
  config.nonfinite = 'stop'
  # 'jit': jax.jit over a NamedSharding data mesh; 'pmap': jax.pmap over local devices.
  config.parallel = 'jit'
  # Examples per step of a scan over each device's batch (0: the whole batch
  # at once). Same gradients; small chunks keep activations in cache.
  config.scan_chunk = 0
  # Rematerialise the decoder (jax.checkpoint): its activations are recomputed
  # in the backward passes instead of kept, for images too large to fit.
  config.remat = False
  # XLA:CPU's YNNPACK fusions in the train step (off: faster for GONs; README "Performance").
  config.cpu_ynn_fusions = False

  config.data = ml_collections.ConfigDict()
  # 'idx': the four IDX files of an MNIST-like set in a folder; 'tfds': a TFDS data set.
  config.data.source = 'idx'
  config.data.name = 'mnist'
  # idx: the folder with the IDX files; '' = the cache folder, $XDG_CACHE_HOME/gon_jax/<name>
  # or ~/.cache/gon_jax/<name>. tfds: its data_dir; '' = tfds's default.
  config.data.dir = ''
  config.data.image_size = 32
  # May the data arrive by itself? idx: mnist and fashion_mnist are downloaded (checksummed)
  # into a folder holding no IDX files; tfds: tfds may download and prepare the set.
  config.data.download = True
  config.data.mirror = ''  # idx: a base URL holding the IDX .gz files; '' = the usual mirrors

  config.gon = ml_collections.ConfigDict()
  config.gon.num_steps = 1  # latent gradient steps
  config.gon.step_size = 1.0
  config.gon.detach = False
  config.gon.z0_sigma = 0.0  # z0 ~ N(0, sigma^2) in training; the origin at evaluation
  config.gon.start_from_z0 = True  # z = z0 - grad (True) or z = -grad
  # Inner loss per example: 'sum' over pixels, 'mean' over pixels, or
  # 'official' (the official scripts' averages over the batch: latents then
  # shrink with 1 / batch_size).
  config.gon.inner_reduction = 'sum'
  # Implicit models: losses on this many random pixels per image and step
  # (Monte Carlo estimates); 0 for every pixel.
  config.gon.inner_points = 0
  config.gon.outer_points = 0
  # What the inner loss observes: 'all', 'lowres:K' (every K-th row and
  # column), 'hole:S' (all but a centred SxS square). The outer loss sees all.
  config.gon.observe = 'all'
  # Decode the origin once for the batch when every example starts there
  # (same latents, fewer passes; README "Performance"). False: once per example.
  config.gon.shared_origin = True

  # A linear softmax classifier on the latents (Eq. 13): num_classes > 0 adds
  # it to GON models; the training loss is reconstruction_weight times the
  # reconstruction loss plus classification_weight times the cross-entropy.
  config.classifier = ml_collections.ConfigDict()
  config.classifier.num_classes = 0
  config.classifier.reconstruction_weight = 1.0
  config.classifier.classification_weight = 1.0

  # Model 'glo' only: the latent table's initial scale and Adam learning rate,
  # and the Adam steps and learning rate that fit the latents of unseen images.
  config.glo = ml_collections.ConfigDict()
  config.glo.init_sigma = 1.0
  config.glo.learning_rate = 1e-2
  config.glo.test_steps = 25
  config.glo.test_learning_rate = 0.1

  config.log_every = 50
  config.eval_every = 500
  config.checkpoint_every = 500
  config.eval_batch_size = 500
  config.train_eval_examples = -1  # test images evaluated during training; -1: all (eval.py: all)
  config.grid_size = 8  # image grids show grid_size**2 images
  config.num_fit_examples = 2000  # eval.py: training latents of the Gaussian it samples (App. D)
  config.superres_size = 256  # eval.py, implicit models: resolution of the super-resolved grid
  return config
