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

The activation ablation (Fig. 3) and the z0 ablation (App. C) are
`--ablation activation` and `--ablation z0_sigma`, the recipe study
(PyTorch's or flax's layer defaults, Adam 1e-3 or 1e-4, with each norm)
`--ablation init`, the normalisations `--ablation norm`, the GON classifier
(Eq. 13; the table then adds test accuracy) `--ablation classifier`, and the
implicit GON's options beyond the paper (modulations, Fourier features, learnt
and repeated inner steps, on siren_mnist_tiny; the table adds test PSNR)
`--ablation implicit` (each with its own methods unless --methods names some).
Every method is a config of configs/ (conv_mnist for the paper's, siren_mnist_tiny for
the implicit ones) with a few changes (METHODS);
`--override key=value` changes all of them.

Writes to --workdir: `results.md` (the mean and standard deviation over
seeds of the test summed squared error per image, parameters, seconds per
training step), `results.json`, and `loss_curves.png` (training loss, mean
and standard deviation over seeds, Fig. 2). Each run trains in
`runs/<dataset>/<method>/seed<k>` with train.py's loop (checkpoints,
metrics.jsonl); a finished run is not repeated, an unfinished one resumes,
so an interrupted comparison continues where it stopped.
"""

import ast
import importlib
import json
import os
import pathlib
import sys
import time

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging

from gon_jax import data, images
from gon_jax.config import validate
from gon_jax.errors import ConfigError, Diverged, run_reporting_errors
from gon_jax.flag_parsing import parse_flags_or_exit
from gon_jax.models import get_spec
from gon_jax.state import setup
from gon_jax.train import train_and_evaluate

_TEN_STEPS = {'gon.num_steps': 10, 'gon.step_size': 0.1}  # 0.1 as in Nijkamp et al.
# name -> (config in configs/, overrides, description)
METHODS: dict[str, tuple[str, dict, str]] = {
    'gon': ('conv_mnist', {}, 'GON, one gradient step'),
    'ae': ('ae_mnist', {}, 'autoencoder, mirrored encoder'),
    'tied_ae': ('tied_ae_mnist', {}, 'autoencoder, tied weights'),
    'glo': ('glo_mnist', {}, 'GLO (test latents: glo.test_steps Adam steps)'),
    'detach_1': ('conv_mnist', {'gon.detach': True}, 'GON, latent detached'),
    'detach_10': ('conv_mnist', {'gon.detach': True, **_TEN_STEPS},
                  'GON, 10 steps of 0.1, detached'),
    'steps_10': ('conv_mnist', _TEN_STEPS, 'GON, 10 steps of 0.1'),
}
ACTIVATIONS = ('sin', 'relu', 'leaky_relu', 'tanh', 'elu', 'softplus', 'swish')
METHODS.update({f'gon_{a}': ('conv_mnist', {'model.activation': a}, f'GON, {a}')
                for a in ACTIVATIONS})
SIGMAS = (0.01, 0.1, 1.0)
METHODS.update({f'gon_sigma{s:g}': ('conv_mnist', {'gon.z0_sigma': s, 'gon.start_from_z0': False},
                                    f'z = -grad, z0 ~ N(0, {s:g}^2)') for s in SIGMAS})
METHODS.update({f'gon_sigma{s:g}_step': ('conv_mnist', {'gon.z0_sigma': s},
                                         f'z = z0 - grad, z0 ~ N(0, {s:g}^2)') for s in SIGMAS})
# The recipe study: the defaults (PyTorch's init, Adam 1e-3) against flax's
# init and the official learning rate 1e-4, with each norm.
_OFFICIAL_LR = {'learning_rate': 1e-4}
METHODS.update({
    'gon_flax_init': ('conv_mnist', {'model.init': 'flax'}, "GON, flax's initialisation"),
    'gon_lr1e-4': ('conv_mnist', _OFFICIAL_LR, 'GON, Adam 1e-4'),
    'gon_flax_init_lr1e-4': ('conv_mnist', {'model.init': 'flax', **_OFFICIAL_LR},
                             "GON, flax's initialisation, Adam 1e-4"),
    'gon_batchnorm': ('conv_mnist_batchnorm', {}, 'GON, BatchNorm'),
    'gon_batchnorm_flax_init': ('conv_mnist_batchnorm', {'model.init': 'flax'},
                                "GON, BatchNorm, flax's initialisation"),
    'gon_batchnorm_lr1e-4': ('conv_mnist_batchnorm', _OFFICIAL_LR, 'GON, BatchNorm, Adam 1e-4'),
    'gon_batchnorm_flax_init_lr1e-4': ('conv_mnist_batchnorm',
                                       {'model.init': 'flax', **_OFFICIAL_LR},
                                       "GON, BatchNorm, flax's initialisation, Adam 1e-4"),
    'gon_groupnorm': ('conv_mnist', {'model.norm': 'group'}, 'GON, GroupNorm (8 groups)'),
    'gon_no_norm': ('conv_mnist', {'model.norm': 'none'}, 'GON, no normalisation'),
    'gon_official_inner': ('conv_mnist', {'gon.inner_reduction': 'official'},
                           "GON, GON.py's inner-loss scale"),
    'gon_classifier': ('gon_classifier_mnist', {}, 'GON classifier, Eq. 13'),
})
# Implicit GONs beyond the paper, on siren_mnist_tiny's SIREN.
_SIREN = 'siren_mnist_tiny'
_FILM, _FOURIER = {'model.conditioning': 'film'}, {'model.encoding': 'fourier'}
_LEARNT_STEP = {'gon.learn_step_size': 'per_dimension'}
METHODS.update({
    'siren': (_SIREN, {}, 'implicit GON, latent concatenated'),
    'siren_shift': (_SIREN, {'model.conditioning': 'shift'}, 'shift modulations'),
    'siren_film': (_SIREN, _FILM, 'FiLM modulations'),
    'siren_fourier': (_SIREN, _FOURIER, 'Fourier features'),
    'siren_film_fourier': (_SIREN, {**_FILM, **_FOURIER}, 'FiLM and Fourier features'),
    'siren_learnt_step': (_SIREN, _LEARNT_STEP, 'step size learnt per latent dimension'),
    'siren_steps_3': (_SIREN, {'gon.num_steps': 3}, '3 inner steps'),
    'siren_steps_3_learnt': (_SIREN, {'gon.num_steps': 3, **_LEARNT_STEP},
                             '3 inner steps, step size learnt'),
})
TABLE_1 = ('gon', 'ae', 'tied_ae', 'glo', 'detach_1', 'detach_10', 'steps_10')
ABLATIONS = {
    # conv_mnist's activation is ELU: `gon` is the ELU row, not a second run of it
    'activation': tuple('gon' if a == 'elu' else f'gon_{a}' for a in ACTIVATIONS),
    'z0_sigma': ('gon', *(f'gon_sigma{s:g}' for s in SIGMAS),
                 *(f'gon_sigma{s:g}_step' for s in SIGMAS)),
    'norm': ('gon', 'gon_batchnorm', 'gon_groupnorm', 'gon_no_norm', 'gon_official_inner'),
    'classifier': ('gon', 'gon_classifier'),
    'implicit': ('siren', 'siren_shift', 'siren_film', 'siren_fourier', 'siren_film_fourier',
                 'siren_learnt_step', 'siren_steps_3', 'siren_steps_3_learnt'),
    'init': ('gon', 'gon_flax_init', 'gon_lr1e-4', 'gon_flax_init_lr1e-4', 'gon_batchnorm',
             'gon_batchnorm_flax_init', 'gon_batchnorm_lr1e-4', 'gon_batchnorm_flax_init_lr1e-4'),
}
DATASET_TITLES = {'mnist': 'MNIST', 'fashion_mnist': 'Fashion-MNIST'}


def _define_flags() -> None:
  """The command line's flags: defined when run as a script, so that importing this
  module defines none."""
  flags.DEFINE_list('methods', ','.join(TABLE_1),
                    f'Methods to compare; any of {", ".join(METHODS)}.')
  flags.DEFINE_enum('ablation', None, list(ABLATIONS),
                    'Compare the methods of an ablation (unless --methods is given).')
  flags.DEFINE_list('datasets', 'mnist', 'Data sets (data.name), e.g. mnist,fashion_mnist.')
  flags.DEFINE_integer('steps', 1000, 'Training steps of every run.')
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


def _load_config(name: str) -> ml_collections.ConfigDict:
  """`get_config()` of the packaged config `name` (gon_jax/configs/<name>.py)."""
  return importlib.import_module(f'gon_jax.configs.{name}').get_config()


def _parse_value(text: str):
  """A Python literal (1e-3, True, (16, 16)), else the text itself."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # a bare string such as relu


