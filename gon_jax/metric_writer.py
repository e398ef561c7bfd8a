"""TensorBoard event files (and metrics.jsonl) in a workdir, for train.py and eval.py.

JSON holds no NaN or Infinity: metrics.jsonl (and training's epochs.jsonl) write a value that
is not finite as `null` (training's metrics of a step skipped under `nonfinite='skip'`, whose
line has `train/nonfinite` 1), and `read_jsonl` reads it as NaN again; eval.py refuses to
write such metrics at all (`nonfinite`).
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


def json_line(record: dict[str, Any]) -> str:
  """`record` (flat: `{name: value}`) as one line of JSON, a value that is not finite as null."""
  missing = nonfinite(record)
  return json.dumps({name: None if name in missing else value
                     for name, value in record.items()}, allow_nan=False)


def read_jsonl(path: str) -> list[dict[str, Any]]:
  """The records of a JSON-lines file such as metrics.jsonl, null as NaN; none if no file."""
  if not os.path.exists(path):
    return []
  with open(path, encoding='utf-8') as f:
    records = [json.loads(line) for line in f if line.strip()]
  return [{name: float('nan') if value is None else value for name, value in record.items()}
          for record in records]


def write_jsonl(path: str, records: list[dict[str, Any]]) -> None:
  """Writes `records` as the JSON-lines file `path` (`json_line`), atomically."""
  temporary = path + '.tmp'
  with open(temporary, 'w', encoding='utf-8') as f:
    f.writelines(json_line(record) + '\n' for record in records)
  os.replace(temporary, path)


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
      self._jsonl.write(json_line({'step': step, **scalars}) + '\n')
      self._jsonl.flush()

  def write_image(self, step: int, name: str, image: np.ndarray) -> None:
    """Logs a uint8 `[height, width, channels]` image (channels 1, 3 or 4) at `step`."""
    self._summary.add_image(name, image, step, dataformats='HWC')
    self._summary.flush()  # so that TensorBoard shows it while training goes on

  def close(self) -> None:
    self._summary.close()
    if self._jsonl:
      self._jsonl.close()
