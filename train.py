"""Trains a GON: python train.py --config configs/conv_mnist.py --workdir DIR.

Any config value can be overridden, e.g. --config.batch_size=128; see the
config files' docstrings for complete commands. Started again with the same
command, training resumes from the last checkpoint in DIR.
"""

import signal

if __name__ == '__main__':
  # A KeyboardInterrupt raised while jax's C++ extensions load fails the import
  # or crashes it: until cli.run takes over, a Ctrl-C is only noted.
  ctrl_c = []
  signal.signal(signal.SIGINT, lambda signum, frame: ctrl_c.append(signum))
  from gon_jax import cli
  from gon_jax.train import train_and_evaluate
  cli.run(train_and_evaluate, interrupted=cli.training_interrupted, ctrl_c=ctrl_c)
