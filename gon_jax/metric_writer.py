"""TensorBoard event files (and metrics.jsonl) in a workdir, for train.py and eval.py."""

import json
import os

import numpy as np
from tensorboardX import SummaryWriter


class MetricWriter:
  """Scalars and images to TensorBoard event files in `<workdir>/tensorboard`.

  Scalars also go to `<workdir>/metrics.jsonl`, one JSON line per `write`,
  unless `jsonl` is False (eval.py, whose metrics go to eval/metrics.json).
  """

  def __init__(self, workdir: str, jsonl: bool = True):
    self._summary = SummaryWriter(os.path.join(workdir, 'tensorboard'))
    self._jsonl = (open(os.path.join(workdir, 'metrics.jsonl'), 'a', encoding='utf-8')
                   if jsonl else None)

  def write(self, step: int, scalars: dict[str, float]) -> None:
    """Logs `{name: value}` at `step`."""
    for name, value in scalars.items():
      self._summary.add_scalar(name, value, step)
    if self._jsonl:
      self._jsonl.write(json.dumps({'step': step, **scalars}) + '\n')
      self._jsonl.flush()

  def write_image(self, step: int, name: str, image: np.ndarray) -> None:
    """Logs a uint8 `[height, width, channels]` image (channels 1, 3 or 4) at `step`."""
    self._summary.add_image(name, image, step, dataformats='HWC')
    self._summary.flush()  # so that TensorBoard shows it while training goes on

  def close(self) -> None:
    self._summary.close()
    if self._jsonl:
      self._jsonl.close()
