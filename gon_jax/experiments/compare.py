"""The paper's comparisons (Table 1, Figs. 2, 3 and 11) as one command.

Table 1, single-step and multi-step baselines with the GON's decoder:

  python -m gon_jax.experiments.compare \
      --methods gon,ae,tied_ae,glo,detach_1,detach_10,steps_10 \
      --datasets mnist,fashion_mnist --steps 500 --seeds 3 --equal_time gon \
      --workdir runs/compare

`--equal_time gon` then trains every method again for the wall-clock time
the GON's 500 steps took (steps scaled by the measured seconds per step) into
WORKDIR/equal_time: a slow method gets fewer steps, a fast one more.

MNIST and Fashion-MNIST download by themselves into the cache on first use;
`--data_dir DATASET=PATH` reads a folder of IDX files instead (e.g.
`--data_dir fashion_mnist=/usr/share/datasets/fashion-mnist`).

The activation ablation (Fig. 3), the inner steps (Fig. 2b) and the z0 ablation (App. C)
are `--ablation activation`, `--ablation inner_steps` and `--ablation z0_sigma`, the recipe study
(PyTorch's or flax's layer defaults, Adam 1e-3 or 1e-4, with each norm)
`--ablation init`, the normalisations `--ablation norm`, the GON classifier
(Eq. 13; the table then adds test accuracy) `--ablation classifier`, and the
implicit GON's options beyond the paper (modulations, Fourier features, learnt
and repeated inner steps, on siren_mnist_tiny; the table adds test PSNR)
`--ablation implicit` (each with its own methods unless --methods names some).
Every method is a config of configs/ (conv_mnist for the paper's, siren_mnist_tiny for
the implicit ones) with a few changes (gon_jax.experiments.methods.METHODS);
`--override key=value` changes all of them.

`--epochs N` trains every run N epochs (num_epochs: N * (training images // batch_size)
steps) instead of `--steps`; `--recipe paper` gives every method the paper's recipe
(RECIPES: BatchNorm, Adam 1e-4, the official inner loss reduction) under its own changes.
`--datasets cifar10` trains each method's CIFAR-10 config where configs/ has one (ae_mnist
-> ae_cifar10: `config_name`), e.g. `--datasets cifar10 --data_source folder --data_dir
cifar10=PATH` for the JPEG folder.

Writes to --workdir: `results.md` (the mean and standard deviation over
seeds of the test summed squared error per image, parameters, seconds per
training step), `results.json` (with each run's per-epoch losses), `loss_curves.png`
(training loss, mean and standard deviation over seeds, Fig. 2), and `epoch_curves.png`
(training loss solid, test loss dashed, per epoch, mean over seeds: Fig. 2c, App. E) once
runs have finished an epoch. Each run trains in
`runs/<dataset>/<method>/seed<k>` with train.py's loop (checkpoints,
metrics.jsonl); a finished run is not repeated, an unfinished one resumes,
so an interrupted comparison continues where it stopped.
"""

import ast
import json
import os
import time

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging

from gon_jax import data, images
from gon_jax.config import to_settings
from gon_jax.errors import ConfigError, Diverged, run_reporting_errors
from gon_jax.experiments.methods import (ABLATIONS, METHODS, RECIPES, TABLE_1, method_config,
                                         run_config, train_size)
from gon_jax.flag_parsing import parse_flags_or_exit
from gon_jax.metric_writer import read_jsonl
from gon_jax.models import get_spec
from gon_jax.state import setup
from gon_jax.epoch_losses import EPOCHS_FILENAME
from gon_jax.train import train_and_evaluate

DATASET_TITLES = {'mnist': 'MNIST', 'fashion_mnist': 'Fashion-MNIST', 'cifar10': 'CIFAR-10'}


