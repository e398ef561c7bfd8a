"""train.py whose checkpoint of step $BLOCK_STEP never commits: a helper for a test
that kills training in the middle of a checkpoint write.

Orbax writes a checkpoint into a temporary folder and renames it when every
file is written; this script blocks that rename (printing BLOCKED) so that
the test can SIGKILL the process while the write is unfinished.
"""

import asyncio
import os
import sys

from orbax.checkpoint._src.path import async_path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gon_jax import cli  # pylint: disable=wrong-import-position
from gon_jax.train import train_and_evaluate  # pylint: disable=wrong-import-position

_rename = async_path.rename


async def _blocking_rename(src, dst):
  if os.path.basename(str(dst)) == os.environ['BLOCK_STEP']:
    print('BLOCKED', flush=True)
    while True:
      await asyncio.sleep(1)
  return await _rename(src, dst)


async_path.rename = _blocking_rename

if __name__ == '__main__':
  cli.run(train_and_evaluate)
