"""Evaluates the latest checkpoint on the test split.

  python eval.py --config configs/conv_mnist.py --workdir DIR

Writes DIR/eval/metrics.json and DIR/eval/reconstructions.png and prints the
metrics as JSON on its last line.
"""

from gon_jax import cli
from gon_jax.evaluate import evaluate_checkpoint

if __name__ == '__main__':
  cli.run(evaluate_checkpoint)