def _define_flags() -> None:
  """The command line's flags: defined when run as a script, so that importing this
  module defines none."""
  flags.DEFINE_list('methods', ','.join(TABLE_1),
                    f'Methods to compare; any of {", ".join(METHODS)}.')
  flags.DEFINE_enum('ablation', None, list(ABLATIONS),
                    'Compare the methods of an ablation (unless --methods is given).')
  flags.DEFINE_list('datasets', 'mnist', 'Data sets (data.name), e.g. mnist,fashion_mnist.')
  flags.DEFINE_integer('steps', 1000, 'Training steps of every run (or --epochs).')
  flags.DEFINE_integer('epochs', None, 'Training epochs of every run (num_epochs; instead of '
                       '--steps): epoch_curves.png then plots train and test loss per epoch.')
  flags.DEFINE_enum('recipe', 'default', list(RECIPES),
                    "Every method's recipe: its config ('default'), or 'paper': with "
                    "BatchNorm, Adam 1e-4 and the official inner loss reduction.")
  flags.DEFINE_integer('seeds', 3, 'Runs per method and data set (seeds 0, 1, ...).')
  flags.DEFINE_enum('data_source', 'idx', list(data.SOURCES), 'As data.source.')
  flags.DEFINE_multi_string(
      'data_dir', [], 'As data.dir: DATASET=PATH for one data set, or PATH for all '
      '(default: the download cache).')
  flags.DEFINE_multi_string('override', [], 'KEY=VALUE config change for every run, '
                            'e.g. batch_size=128 (values parsed as Python literals).')
  flags.DEFINE_string('workdir', 'runs/compare', 'Folder for runs and results.')
  flags.DEFINE_string(
      'equal_time', None, 'Then train every method for the time METHOD took for --steps steps '
      '(its measured seconds per step over each one\'s), into WORKDIR/equal_time.')


# In a run's folder when training stopped on a non-finite loss or gradient: that step.
_DIVERGED = 'diverged.json'


