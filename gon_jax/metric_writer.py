"""TensorBoard event files (and metrics.jsonl) in a workdir, for train.py and eval.py.

JSON holds no NaN or Infinity: metrics.jsonl writes a value that is not finite as `null`
(training's metrics of a step skipped under `nonfinite='skip'`, whose line has
`train/nonfinite` 1); eval.py refuses to write such metrics at all (`nonfinite`).
"""

import json
import math
import os
from typing import Any

import numpy as np


def nonfinite(metrics: dict[str, Any], prefix: str = '') -> dict[str, float]:
  """`{name: value}` of the metrics that are NaN or infinite.

  Args:
    metrics: `{name: number}`, or nested dicts of numbers (named 'outer/inner').
    prefix: put before each name.

  Returns:
    The non-finite ones, in `metrics`' order; integers, strings and None are finite here.
  """
  found = {}
  for name, value in metrics.items():
    if isinstance(value, dict):
      found.update(nonfinite(value, f'{prefix}{name}/'))
    elif isinstance(value, (float, np.floating)) and not math.isfinite(value):
      found[f'{prefix}{name}'] = float(value)
  return found


class MetricWriter:
  """Scalars and images to TensorBoard event files in `<workdir>/tensorboard`.

  Scalars also go to `<workdir>/metrics.jsonl`, one JSON line per `write` (a value that is
  not finite as null), unless `jsonl` is False (eval.py, whose metrics go to
  eval/metrics.json).
  """

  def __init__(self, workdir: str, jsonl: bool = True):
    # Imported here, not with the module: tensorboardX imports torch where it is installed
    # (seconds), and `gon_jax.load` needs neither.
    from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
    self._summary = SummaryWriter(os.path.join(workdir, 'tensorboard'))
    self._jsonl = (open(os.path.join(workdir, 'metrics.jsonl'), 'a', encoding='utf-8')
                   if jsonl else None)

  def write(self, step: int, scalars: dict[str, float]) -> None:
    """Logs `{name: value}` at `step`; TensorBoard takes NaN, metrics.jsonl gets null."""
    for name, value in scalars.items():
      self._summary.add_scalar(name, value, step)
    if self._jsonl:
      missing = nonfinite(scalars)
      line = {'step': step, **{name: None if name in missing else value
                               for name, value in scalars.items()}}
      self._jsonl.write(json.dumps(line, allow_nan=False) + '\n')
      self._jsonl.flush()

  def write_image(self, step: int, name: str, image: np.ndarray) -> None:
    """Logs a uint8 `[height, width, channels]` image (channels 1, 3 or 4) at `step`."""
    self._summary.add_image(name, image, step, dataformats='HWC')
    self._summary.flush()  # so that TensorBoard shows it while training goes on

  def close(self) -> None:
    self._summary.close()
    if self._jsonl:
      self._jsonl.close()
