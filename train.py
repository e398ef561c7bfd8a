"""Trains a GON: python train.py --config configs/conv_mnist.py --workdir DIR.

Any config value can be overridden, e.g. --config.batch_size=128; see the
config files' docstrings for complete commands.
"""

from gon_jax import cli
from gon_jax.train import train_and_evaluate

if __name__ == '__main__':
  cli.run(train_and_evaluate)
