"""Minutes per epoch of each family, and the paper's full budgets in hours, on this machine.

  python benchmarks/epoch_times.py [--rounds 2] [--only conv_mnist,vgon_mnist] [--out FILE.md]
  python benchmarks/epoch_times.py --from_log LOG [--out FILE.md]  # the tables of a saved run

Each entry of ENTRIES (a config, a few overrides, the data set's training size) is timed by
benchmarks/bench.py in its own process: steps per second of the compiled train step on a fixed
batch, after compilation and warm-up. An epoch is `num_train // batch_size` steps, as the data
pipeline counts it (gon_jax.data.batch_indices drops the incomplete last batch). Rounds alternate
over the entries so that the machine's load spreads over all of them; the table gives the range.
Training steps only: the per-epoch evaluation on the test split and checkpoints add to it (a
conv GON's evaluation of 10,000 test images takes a few seconds on a CPU).
"""

import importlib
import json
import pathlib
import re
import subprocess
import sys

from absl import app, flags

REPO = pathlib.Path(__file__).resolve().parents[1]
TRAIN_SIZES = {'mnist': 60_000, 'fashion_mnist': 60_000, 'cifar10': 50_000}
PAPER_RECIPE = ('--config.model.norm=batch', '--config.learning_rate=1e-4',
                '--config.gon.inner_reduction=official')  # compare --recipe paper
_TEN_STEPS = ('--config.gon.num_steps=10', '--config.gon.step_size=0.1')
# name -> (config, data set, extra flags, (timed steps, warm-up steps)). MNIST's times stand for
# Fashion-MNIST's (the same images' shape and count).
# "paper": compare --recipe paper (PAPER_RECIPE).
ENTRIES = {
    'conv_mnist': ('conv_mnist', 'mnist', (), (40, 5)),
    'siren_mnist': ('siren_mnist', 'mnist', (), (5, 2)),
    'conv_cifar10': ('conv_cifar10', 'cifar10', (), (30, 5)),
    'siren_cifar10': ('siren_cifar10', 'cifar10', (), (5, 2)),
}
for _data in ('mnist', 'cifar10'):  # the paper's recipe, as the budgets below train it
  _steps = (40, 5) if _data == 'mnist' else (20, 3)
  ENTRIES.update({f'{name}_{_data} paper': (f'{name}_{_data}', _data, PAPER_RECIPE, _steps)
                  for name in ('conv', 'ae', 'tied_ae', 'glo', 'vgon', 'vae')})
  ENTRIES[f'conv_{_data} paper 10-step'] = (
      f'conv_{_data}', _data, PAPER_RECIPE + _TEN_STEPS, (8, 2))
for _features in (64, 128):  # Fig. 10b's widths
  for _name in ('conv', 'ae'):
    ENTRIES[f'{_name}_cifar10 paper features={_features}'] = (
        f'{_name}_cifar10', 'cifar10', PAPER_RECIPE + (f'--config.model.features={_features}',),
        (6, 2))

_GON, _TEN = 'conv_{} paper', 'conv_{} paper 10-step'
_TABLE_1 = (_GON, 'ae_{} paper', 'tied_ae_{} paper', 'glo_{} paper',
            _GON, _TEN, _TEN)  # gon, ae, tied_ae, glo, detach_1, detach_10, steps_10
# The paper's budgets: name -> [(entry, runs, epochs[, time of a run relative to the entry's])]:
# compare's runs (methods x data sets x seeds), each `epochs` long. docs/reproducing.md gives
# each one's command.
BUDGETS = {
    'Table 1, MNIST and Fashion-MNIST': [(e.format('mnist'), 2 * 3, 500) for e in _TABLE_1],
    'Table 1, CIFAR-10': [(e.format('cifar10'), 3, 500) for e in _TABLE_1],
    'Table 2, MNIST and Fashion-MNIST': [(f'{m}_mnist paper', 2, 1000)
                                         for m in ('vgon', 'vae')],
    'Table 2, CIFAR-10': [(f'{m}_cifar10 paper', 1, 1000) for m in ('vgon', 'vae')],
    # gon and detach_1 at one step's time; 2, 8, 10, 10 and 25 steps at 0.2, 0.8, 1, 1 and 2.5
    # times the 10 steps' (compare --ablation inner_steps).
    'Fig. 2b (CIFAR-10)': [(_GON.format('cifar10'), 2, 60),
                           *((_TEN.format('cifar10'), 1, 60, k / 10) for k in (2, 8, 10, 10, 25))],
    'Fig. 2c (CIFAR-10)': [(_GON.format('cifar10'), 1, 500),
                           ('ae_cifar10 paper', 1, 500)],
    'Fig. 3 (CIFAR-10, latent 512, 128, 32)': [(_GON.format('cifar10'), 7 * 3, 60)],
    'Figs. 2a and 10c (CIFAR-10, latent 512, 128, 32)': [
        (_GON.format('cifar10'), 3, 60), ('ae_cifar10 paper', 3, 60)],
    'Fig. 10b (CIFAR-10, features 16, 64, 128)': [
        (_GON.format('cifar10'), 1, 60), ('ae_cifar10 paper', 1, 60),
        *((f'{n}_cifar10 paper features={f}', 1, 60)
          for n in ('conv', 'ae') for f in (64, 128))],
    'Fig. 11 (CIFAR-10)': [(_GON.format('cifar10'), 7, 60)],
    'App. E, Fig. 16 (MNIST and Fashion-MNIST)': [(_GON.format('mnist'), 2, 500),
                                                  ('ae_mnist paper', 2, 500)],
}

