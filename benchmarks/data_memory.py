"""Host memory of training against the size of the data set: peak RSS and steps/s.

  python benchmarks/data_memory.py --gigabytes 1 4 16 --workdir /tmp/mem

Each run is train.py's training (gon_jax.train.train_and_evaluate: `--config`, conv_mnist at
32x32 grey by default) in a fresh process, on the folder source through the decoded cache, and
reports the time load_split took, the process's peak resident memory (VmHWM) once both splits
are loaded and at the end, steps/s, and its anonymous and file-backed resident memory at the
end.

- `--folder_images N`: a folder of N real PNGs (48x48 RGB, read as 32x32 grey), trained on
  twice: the first run decodes it into the cache, the second memory-maps the cache.
- `--image_folder DIR`: a folder of images of one's own (e.g. CIFAR-10's JPEGs, train/ and
  test/ of class folders), trained on twice in the same way; with a colour config:

    python benchmarks/data_memory.py --image_folder /work/cifar10 --config conv_cifar10 \
        --folder_images 0 --gigabytes --steps 200 --repeats 1 --workdir /tmp/mem_cifar

- `--gigabytes G ...`: synthetic uint8 training splits of G GiB. Writing and decoding 16 GiB of
  PNGs would take hours, so each is written straight into the decoded cache: a folder of a few
  PNGs is loaded once (which makes its cache entry), then the entry's images.npy is replaced
  by G GiB of random 32x32 images; training then reads them as it reads any cached folder.
  Each set is deleted after its run (`--keep` keeps them).

Prints one JSON line per run and, at the end, a Markdown table of each row's medians over
`--repeats` runs (docs/data_own_images.md).
"""

import argparse
import datetime
import importlib
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import time
import types

import numpy as np
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_TEST_IMAGES = 256  # Every set's test split: evaluated at the end of training, as train.py does.


def _write_pngs(folder: pathlib.Path, count: int, rng: np.random.Generator) -> None:
  """`count` 48x48 RGB PNGs of a bright square on a dark ground in `folder`."""
  folder.mkdir(parents=True, exist_ok=True)
  for i in range(count):
    image = np.full((48, 48, 3), 16, np.uint8)
    r, c = rng.integers(0, 28, 2)
    image[r:r + 20, c:c + 20] = rng.integers(128, 256, 3)
    Image.fromarray(image).save(folder / f'{i:07d}.png', compress_level=1)


def _folder_config(folder: pathlib.Path) -> types.SimpleNamespace:
  return types.SimpleNamespace(source='folder', name='mine', dir=str(folder), download=False)


