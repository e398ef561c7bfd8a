"""Tiny runs of the packaged configs: a few train steps and eval.py, to check that a change
leaves the numbers alone.

  python benchmarks/tiny_runs.py --out /tmp/tiny_before --mnist_dir ../shared/data/mnist \
      [--fashion_dir /usr/share/datasets/fashion-mnist] [--steps 3] [--configs conv_mnist,...]

For each config of configs/ whose data is at hand (MNIST, Fashion-MNIST), runs
`train.py --config.num_steps=STEPS` and `eval.py` in OUT/<config>, then writes
OUT/metrics.json: `{config: eval/metrics.json}`. Compare two of them with
`python benchmarks/tiny_runs.py --compare A/metrics.json B/metrics.json` (exit 1 on any
difference). eval.py evaluates the whole test split, as it always does;
`--config.num_fit_examples` and `--config.elbo_samples` are lowered to keep a run short.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
# Configs whose data this machine cannot have without a download (CelebA, CIFAR-10's pickles).
OTHER_DATA = ('siren_celeba', 'vgon_celeba', 'siren_cifar10', 'conv_cifar10', 'ae_cifar10',
              'tied_ae_cifar10', 'glo_cifar10', 'vgon_cifar10', 'vae_cifar10')


def configs() -> list[str]:
  return sorted(path.stem for path in (REPO / 'configs').glob('*.py')
                if path.stem != '__init__' and path.stem not in OTHER_DATA)


def run(config: str, out: pathlib.Path, steps: int, mnist_dir: str, fashion_dir: str) -> dict:
  """Trains and evaluates `config` in `out/config`; returns its eval/metrics.json."""
  data_dir = fashion_dir if 'fashion' in config else mnist_dir
  workdir = out / config
  overrides = [f'--config.data.dir={data_dir}', '--config.data.download=false',
               '--config.num_fit_examples=200', '--config.elbo_samples=2']
  subprocess.run([sys.executable, str(REPO / 'train.py'), f'--config={REPO}/configs/{config}.py',
                  f'--workdir={workdir}', f'--config.num_steps={steps}',
                  f'--config.eval_every={steps}', f'--config.log_every={steps}',
                  '--config.train_eval_examples=100', *overrides], check=True, cwd=REPO)
  subprocess.run([sys.executable, str(REPO / 'eval.py'), f'--workdir={workdir}', *overrides],
                 check=True, cwd=REPO, stdout=subprocess.DEVNULL)
  return json.loads((workdir / 'eval' / 'metrics.json').read_text())


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--out')
  parser.add_argument('--mnist_dir', default=str(REPO.parent / 'shared' / 'data' / 'mnist'))
  parser.add_argument('--fashion_dir', default='/usr/share/datasets/fashion-mnist')
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--configs', default='', help='comma-separated; default: all at hand')
  parser.add_argument('--compare', nargs=2, metavar=('BEFORE', 'AFTER'))
  args = parser.parse_args()
  if args.compare:
    before, after = (json.loads(pathlib.Path(p).read_text()) for p in args.compare)
    differ = [name for name in sorted(set(before) | set(after))
              if before.get(name) != after.get(name)]
    for name in differ:
      print(f'{name}: {before.get(name)} -> {after.get(name)}')
    print(f'{len(before.keys() & after.keys()) - len(differ)} configs identical, '
          f'{len(differ)} differ')
    sys.exit(1 if differ else 0)
  out = pathlib.Path(args.out)
  names = args.configs.split(',') if args.configs else configs()
  if not os.path.isdir(args.fashion_dir):
    names = [name for name in names if 'fashion' not in name]
  results = {}
  for name in names:
    results[name] = run(name, out, args.steps, args.mnist_dir, args.fashion_dir)
    print(name, json.dumps(results[name], sort_keys=True), flush=True)
  (out / 'metrics.json').write_text(json.dumps(results, indent=2, sort_keys=True) + '\n')


if __name__ == '__main__':
  main()
