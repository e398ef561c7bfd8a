"""gon_jax's train step against eager PyTorch's, every family, on this machine: one table.

  python benchmarks/performance_table.py [--rounds 3] [--write docs/performance.md]
      [--torch_python PYTHON]

For each family (the convolutional, implicit and variational GONs and the VAE baseline)
runs benchmarks/bench.py on its config and benchmarks/pytorch_reference.py on the same
network, each in a fresh process, alternating the two sides `--rounds` times so that a
shared machine's drift falls on both alike. Both time batch 64 of random images after
warm-up. Prints a Markdown table of each side's range of steps/s and their ratio (gon_jax
over PyTorch, the lowest and highest of the rounds' ratios), with the target the ratio
should reach; `--write FILE` also puts the table into FILE between the lines
`<!-- performance-table -->` and `<!-- /performance-table -->`. Needs torch
(`pip install torch`) in this Python, or in the one `--torch_python` names (a venv of its
own keeps torch out of gon_jax's imports: tensorboardX imports it when it is installed).
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
BEGIN, END = '<!-- performance-table -->', '<!-- /performance-table -->'

# family -> (config, pytorch_reference.py's arguments, timed steps, warm-up steps, target ratio)
FAMILIES = {
    'convolutional GON': ('conv_mnist', ['--model', 'conv', '--norm', 'layer'], 100, 10, 2.5),
    'implicit GON (SIREN)': ('siren_mnist', ['--model', 'siren'], 8, 2, 1.5),
    'variational GON': ('vgon_mnist', ['--model', 'vgon'], 50, 5, 1.5),
    'VAE baseline': ('vae_mnist', ['--model', 'vae'], 50, 5, 1.5),
}


def _steps_per_second(python: str, command: list[str]) -> float:
  """Runs a benchmark script; the steps_per_second of the JSON line it ends with."""
  result = subprocess.run([python, *command], cwd=REPO, check=True, capture_output=True,
                          text=True)
  return json.loads(result.stdout.strip().splitlines()[-1])['steps_per_second']


def measure(rounds: int, torch_python: str) -> dict[str, list[tuple[float, float]]]:
  """`{family: [(gon_jax steps/s, PyTorch steps/s) per round]}`, the sides alternating."""
  rates = {family: [] for family in FAMILIES}
  for round_index in range(rounds):
    for family, (config, reference_args, steps, warmup, _) in FAMILIES.items():
      timing = [f'--steps={steps}', f'--warmup={warmup}']
      ours = _steps_per_second(sys.executable, ['benchmarks/bench.py', '--config',
                                                f'configs/{config}.py', *timing])
      theirs = _steps_per_second(torch_python, ['benchmarks/pytorch_reference.py',
                                                *reference_args, *timing])
      rates[family].append((ours, theirs))
      print(f'round {round_index + 1}: {family}: gon_jax {ours:.2f}, PyTorch {theirs:.2f} '
            'steps/s', file=sys.stderr, flush=True)
  return rates


def _span(values: list[float]) -> str:
  low, high = min(values), max(values)
  return f'{low:.2f}' if f'{low:.2f}' == f'{high:.2f}' else f'{low:.2f}-{high:.2f}'


def table(rates: dict[str, list[tuple[float, float]]], machine: str) -> str:
  """The Markdown table of `measure`'s rates, with the command and machine that made it."""
  rounds = len(next(iter(rates.values())))
  lines = [f'`python benchmarks/performance_table.py --rounds {rounds}`: {machine}, '
           f'{datetime.date.today().isoformat()}, commit {_commit()}; batch 64, random images; steps/s over '
           f'{rounds} alternating rounds.', '',
           '| family | config | gon_jax steps/s | eager PyTorch steps/s | gon_jax / PyTorch | '
           'target |', '|---|---|---|---|---|---|']
  for family, pairs in rates.items():
    config, _, _, _, target = FAMILIES[family]
    ratios = [ours / theirs for ours, theirs in pairs]
    reached = 'met' if min(ratios) >= target else 'not met'
    lines.append(f'| {family} | `{config}` | {_span([p[0] for p in pairs])} | '
                 f'{_span([p[1] for p in pairs])} | {_span(ratios)}x | {target}x: {reached} |')
  return '\n'.join(lines)


def marked(begin: str, end: str) -> re.Pattern:
  """The lines `begin` and `end` and what lies between them."""
  return re.compile(f'{re.escape(begin)}\n.*?{re.escape(end)}', re.S)


def write_between_markers(path: pathlib.Path, text: str, begin: str = BEGIN,
                          end: str = END) -> None:
  """Replaces what lies between the lines `begin` and `end` in `path` with `text`."""
  path.write_text(marked(begin, end).sub(lambda _: f'{begin}\n{text}\n{end}', path.read_text()))


_MARKED = marked(BEGIN, END)


def _commit() -> str:
  """The repository's commit, marked `+changes` when the work tree differs from it."""
  git = lambda *args: subprocess.run(['git', *args], cwd=REPO, capture_output=True, text=True,
                                     check=False).stdout.strip()
  return (git('rev-parse', '--short', 'HEAD') or 'unknown') + (
      '+changes' if git('status', '--porcelain', '--untracked-files=no') else '')


def _machine() -> str:
  cpu = platform.processor() or platform.machine()
  try:
    cpu = next(line.split(':', 1)[1].strip() for line in
               pathlib.Path('/proc/cpuinfo').read_text().splitlines()
               if line.startswith('model name'))
  except (OSError, StopIteration):
    pass
  return f'{cpu}, {os.cpu_count()} cores'


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
  parser.add_argument('--rounds', type=int, default=3, help='alternating rounds of both sides')
  parser.add_argument('--write', type=pathlib.Path, default=None,
                      help='a Markdown file to put the table into, between the markers')
  parser.add_argument('--torch_python', default=sys.executable,
                      help='the Python that runs pytorch_reference.py (has torch)')
  args = parser.parse_args()
  if args.rounds < 1:
    parser.error('--rounds must be 1 or more')
  if args.write and not (args.write.is_file() and _MARKED.search(args.write.read_text())):
    parser.error(f'--write {args.write}: not a file with the lines {BEGIN} and {END} '
                 'to write the table between')  # said before minutes of measuring
  text = table(measure(args.rounds, args.torch_python), _machine())
  print(text)
  if args.write:
    write_between_markers(args.write, text)


if __name__ == '__main__':
  main()
