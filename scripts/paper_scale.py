"""The paper-scale tables and figures of docs/results.md, read from the runs that made them.

  python scripts/paper_scale.py --root runs/paper_scale --out docs/paper_scale

prints Markdown (Table 1 per recipe, and in both of BatchNorm's modes on test and training
images; the recipe ablation; the inner steps; Table 2; Fig. 3's final losses and modes;
Fig. 2a's losses after 5 epochs) and writes the curves (PNG) into --out. Only finished runs
count; a cell over several seeds is mean ± std (seeds). The root holds what
docs/reproducing.md's paper-scale commands write (the BatchNorm modes are read from --out's
batchnorm_modes_*.json, written by gon_jax.experiments.batchnorm_modes):

  table1_<dataset>_<recipe>/   compare --epochs 10 --datasets <dataset> --recipe <recipe>
  table2/<model>_<dataset>/    train.py --config.num_epochs=10, eval.py, gon_jax.sample_quality
  fig3_latent<k>/              compare --epochs 5 --datasets cifar10 --override model.latent_dim=<k>
  fig2a_side<s>/               compare --epochs 5 --datasets cifar10 --methods gon,ae
                                 --override model.latent_side=<s> (side 1: table1_cifar10_paper)
  inner_steps_mnist/           compare --epochs 3 --datasets mnist --recipe paper
                                 --methods detach_10,steps_10
  ablation_mnist_<change>/     compare --epochs 10 --datasets mnist --recipe paper --override ...

with <dataset> mnist, fashion_mnist or cifar10 and <recipe> paper or default.
"""

import argparse
import json
import math
import pathlib
import statistics
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# pylint: disable=wrong-import-position
from gon_jax import saved_config
from gon_jax.experiments.compare import DATASET_TITLES, mean_std_cell, plot_epoch_curves, read_run
from gon_jax.experiments.methods import TABLE_1

DATASETS = ('mnist', 'fashion_mnist', 'cifar10')
RECIPES = ('paper', 'default')
LATENTS = (512, 128, 32)
SIDES = (1, 2, 4)
FIG_2A_EPOCHS = 5
INNER_STEPS_EPOCHS = 3
TABLE_2 = ('vgon', 'vae')
FIG_3 = ('gon_sin', 'gon_relu', 'gon_leaky_relu', 'gon_tanh', 'gon', 'gon_softplus', 'gon_swish')


def _title(dataset: str) -> str:
  return DATASET_TITLES[dataset] + (' (JPEG)' if dataset == 'cifar10' else '')


def finished_runs(workdir: pathlib.Path, dataset: str, method: str,
                  seed: int | None = None) -> list[dict]:
  """compare.read_run of every finished seed of `method` on `dataset` in a compare workdir
  (or of `seed` alone)."""
  runs = []
  pattern = 'seed*' if seed is None else f'seed{seed}'
  for seed_dir in sorted((workdir / 'runs' / dataset / method).glob(pattern)):
    if (seed_dir / saved_config.FILENAME).is_file():
      run = read_run(str(seed_dir), saved_config.load(str(seed_dir)).num_steps)
      if run is not None:
        runs.append(run)
  return runs


def _cell(values: list[float]) -> str:
  """One run's value, or mean ± std (runs) over several."""
  if not values:
    return '-'
  if len(values) == 1:
    return f'{values[0]:.2f}' if math.isfinite(values[0]) else 'diverged'
  return mean_std_cell(values) + f' ({len(values)})'