def _synthetic_set(folder: pathlib.Path, gigabytes: float, size: int,
                   rng: np.random.Generator) -> int:
  """A folder whose decoded train split is `gigabytes` GiB of random uint8 [N, size, size, 1]
  images (see the module's docstring); returns N."""
  from gon_jax import data  # pylint: disable=import-outside-toplevel
  _write_pngs(folder / 'train', 8, rng)
  _write_pngs(folder / 'test', _TEST_IMAGES, rng)
  data.load_split(_folder_config(folder), 'train', size, 1)  # Makes the cache entry.
  # The benchmark's cache is its own and holds one set at a time: one train entry.
  (entry,) = data.decoded_cache_dir().glob(f'folder-train-{size}-*')
  num = int(gigabytes * 2**30) // (size * size)
  block = rng.integers(0, 256, (2**16, size, size, 1), dtype=np.uint8)  # 64 MiB at 32x32.
  temporary = entry / 'images.npy.tmp'
  with open(temporary, 'wb') as f:
    np.lib.format.write_array_header_1_0(
        f, {'descr': '|u1', 'fortran_order': False, 'shape': (num, size, size, 1)})
    for start in range(0, num, len(block)):
      rows = min(len(block), num - start)
      (block[:rows] ^ np.uint8(start // len(block) % 256)).tofile(f)  # Each block its own.
  os.replace(temporary, entry / 'images.npy')
  np.save(entry / 'labels.npy', np.zeros(num, np.int32))
  return num


def _child(args: argparse.Namespace) -> None:
  """One training run, in this process; prints its measurements as a JSON line."""
  from gon_jax import data, train  # pylint: disable=import-outside-toplevel
  config = importlib.import_module(f'gon_jax.configs.{args.config}').get_config()
  config.data.source, config.data.dir = 'folder', args.folder
  config.data.image_size, config.batch_size = args.image_size, args.batch_size
  config.num_steps, config.log_every = args.steps, max(args.steps // 5, 1)
  config.eval_every = config.checkpoint_every = args.steps
  start = time.perf_counter()
  train_images = data.load_data(
      config.data, config.model.channels, config.classifier.num_classes)[0]  # Timed here; training reuses the arrays.
  load_seconds = time.perf_counter() - start
  load_peak_mib = _status_mib('VmHWM')  # Loading (decoding) both splits, before any training.
  train.train_and_evaluate(config, args.run)
  with open(os.path.join(args.run, 'metrics.jsonl'), encoding='utf-8') as f:
    rates = [line['train/steps_per_second'] for line in map(json.loads, f)
             if 'train/steps_per_second' in line]
  print(json.dumps({
      'train_images': len(train_images), 'uint8_mib': round(train_images.nbytes / 2**20, 1),
      'memory_mapped': isinstance(train_images, np.memmap),
      'load_seconds': round(load_seconds, 2), 'load_peak_rss_mib': load_peak_mib,
      'steps_per_second': round(float(np.mean(rates)), 1),
      'peak_rss_mib': _status_mib('VmHWM'), 'rss_anon_mib': _status_mib('RssAnon'),
      'rss_file_mib': _status_mib('RssFile')}))


def _status_mib(key: str) -> float:
  """This process's /proc/self/status entry `key` (VmHWM, RssAnon, ...) in MiB."""
  status = dict(line.split(':', 1) for line in
                pathlib.Path('/proc/self/status').read_text().splitlines() if ':' in line)
  return round(int(status[key].split()[0]) / 1024, 1)


def _runs(args: argparse.Namespace, folder: pathlib.Path, label: str, fresh_cache: bool) -> dict:
  """`args.repeats` runs on `folder`, each measure their median (the runs' memory varies by
  tens of MiB, with XLA's); `fresh_cache`: the decoded cache is emptied before each."""
  results = []
  for _ in range(args.repeats):
    if fresh_cache:
      shutil.rmtree(pathlib.Path(args.workdir) / 'cache', ignore_errors=True)
    results.append(_run(args, folder, label))
  return {key: (float(np.median([r[key] for r in results])) if isinstance(value, float)
                else value) for key, value in results[0].items()}


def _run(args: argparse.Namespace, folder: pathlib.Path, label: str) -> dict:
  run = pathlib.Path(args.workdir) / 'runs' / 'run'
  shutil.rmtree(run, ignore_errors=True)
  command = [sys.executable, __file__, '--child', '--folder', str(folder), '--run', str(run),
             '--workdir', args.workdir, '--steps', str(args.steps), '--batch_size',
             str(args.batch_size), '--image_size', str(args.image_size), '--config', args.config]
  result = subprocess.run(command, capture_output=True, text=True, check=False)
  if result.returncode:
    sys.exit(f'error: the run on {folder} failed:\n{result.stderr[-3000:]}')
  measured = {'set': label, **json.loads(result.stdout.strip().splitlines()[-1])}
  print(json.dumps(measured), flush=True)
  return measured


def _table(rows: list[dict], args: argparse.Namespace) -> str:
  cpu = next((line.split(':', 1)[1].strip() for line in
              pathlib.Path('/proc/cpuinfo').read_text().splitlines()
              if line.startswith('model name')), platform.processor())
  memory = int(pathlib.Path('/proc/meminfo').read_text().split()[1]) / 2**20
  lines = [f'{datetime.date.today()}, {cpu}, {os.cpu_count()} cores, {memory:.0f} GiB; '
           f'{args.config} at {args.image_size}x{args.image_size}, batch {args.batch_size}, '
           f'{args.steps} steps; medians of {args.repeats} runs.', '',
           '| training split | images | uint8 size | load_split | peak RSS after loading | '
           'steps/s | peak RSS | RSS at the end: anonymous / file |',
           '|---|---:|---:|---:|---:|---:|---:|---:|']
  for row in rows:
    lines.append(f"| {row['set']} | {row['train_images']:,} | {row['uint8_mib']:,.0f} MiB | "
                 f"{row['load_seconds']:.2f} s | {row['load_peak_rss_mib']:,.0f} MiB | "
                 f"{row['steps_per_second']:.1f} | "
                 f"{row['peak_rss_mib']:,.0f} MiB | {row['rss_anon_mib']:,.0f} / "
                 f"{row['rss_file_mib']:,.0f} MiB |")
  return '\n'.join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
  parser.add_argument('--gigabytes', type=float, nargs='*', default=[1.0, 4.0, 16.0],
                      help='sizes (GiB) of the synthetic training splits, grey images (for a '
                           'grey --config); none: --gigabytes alone')
  parser.add_argument('--folder_images', type=int, default=20000,
                      help='PNGs of the real folder, trained on twice (0: none)')
  parser.add_argument('--image_folder', default='',
                      help='a folder of images of your own (train/ and test/), trained on twice')
  parser.add_argument('--config', default='conv_mnist',
                      help="the packaged config trained (its model.channels: 'conv_cifar10' "
                           'reads colour)')
  parser.add_argument('--workdir', required=True, help='sets, cache and runs go here')
  parser.add_argument('--steps', type=int, default=500, help='training steps of a run')
  parser.add_argument('--batch_size', type=int, default=64)
  parser.add_argument('--image_size', type=int, default=32)
  parser.add_argument('--repeats', type=int, default=3, help='runs of each row (its medians)')
  parser.add_argument('--keep', action='store_true', help='keep the sets after their runs')
  parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
  parser.add_argument('--folder', help=argparse.SUPPRESS)
  parser.add_argument('--run', help=argparse.SUPPRESS)
  args = parser.parse_args()
  workdir = pathlib.Path(args.workdir).expanduser().resolve()
  args.workdir = str(workdir)
  os.environ['XDG_CACHE_HOME'] = str(workdir / 'cache')  # The runs' decoded cache: private.
  if args.child:
    _child(args)
    return
  rng = np.random.default_rng(0)
  rows = []
  if args.folder_images:
    folder = workdir / f'folder_{args.folder_images}'
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(workdir / 'cache', ignore_errors=True)
    _write_pngs(folder / 'train', args.folder_images, rng)
    _write_pngs(folder / 'test', _TEST_IMAGES, rng)
    rows.append(_runs(args, folder, f'{args.folder_images:,} PNGs, first run (decodes)', True))
    rows.append(_runs(args, folder, f'{args.folder_images:,} PNGs, second run (cache)', False))
    if not args.keep:
      shutil.rmtree(folder)
  if args.image_folder:
    folder = pathlib.Path(args.image_folder).expanduser().resolve()
    shutil.rmtree(workdir / 'cache', ignore_errors=True)
    rows.append(_runs(args, folder, f'{folder.name}, first run (decodes)', True))
    rows.append(_runs(args, folder, f'{folder.name}, second run (cache)', False))
  for gigabytes in args.gigabytes:
    folder = workdir / f'synthetic_{gigabytes:g}gib'
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(workdir / 'cache', ignore_errors=True)
    _synthetic_set(folder, gigabytes, args.image_size, rng)
    rows.append(_runs(args, folder, f'synthetic {gigabytes:g} GiB (cache)', False))
    if not args.keep:
      shutil.rmtree(folder)
      shutil.rmtree(workdir / 'cache')
  print(_table(rows, args))


if __name__ == '__main__':
  main()