_ROUNDS = flags.DEFINE_integer('rounds', 2, 'Timings of each entry, alternating over entries.')
_ONLY = flags.DEFINE_list('only', [], 'Entries to time (names of ENTRIES); default: all.')
_OUT = flags.DEFINE_string('out', None, 'Also write the table to this Markdown file.')
_FROM_LOG = flags.DEFINE_string('from_log', None, "Time nothing: the tables of an earlier run's "
                                "printed 'round R: ENTRY: X steps/s' lines, in this file.")


def steps_per_second(config: str, data: str, extra: tuple[str, ...], steps: int,
                     warmup: int) -> tuple[float, int]:
  """bench.py's steps per second and batch size for one config, in a process of its own."""
  command = [sys.executable, str(REPO / 'benchmarks' / 'bench.py'),
             '--config', str(REPO / 'configs' / f'{config}.py'), f'--steps={steps}',
             f'--warmup={warmup}', f'--num_train={TRAIN_SIZES[data]}', *extra]
  result = subprocess.run(command, check=True, capture_output=True, text=True)
  measured = json.loads(result.stdout.strip().splitlines()[-1])
  return measured['steps_per_second'], measured['batch_size']


def minutes_per_epoch(rate: float, batch_size: int, num_train: int) -> float:
  """Minutes of `num_train // batch_size` steps at `rate` steps per second."""
  return num_train // batch_size / rate / 60


def table(rates: dict[str, list[float]], batches: dict[str, int]) -> str:
  """The Markdown table: steps/s and minutes per epoch (ranges over rounds)."""
  lines = ['| entry | batch | steps/epoch | steps/s | minutes/epoch |',
           '|---|---:|---:|---:|---:|']
  for name, measured in rates.items():
    num_train = TRAIN_SIZES[ENTRIES[name][1]]
    batch = batches[name]
    low, high = min(measured), max(measured)
    slow, fast = (minutes_per_epoch(r, batch, num_train) for r in (low, high))
    lines.append(f'| {name} | {batch} | {num_train // batch} | {low:.1f}-{high:.1f} | '
                 f'{fast:.1f}-{slow:.1f} |')
  return '\n'.join(lines)


def budget_table(rates: dict[str, list[float]], batches: dict[str, int]) -> str:
  """Hours of each of BUDGETS' training on this machine (range over rounds); budgets with an
  entry that was not timed are left out."""
  lines = ['| budget | runs | epochs | hours |', '|---|---:|---:|---:|']
  for name, parts in BUDGETS.items():
    parts = [(*part, 1.0)[:4] for part in parts]
    if any(entry not in rates for entry, *_ in parts):
      continue
    hours = [sum(runs * epochs * scale * minutes_per_epoch(
        pick(rates[entry]), batches[entry], TRAIN_SIZES[ENTRIES[entry][1]])
                 for entry, runs, epochs, scale in parts) / 60 for pick in (max, min)]
    runs = sum(runs for _, runs, _, _ in parts)
    epochs = '/'.join(sorted({str(epochs) for _, _, epochs, _ in parts}))
    lines.append(f'| {name} | {runs} | {epochs} | {hours[0]:,.0f}-{hours[1]:,.0f} |')
  return '\n'.join(lines)


def rates_from_log(text: str) -> dict[str, list[float]]:
  """The steps/s of each entry in an earlier run's output (its 'round R: ENTRY: X steps/s'
  lines)."""
  rates: dict[str, list[float]] = {}
  for line in text.splitlines():
    match = re.fullmatch(r'round \d+: (.+): ([0-9.]+) steps/s', line.strip())
    if match and match[1] in ENTRIES:
      rates.setdefault(match[1], []).append(float(match[2]))
  return rates


def main(argv):
  del argv
  if _FROM_LOG.value:
    rates = rates_from_log(pathlib.Path(_FROM_LOG.value).read_text())
    batches = {name: importlib.import_module(f'gon_jax.configs.{ENTRIES[name][0]}')
               .get_config().batch_size for name in rates}
    text = table(rates, batches) + '\n\n' + budget_table(rates, batches)
    print(text)
    if _OUT.value:
      pathlib.Path(_OUT.value).write_text(text + '\n')
    return
  names = _ONLY.value or list(ENTRIES)
  unknown = sorted(set(names) - set(ENTRIES))
  if unknown:
    raise app.UsageError(f'unknown entries {unknown}; use names of: {", ".join(ENTRIES)}')
  rates: dict[str, list[float]] = {name: [] for name in names}
  batches: dict[str, int] = {}
  for round_index in range(_ROUNDS.value):
    for name in names:
      config, data, extra, (steps, warmup) = ENTRIES[name]
      rate, batches[name] = steps_per_second(config, data, extra, steps, warmup)
      rates[name].append(rate)
      print(f'round {round_index + 1}: {name}: {rate:.2f} steps/s', flush=True)
  text = table(rates, batches) + '\n\n' + budget_table(rates, batches)
  print(text)
  if _OUT.value:
    pathlib.Path(_OUT.value).write_text(text + '\n')


if __name__ == '__main__':
  app.run(main)
