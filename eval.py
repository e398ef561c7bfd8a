"""Evaluates the latest checkpoint on the test split.

  python eval.py --config configs/conv_mnist.py --workdir DIR

Writes DIR/eval/: metrics.json, reconstructions.png, interpolation.png,
samples.png, and for some models superres.png and latents.png; prints the
metrics as JSON on its last line.
"""

import signal

if __name__ == '__main__':
  # A KeyboardInterrupt raised while jax's C++ extensions load fails the import
  # or crashes it: until cli.run takes over, a Ctrl-C is only noted.
  ctrl_c = []
  signal.signal(signal.SIGINT, lambda signum, frame: ctrl_c.append(signum))
  from gon_jax import cli
  from gon_jax.evaluate import evaluate_checkpoint
  cli.run(evaluate_checkpoint, ctrl_c=ctrl_c)