def table_1(root: pathlib.Path, recipe: str) -> str:
  """Test SSE per image on the whole test split, mean ± std over the finished seeds (their
  number in brackets; one seed: its value), methods by data set."""
  lines = ['| method | ' + ' | '.join(_title(d) for d in DATASETS) + ' |',
           '|---|' + '---:|' * len(DATASETS)]
  for method in TABLE_1:
    cells = [_cell([r['sse'] for r in finished_runs(root / f'table1_{d}_{recipe}', d, method)])
             for d in DATASETS]
    if set(cells) != {'-'}:
      lines.append(f'| {method} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def _json(path: pathlib.Path) -> dict:
  return json.loads(path.read_text()) if path.is_file() else {}


def table_2(root: pathlib.Path) -> str:
  """The variational GON against the VAE: eval.py's bits/dim, negative ELBO and SSE, and the
  sample-quality distance beside its floor."""
  lines = ['| data set | model | epochs | test bits/dim | negative ELBO (nats) | test SSE | '
           'FD of samples | FD floor |', '|---|---|---:|---:|---:|---:|---:|---:|']
  for dataset in DATASETS:
    for model in TABLE_2:
      workdir = root / 'table2' / f'{model}_{dataset}'
      metrics, quality = _json(workdir / 'eval' / 'metrics.json'), _json(
          workdir / 'sample_quality.json')
      if not metrics:
        continue
      epochs = len((workdir / 'epochs.jsonl').read_text().splitlines())
      fd = (f"{quality['fd_samples']:.2f} | {quality['fd_floor_train_vs_test']:.2f}"
            if quality else '- | -')
      lines.append(f'| {_title(dataset)} | {model} | {epochs} | '
                   f"{metrics['bits_per_dim']:.4f} | {metrics['negative_elbo_nats']:.1f} | "
                   f"{metrics['sse']:.2f} | {fd} |")
  return '\n'.join(lines)


def ablation(root: pathlib.Path) -> str:
  """The paper recipe on MNIST with one change a row (an ablation_mnist_* folder, its change
  read from the compare's results.json), below the recipe itself (table1_mnist_paper): the
  GON's and the autoencoder's test SSE, and the GON's over the autoencoder's. Seed 0 alone
  in every row, Table 1's too: each change was run at one seed, and the same seed starts
  from the same parameters and batches."""
  lines = ['| change to the paper recipe | gon | ae | gon / ae |', '|---|---:|---:|---:|']
  folders = [root / 'table1_mnist_paper', *sorted(root.glob('ablation_mnist_*'))]
  for folder in folders:
    sse = {m: [r['sse'] for r in finished_runs(folder, 'mnist', m, seed=0)]
           for m in ('gon', 'ae')}
    if not sse['gon'] and not sse['ae']:
      continue
    change = 'none'
    if folder.name != 'table1_mnist_paper':  # results.json is written when a compare ends
      overrides = _json(folder / 'results.json').get('overrides')
      change = (', '.join(f'{key}={value}' for key, value in overrides.items()
                          if key != 'epoch_eval_examples')
                if overrides is not None else folder.name.removeprefix('ablation_mnist_'))
    ratio = (f"{statistics.mean(sse['gon']) / statistics.mean(sse['ae']):.2f}"
             if sse['gon'] and sse['ae'] else '-')
    lines.append(f"| {change} | {_cell(sse['gon'])} | {_cell(sse['ae'])} | {ratio} |")
  return '\n'.join(lines)


def figure_3(root: pathlib.Path, out: pathlib.Path) -> str:
  """Fig. 3 (activations) and App. B's Fig. 10c (GON against the autoencoder) at each latent
  size: the final test SSE (BatchNorm's running averages), the training loss over the last
  epoch (each batch's statistics, the loss Fig. 3 plots), and the curves of each epoch's
  losses into out/fig3_curves.png, a panel for each latent size every method finished."""
  methods = [*FIG_3, 'ae']
  latents = [f'latent {k}' for k in LATENTS]
  results = {m: {'runs': {f'latent {k}': finished_runs(root / f'fig3_latent{k}', 'cifar10', m)
                          for k in LATENTS}} for m in methods}
  header = ['| method | ' + ' | '.join(latents) + ' |', '|---|' + '---:|' * len(LATENTS)]
  tables = []
  for title, value in (('test SSE per image', lambda run: run['sse']),
                       ('training loss over the last epoch',
                        lambda run: run['epochs'][-1]['train_loss'])):
    lines = [title + '\n', *header]
    for method in methods:
      cells = [_cell([value(r) for r in results[method]['runs'][k]]) for k in latents]
      if set(cells) != {'-'}:
        lines.append(f'| {method} | ' + ' | '.join(cells) + ' |')
    tables.append('\n'.join(lines))
  finished = [k for k in latents if all(results[m]['runs'][k] for m in methods)]
  if finished:
    plot_epoch_curves(str(out / 'fig3_curves.png'), results, methods, finished)
  return '\n\n'.join(tables)


def figure_2a(root: pathlib.Path, out: pathlib.Path) -> str:
  """Fig. 2a: the GON against the autoencoder with latents of 1x1, 2x2 and 4x4 pixels (the
  paper recipe's 512 values), test loss of each of the first 5 epochs on the epochs' test
  images; the 1x1 runs are Table 1's, cut at epoch 5 (the learning rate is constant, so their
  first 5 epochs are those of a 5-epoch run). Curves: out/fig2a_curves.png."""
  def runs(side: int, method: str) -> list[dict]:
    workdir = root / ('table1_cifar10_paper' if side == 1 else f'fig2a_side{side}')
    return [{**run, 'epochs': run['epochs'][:FIG_2A_EPOCHS]}
            for run in finished_runs(workdir, 'cifar10', method)]
  results = {m: {'runs': {f'{s}x{s}': runs(s, m) for s in SIDES}} for m in ('gon', 'ae')}
  sides = [f'{s}x{s}' for s in SIDES if all(results[m]['runs'][f'{s}x{s}'] for m in results)]
  lines = ['| latent | gon | ae | ae / gon |', '|---|---:|---:|---:|']
  for side in sides:
    loss = {m: [run['epochs'][-1]['test_loss'] for run in results[m]['runs'][side]]
            for m in results}
    ratio = statistics.mean(loss['ae']) / statistics.mean(loss['gon'])
    lines.append(f"| {side} | {_cell(loss['gon'])} | {_cell(loss['ae'])} | {ratio:.2f} |")
  if sides:
    plot_epoch_curves(str(out / 'fig2a_curves.png'), results, ['gon', 'ae'], sides)
  return '\n'.join(lines)


def inner_steps(root: pathlib.Path) -> str:
  """Table 1's 10-step rows at the epochs they had (`INNER_STEPS_EPOCHS`): test loss on the
  epochs' test images after that epoch, beside the one-step GON and detached GON of Table 1's
  MNIST runs at the same epoch (a constant learning rate: their first epochs are those of a
  shorter run), and seconds per training step. Seed 0 alone, as the 10-step runs have one."""
  sources = {'gon': 'table1_mnist_paper', 'detach_1': 'table1_mnist_paper',
             'detach_10': 'inner_steps_mnist', 'steps_10': 'inner_steps_mnist'}
  lines = [f'| method | test loss after epoch {INNER_STEPS_EPOCHS} | s / step |',
           '|---|---:|---:|']
  for method, folder in sources.items():
    runs = [run for run in finished_runs(root / folder, 'mnist', method, seed=0)
            if len(run['epochs']) >= INNER_STEPS_EPOCHS]
    if runs:
      loss = [run['epochs'][INNER_STEPS_EPOCHS - 1]['test_loss'] for run in runs]
      seconds = statistics.mean(run['seconds_per_step'] for run in runs)
      lines.append(f'| {method} | {_cell(loss)} | {seconds:.3f} |')
  return '\n'.join(lines)


def batchnorm_modes(columns: dict[str, pathlib.Path], methods: list[str]) -> str:
  """SSE per image in both of BatchNorm's modes (on the split each file scored), read from
  gon_jax.experiments.batchnorm_modes's JSON files: a column pair (each batch's statistics,
  the running averages) for each `{title: file}`, a row for each method (a run's method is
  its folder's parent's name), each cell over the file's runs of that method. Files not
  written yet are left out."""
  modes = ('batch_statistics', 'running_averages')
  scores = {}
  for title, path in columns.items():
    if path.is_file():
      for row in _json(path)['runs']:
        method = pathlib.Path(row['run']).parent.name
        for mode in modes:
          scores.setdefault((title, method, mode), []).append(row[mode])
  titles = [t for t in columns if any(key[0] == t for key in scores)]
  lines = ['| method | ' + ' | '.join(f'{t}: batch statistics | running averages'
                                      for t in titles) + ' |',
           '|---|' + '---:|---:|' * len(titles)]
  for method in methods:
    cells = [_cell(scores.get((t, method, mode), [])) for t in titles for mode in modes]
    if any(cell != '-' for cell in cells):
      lines.append(f'| {method} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def curves(root: pathlib.Path, out: pathlib.Path, recipe: str) -> None:
  """GON against autoencoder, training (solid) and test (dashed) loss per epoch on each data
  set (Fig. 2c, App. E): out/epoch_curves_<recipe>.png."""
  results = {m: {'runs': {d: finished_runs(root / f'table1_{d}_{recipe}', d, m)
                          for d in DATASETS}} for m in ('gon', 'ae')}
  datasets = [d for d in DATASETS if all(results[m]['runs'][d] for m in results)]
  if datasets:
    plot_epoch_curves(str(out / f'epoch_curves_{recipe}.png'), results, ['gon', 'ae'], datasets)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--root', default='runs/paper_scale', help='folder of the runs')
  parser.add_argument('--out', default='docs/paper_scale', help='folder of the PNG figures')
  args = parser.parse_args()
  root, out = pathlib.Path(args.root), pathlib.Path(args.out)
  for recipe in RECIPES:
    print(f'Table 1, {recipe} recipe: test SSE per image (seeds)\n')
    print(table_1(root, recipe) + '\n')
    curves(root, out, recipe)
  print('Table 1, paper recipe, in both of BatchNorm\'s modes: test SSE per image\n\n'
        + batchnorm_modes({_title(d): out / f'batchnorm_modes_table1_{d}.json'
                           for d in DATASETS}, list(TABLE_1)) + '\n')
  print('Table 1, paper recipe, in both of BatchNorm\'s modes: SSE per image on the first '
        'training images (--split train)\n\n'
        + batchnorm_modes({_title(d): out / f'batchnorm_modes_{d}_train.json'
                           for d in DATASETS}, list(TABLE_1)) + '\n')
  print('The paper recipe on MNIST, one change at a time: test SSE per image\n\n'
        + ablation(root) + '\n')
  print(f'Table 1, MNIST, paper recipe: one and ten inner steps after {INNER_STEPS_EPOCHS} '
        'epochs\n\n' + inner_steps(root) + '\n')
  print('Table 2\n\n' + table_2(root) + '\n')
  print('Fig. 3, CIFAR-10 (JPEG)\n\n' + figure_3(root, out) + '\n')
  print('Fig. 3, CIFAR-10 (JPEG), in both of BatchNorm\'s modes: test SSE per image\n\n'
        + batchnorm_modes({f'latent {k}': out / f'batchnorm_modes_fig3_latent{k}.json'
                           for k in LATENTS}, [*FIG_3, 'ae']) + '\n')
  print(f'Fig. 2a, CIFAR-10 (JPEG): test loss after {FIG_2A_EPOCHS} epochs\n\n'
        + figure_2a(root, out))

if __name__ == '__main__':
  main()