def _parse_value(text: str):
  """A Python literal (1e-3, True, (16, 16)), else the text itself."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # a bare string such as relu


def run_folder(workdir: str, method: str, dataset: str, seed: int) -> str:
  """The workdir of one run of `compare(..., workdir)`."""
  return os.path.join(workdir, 'runs', dataset, method, f'seed{seed}')


def read_run(workdir: str, steps: int) -> dict | None:
  """A finished (or diverged) run's results from its metrics.jsonl, or None if unfinished.

  Returns:
    `{'sse': final test SSE per image, 'psnr': its PSNR (dB), 'accuracy':
    final test accuracy (None without a classifier), 'seconds_per_step': median over the logged rates
    (the training loop leaves compilation out), 'curve': [(step, training
    reconstruction loss)], 'epochs': [{'epoch', 'train_loss', 'test_loss'}] of each epoch
    that ended (epochs.jsonl; 'test_loss' left out with epoch_eval_examples=0),
    'diverged_at': None, or the step whose loss or gradient was not finite (training stopped
    there; then 'sse' and 'psnr' are nan)}`.
  """
  # metrics.jsonl writes a value that was not finite as null (MetricWriter): NaN again here.
  records = read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  diverged = os.path.join(workdir, _DIVERGED)
  final = [r for r in records if r['step'] == steps and 'test/sse' in r]
  diverged_at = None
  if not final and os.path.exists(diverged):
    with open(diverged, encoding='utf-8') as f:
      diverged_at = json.load(f)['step']
    final = [{'test/sse': float('nan'), 'test/psnr': float('nan')}]
  if not final:
    return None
  train = {r['step']: r for r in records if 'train/loss' in r}  # last write per step wins
  rates = [r['train/steps_per_second'] for r in train.values() if 'train/steps_per_second' in r]
  curve = [(s, train[s].get('train/reconstruction', train[s]['train/loss'])) for s in sorted(train)]
  epochs = [{key: r[key] for key in ('epoch', 'train_loss', 'test_loss') if key in r}
            for r in read_jsonl(os.path.join(workdir, EPOCHS_FILENAME))]
  return {'sse': final[-1]['test/sse'], 'psnr': final[-1].get('test/psnr'),
          'accuracy': final[-1].get('test/accuracy'),
          'seconds_per_step': float(1.0 / np.median(rates)) if rates else None,
          'curve': curve, 'epochs': epochs, 'diverged_at': diverged_at}


def count_parameters(config: ml_collections.ConfigDict) -> int:
  """Network parameters (GLO's latent table, one row per image, is not counted)."""
  _, _, state = setup(to_settings(config), num_train_examples=1)
  return int(sum(np.size(leaf) for leaf in jax.tree.leaves(state.params)))


def _mean_std(values: list[float]) -> tuple[float, float]:
  return float(np.mean(values)), float(np.std(values))


def mean_std_cell(values: list[float]) -> str:
  """'mean ± std' over the finite values (diverged runs give nan), and how many diverged."""
  finite = [v for v in values if np.isfinite(v)]
  if not finite:
    return f'diverged ({len(values)} of {len(values)})'
  mean, std = _mean_std(finite)
  cell = f'{mean:.2f} ± {std:.2f}'
  return cell + (f' ({len(values) - len(finite)} of {len(values)} diverged)'
                 if len(finite) < len(values) else '')


def percent_cell(fractions: list[float]) -> str:
  """'mean% ± std' of accuracies given as fractions."""
  mean, std = _mean_std([100 * f for f in fractions])
  return f'{mean:.1f}% ± {std:.1f}'


def summarise(results: dict, methods: list[str], datasets: list[str],
              steps: dict[str, int] | None, seeds: int, epochs: int = 0) -> str:
  """The Markdown table of `results[method]` ('parameters', 'runs': {dataset: [run]}); its
  length column is each method's `steps`, or with `epochs` > 0 the epochs of every run."""
  classifies = any(r.get('accuracy') is not None for m in methods
                   for runs in results[m]['runs'].values() for r in runs)
  implicit = any(results[m].get('implicit') for m in methods)  # PSNR, as implicit work reports
  titles = [DATASET_TITLES.get(d, d) for d in datasets]
  header = (['Method', 'Parameters', 'Epochs' if epochs else 'Steps']
            + [f'{t} test SSE' for t in titles]
            + ([f'{t} test PSNR (dB)' for t in titles] if implicit else [])
            + ([f'{t} test accuracy' for t in titles] if classifies else []) + ['s / step'])
  lines = [f'Test summed squared error per image (mean ± std over {seeds} seeds).', '',
           '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for method in methods:
    entry = results[method]
    cells = [f'{method} ({METHODS[method][2]})', f'{entry["parameters"]:,}',
             f'{epochs if epochs else steps[method]:,}']
    rates = []
    for dataset in datasets:
      runs = entry['runs'][dataset]
      cells.append(mean_std_cell([r['sse'] for r in runs]))
      rates += [r['seconds_per_step'] for r in runs if r['seconds_per_step']]
    for dataset in datasets if implicit else ():
      cells.append(mean_std_cell([r['psnr'] for r in entry['runs'][dataset]]))
    for dataset in datasets if classifies else ():
      accuracies = [r.get('accuracy') for r in entry['runs'][dataset]]
      if None in accuracies:  # a method without a classifier
        cells.append('-')
      else:
        cells.append(percent_cell(accuracies))
    cells.append(f'{np.mean(rates):.4f}' if rates else 'n/a')
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def plot_curves(path: str, results: dict, methods: list[str], datasets: list[str]) -> None:
  """Training loss curves, mean and standard deviation over seeds, per data set."""
  panels = {}
  for dataset in datasets:
    lines = {}
    for method in methods:
      curves = [r['curve'] for r in results[method]['runs'][dataset]]
      length = min(len(c) for c in curves)
      x = np.array([s for s, _ in curves[0][:length]])
      y = np.array([[v for _, v in c[:length]] for c in curves])
      lines[method] = (x, y.mean(axis=0), y.std(axis=0))
    panels[DATASET_TITLES.get(dataset, dataset)] = lines
  images.save_curves(path, panels, 'training loss (SSE per image)')


def plot_epoch_curves(path: str, results: dict, methods: list[str],
                      datasets: list[str]) -> bool:
  """Training (solid) and test (dashed) loss per epoch, mean and standard deviation over
  seeds, one colour per method, one panel per data set (the paper's Fig. 2c and App. E);
  False, and no file, when no run has a record of a finished epoch with both losses (each
  method's curves end at the epochs its seeds all reached)."""
  panels = {}
  for dataset in datasets:
    lines = {}
    for method in methods:
      records = [[r for r in run.get('epochs', []) if 'test_loss' in r]
                 for run in results[method]['runs'][dataset]]
      length = min(len(r) for r in records)
      if length:
        epochs, train, test = (np.array([[r[key] for r in run[:length]] for run in records])
                               for key in ('epoch', 'train_loss', 'test_loss'))
        lines[f'{method} train'] = (epochs[0], train.mean(axis=0), train.std(axis=0),
                                    (f'{method} test', test.mean(axis=0), test.std(axis=0)))
    if lines:
      panels[DATASET_TITLES.get(dataset, dataset)] = lines
  if not panels:
    return False
  images.save_curves(path, panels, 'loss (SSE per image)', xlabel='epoch')
  return True


def _data_dirs(entries: list[str], datasets: list[str]) -> dict[str, str]:
  shared = [e for e in entries if '=' not in e]
  dirs = {d: shared[-1] if shared else '' for d in datasets}
  for entry in entries:
    if '=' in entry:
      name, path = entry.split('=', 1)
      if name not in datasets:
        raise ConfigError(f'--data_dir {entry}: {name!r} is not one of --datasets')
      dirs[name] = path
  return dirs


def equal_time_steps(results: dict, reference: str, steps: int) -> dict[str, int]:
  """Each method's steps (in tens) that take as long as `steps` steps of `reference`, by the
  seconds per training step measured in `results` (mean over data sets and seeds)."""
  def seconds_per_step(method: str) -> float:
    return float(np.mean([r['seconds_per_step'] for runs in results[method]['runs'].values()
                          for r in runs if r['seconds_per_step']]))

  budget = steps * seconds_per_step(reference)
  return {m: max(10, 10 * round(budget / seconds_per_step(m) / 10)) for m in results}


def compare(methods: list[str], datasets: list[str], steps: int | dict[str, int] | None,
            seeds: int, data_source: str, data_dirs: dict[str, str], overrides: dict,
            workdir: str, *, epochs: int = 0, recipe: str = 'default') -> dict:
  """Trains (or reads) every run and writes the table, the JSON and the plots.

  `steps`: every method's, or {method: steps}; or with `epochs` > 0, None (each run trains
  that many epochs of its data set: `run_config`). `recipe`: a key of RECIPES.
  """
  if epochs:
    steps = None
  else:
    steps = steps if isinstance(steps, dict) else dict.fromkeys(methods, steps)
  length = epochs if epochs else min(steps.values())
  if length < 1 or seeds < 1:
    raise ConfigError(f'--{"epochs" if epochs else "steps"} {length} and --seeds {seeds} '
                      'must be at least 1')
  sizes = _train_sizes(methods[0], datasets, data_source, data_dirs, overrides, recipe
                       ) if epochs else {}
  configs = {(m, d, s): run_config(m, d, s, steps and steps[m], data_source, data_dirs[d],
                                   overrides, epochs=epochs, num_train=sizes.get(d, 0),
                                   recipe=recipe)
             for m in methods for d in datasets for s in range(seeds)}  # all checked first
  results = {m: {'parameters': count_parameters(configs[m, datasets[0], 0]),
                 'implicit': get_spec(configs[m, datasets[0], 0].model.name).implicit,
                 'runs': {d: [] for d in datasets}} for m in methods}
  for i, ((method, dataset, seed), config) in enumerate(configs.items()):
    run_dir = run_folder(workdir, method, dataset, seed)
    run = read_run(run_dir, config.num_steps)
    if run is None:
      start = time.perf_counter()
      try:
        train_and_evaluate(config, run_dir)
      except Diverged as stopped:  # a result of the method, kept: the others still run
        with open(os.path.join(run_dir, _DIVERGED), 'w', encoding='utf-8') as f:
          json.dump({'step': stopped.step, 'message': str(stopped)}, f)
      run = read_run(run_dir, config.num_steps)
      outcome = (f'diverged at step {run["diverged_at"]}' if run['diverged_at'] else
                 f'test SSE {run["sse"]:.3f}')
      print(f'[{i + 1}/{len(configs)}] {dataset} {method} seed {seed}: {outcome} '
            f'({time.perf_counter() - start:.0f} s)', flush=True)
    results[method]['runs'][dataset].append(run)
  table = summarise(results, methods, datasets, steps, seeds, epochs)
  with open(os.path.join(workdir, 'results.md'), 'w', encoding='utf-8') as f:
    f.write(table)
  run_steps = {m: {d: configs[m, d, 0].num_steps for d in datasets} for m in methods}
  with open(os.path.join(workdir, 'results.json'), 'w', encoding='utf-8') as f:
    json.dump({'steps': run_steps, 'epochs': epochs, 'recipe': recipe,
               'recipe_overrides': RECIPES[recipe], 'seeds': seeds, 'overrides': overrides,
               'results': results}, f)
  plot_curves(os.path.join(workdir, 'loss_curves.png'), results, methods, datasets)
  plot_epoch_curves(os.path.join(workdir, 'epoch_curves.png'), results, methods, datasets)
  print(table)
  return results


def _train_sizes(method: str, datasets: list[str], data_source: str, data_dirs: dict[str, str],
                 overrides: dict, recipe: str) -> dict[str, int]:
  """`{dataset: its training images}`, which turn epochs into steps (loaded with `method`'s
  config: the data options are every method's)."""
  return {d: train_size(method_config(method, d, 0, data_source, data_dirs[d], overrides,
                                       recipe)) for d in datasets}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  methods = flags.FLAGS.methods
  if flags.FLAGS.ablation and not flags.FLAGS['methods'].present:
    methods = list(ABLATIONS[flags.FLAGS.ablation])
  run_reporting_errors(_compare_from_flags, methods)


def epochs_from_flags(steps: int, steps_given: bool, epochs: int | None) -> int:
  """The epochs of every run from --epochs (0: --steps gives the length).

  Raises:
    ConfigError: both --steps and --epochs were given, or --epochs below 1.
  """
  if epochs is None:
    return 0
  if steps_given:
    raise ConfigError(f'--steps {steps} and --epochs {epochs}: give one, the length of every '
                      'run in steps or in epochs')
  if epochs < 1:
    raise ConfigError(f'--epochs {epochs}: train at least 1 epoch')
  return epochs


def _compare_from_flags(methods: list[str]) -> dict:
  overrides = {}
  for entry in flags.FLAGS.override:
    if '=' not in entry:
      raise ConfigError(f'--override {entry!r}: use KEY=VALUE')
    key, value = entry.split('=', 1)
    overrides[key] = _parse_value(value)
  epochs = epochs_from_flags(flags.FLAGS.steps, flags.FLAGS['steps'].present,
                             flags.FLAGS.epochs)
  if flags.FLAGS.equal_time and flags.FLAGS.equal_time not in methods:
    raise ConfigError(f'--equal_time {flags.FLAGS.equal_time}: not one of the compared methods')
  if flags.FLAGS.equal_time and epochs:
    raise ConfigError('--equal_time scales the steps of --steps: give --steps, not --epochs')
  os.makedirs(flags.FLAGS.workdir, exist_ok=True)
  args = (flags.FLAGS.datasets, flags.FLAGS.steps, flags.FLAGS.seeds, flags.FLAGS.data_source,
          _data_dirs(flags.FLAGS.data_dir, flags.FLAGS.datasets), overrides)
  results = compare(methods, *args, flags.FLAGS.workdir, epochs=epochs,
                    recipe=flags.FLAGS.recipe)
  if not flags.FLAGS.equal_time:
    return results
  steps = equal_time_steps(results, flags.FLAGS.equal_time, flags.FLAGS.steps)
  os.makedirs(os.path.join(flags.FLAGS.workdir, 'equal_time'), exist_ok=True)
  return compare(methods, args[0], steps, *args[2:],
                 os.path.join(flags.FLAGS.workdir, 'equal_time'), recipe=flags.FLAGS.recipe)

if __name__ == '__main__':
  _define_flags()
  app.run(main, flags_parser=parse_flags_or_exit)
