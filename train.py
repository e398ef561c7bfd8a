"""Trains a GON: python train.py --config configs/conv_mnist.py --workdir DIR.

The same as `gon-train` (gon_jax.cli.TRAIN_USAGE);
`--help` lists the flags.
"""

import signal

if __name__ == '__main__':
  # A KeyboardInterrupt raised while jax's C++ extensions load fails the import
  # or crashes it: until cli.run takes over, a Ctrl-C is only noted.
  ctrl_c = []
  signal.signal(signal.SIGINT, lambda signum, frame: ctrl_c.append(signum))
  from gon_jax import cli
  cli.train_main(ctrl_c)