def run_config(method: str, dataset: str, seed: int, steps: int, data_source: str,
               data_dir: str, overrides: dict) -> ml_collections.ConfigDict:
  """The config of one run: the method's recipe on `dataset`, trained `steps` steps.

  Raises:
    ConfigError: an unknown method or override.
  """
  if method not in METHODS:
    raise ConfigError(f'unknown method {method!r}; valid: {", ".join(METHODS)}')
  name, method_overrides, _ = METHODS[method]
  config = _load_config(name)
  changes = {**method_overrides, **overrides, 'seed': seed, 'num_steps': steps,
             'data.name': dataset, 'data.source': data_source, 'data.dir': data_dir,
             'eval_every': steps, 'checkpoint_every': steps, 'train_eval_examples': -1,
             'log_every': max(1, steps // 100)}
  config.lock()  # an unknown key is an error, not a new entry
  for key, value in changes.items():
    try:
      config.update_from_flattened_dict({key: value})
    except KeyError:
      raise ConfigError(f'unknown config key {key!r} (method {method})') from None
    except TypeError as err:
      raise ConfigError(f'{key}={value!r}: {str(err).splitlines()[0]}') from None
  validate(config)  # every run's config, before any of them trains
  return config


def run_folder(workdir: str, method: str, dataset: str, seed: int) -> str:
  """The workdir of one run of `compare(..., workdir)`."""
  return os.path.join(workdir, 'runs', dataset, method, f'seed{seed}')


def read_run(workdir: str, steps: int) -> dict | None:
  """A finished (or diverged) run's results from its metrics.jsonl, or None if unfinished.

  Returns:
    `{'sse': final test SSE per image, 'psnr': its PSNR (dB), 'accuracy':
    final test accuracy (None without a classifier), 'seconds_per_step': median over the logged rates
    (the training loop leaves compilation out), 'curve': [(step, training
    reconstruction loss)], 'diverged_at': None, or the step whose loss or gradient was not
    finite (training stopped there; then 'sse' and 'psnr' are nan)}`.
  """
  path = os.path.join(workdir, 'metrics.jsonl')
  diverged = os.path.join(workdir, _DIVERGED)
  records = []
  if os.path.exists(path):
    with open(path, encoding='utf-8') as f:
      records = [json.loads(line) for line in f if line.strip()]
  # metrics.jsonl writes a value that was not finite as null (MetricWriter): NaN again here.
  records = [{key: float('nan') if value is None else value for key, value in r.items()}
             for r in records]
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
  return {'sse': final[-1]['test/sse'], 'psnr': final[-1].get('test/psnr'),
          'accuracy': final[-1].get('test/accuracy'),
          'seconds_per_step': float(1.0 / np.median(rates)) if rates else None,
          'curve': curve, 'diverged_at': diverged_at}


def count_parameters(config: ml_collections.ConfigDict) -> int:
  """Network parameters (GLO's latent table, one row per image, is not counted)."""
  _, _, state = setup(config, num_train_examples=1)
  return int(sum(np.size(leaf) for leaf in jax.tree.leaves(state.params)))


def _mean_std(values: list[float]) -> tuple[float, float]:
  return float(np.mean(values)), float(np.std(values))


def _mean_std_cell(values: list[float]) -> str:
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


def summarise(results: dict, methods: list[str], datasets: list[str], steps: dict[str, int],
              seeds: int) -> str:
  """The Markdown table of `results[method]` ('parameters', 'runs': {dataset: [run]})."""
  classifies = any(r.get('accuracy') is not None for m in methods
                   for runs in results[m]['runs'].values() for r in runs)
  implicit = any(results[m].get('implicit') for m in methods)  # PSNR, as implicit work reports
  titles = [DATASET_TITLES.get(d, d) for d in datasets]
  header = (['Method', 'Parameters', 'Steps'] + [f'{t} test SSE' for t in titles]
            + ([f'{t} test PSNR (dB)' for t in titles] if implicit else [])
            + ([f'{t} test accuracy' for t in titles] if classifies else []) + ['s / step'])
  lines = [f'Test summed squared error per image (mean ± std over {seeds} seeds).', '',
           '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for method in methods:
    entry = results[method]
    cells = [f'{method} ({METHODS[method][2]})', f'{entry["parameters"]:,}', f'{steps[method]:,}']
    rates = []
    for dataset in datasets:
      runs = entry['runs'][dataset]
      cells.append(_mean_std_cell([r['sse'] for r in runs]))
      rates += [r['seconds_per_step'] for r in runs if r['seconds_per_step']]
    for dataset in datasets if implicit else ():
      cells.append(_mean_std_cell([r['psnr'] for r in entry['runs'][dataset]]))
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


def compare(methods: list[str], datasets: list[str], steps: int | dict[str, int], seeds: int,
            data_source: str, data_dirs: dict[str, str], overrides: dict, workdir: str) -> dict:
  """Trains (or reads) every run and writes the table, the JSON and the plot.

  `steps`: every method's, or {method: steps}.
  """
  steps = steps if isinstance(steps, dict) else dict.fromkeys(methods, steps)
  if min(steps.values()) < 1 or seeds < 1:
    raise ConfigError(f'--steps {min(steps.values())} and --seeds {seeds} must be at least 1')
  configs = {(m, d, s): run_config(m, d, s, steps[m], data_source, data_dirs[d], overrides)
             for m in methods for d in datasets for s in range(seeds)}  # all checked first
  results = {m: {'parameters': count_parameters(configs[m, datasets[0], 0]),
                 'implicit': get_spec(configs[m, datasets[0], 0].model.name).implicit,
                 'runs': {d: [] for d in datasets}} for m in methods}
  for i, ((method, dataset, seed), config) in enumerate(configs.items()):
    run_dir = run_folder(workdir, method, dataset, seed)
    run = read_run(run_dir, steps[method])
    if run is None:
      start = time.perf_counter()
      try:
        train_and_evaluate(config, run_dir)
      except Diverged as stopped:  # a result of the method, kept: the others still run
        with open(os.path.join(run_dir, _DIVERGED), 'w', encoding='utf-8') as f:
          json.dump({'step': stopped.step, 'message': str(stopped)}, f)
      run = read_run(run_dir, steps[method])
      outcome = (f'diverged at step {run["diverged_at"]}' if run['diverged_at'] else
                 f'test SSE {run["sse"]:.3f}')
      print(f'[{i + 1}/{len(configs)}] {dataset} {method} seed {seed}: {outcome} '
            f'({time.perf_counter() - start:.0f} s)', flush=True)
    results[method]['runs'][dataset].append(run)
  table = summarise(results, methods, datasets, steps, seeds)
  with open(os.path.join(workdir, 'results.md'), 'w', encoding='utf-8') as f:
    f.write(table)
  with open(os.path.join(workdir, 'results.json'), 'w', encoding='utf-8') as f:
    json.dump({'steps': steps, 'seeds': seeds, 'overrides': overrides, 'results': results}, f)
  plot_curves(os.path.join(workdir, 'loss_curves.png'), results, methods, datasets)
  print(table)
  return results


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  methods = flags.FLAGS.methods
  if flags.FLAGS.ablation and not flags.FLAGS['methods'].present:
    methods = list(ABLATIONS[flags.FLAGS.ablation])
  run_reporting_errors(_compare_from_flags, methods)


def _compare_from_flags(methods: list[str]) -> dict:
  overrides = {}
  for entry in flags.FLAGS.override:
    if '=' not in entry:
      raise ConfigError(f'--override {entry!r}: use KEY=VALUE')
    key, value = entry.split('=', 1)
    overrides[key] = _parse_value(value)
  if flags.FLAGS.equal_time and flags.FLAGS.equal_time not in methods:
    raise ConfigError(f'--equal_time {flags.FLAGS.equal_time}: not one of the compared methods')
  os.makedirs(flags.FLAGS.workdir, exist_ok=True)
  args = (flags.FLAGS.datasets, flags.FLAGS.steps, flags.FLAGS.seeds, flags.FLAGS.data_source,
          _data_dirs(flags.FLAGS.data_dir, flags.FLAGS.datasets), overrides)
  results = compare(methods, *args, flags.FLAGS.workdir)
  if not flags.FLAGS.equal_time:
    return results
  steps = equal_time_steps(results, flags.FLAGS.equal_time, flags.FLAGS.steps)
  os.makedirs(os.path.join(flags.FLAGS.workdir, 'equal_time'), exist_ok=True)
  return compare(methods, args[0], steps, *args[2:],
                 os.path.join(flags.FLAGS.workdir, 'equal_time'))

if __name__ == '__main__':
  _define_flags()
  app.run(main, flags_parser=parse_flags_or_exit)
