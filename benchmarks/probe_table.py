"""How much of the label a latent space holds: probes on GON and autoencoder latents, one table.

  python benchmarks/probe_table.py --mnist_dir DIR --fashion_dir DIR [--steps 1000]
      [--seeds 3] [--workdir runs/probe_table] [--write docs/latents.md]

For MNIST and Fashion-MNIST and each seed, trains three models of latent 32 with
gon_jax.experiments.compare (train.py's loop; a finished run is read, not repeated): the
convolutional GON (`conv_mnist`'s recipe), the GON classifier of Eq. 13
(`gon_classifier_mnist`: the same GON with a linear softmax head trained with it) and the
autoencoder (`ae_mnist`: the same decoder after a mirrored encoder). Each model encodes its
training and test splits (gon_jax.encode); a linear probe and an MLP (gon_jax.probes, the
probe's seed the model's) are fitted on the training latents and scored on the test latents.
Prints a Markdown table of test accuracy, mean ± std over the seeds, beside the classifier's
own head and each model's test SSE; `--write FILE` also puts it into FILE between the lines
`<!-- probe-table -->` and `<!-- /probe-table -->`. Each run's probe accuracies are kept in
its folder (`probes.json`), so an interrupted table continues where it stopped.
"""

import argparse
import datetime
import json
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import performance_table  # pylint: disable=wrong-import-position
import gon_jax  # pylint: disable=wrong-import-position
from gon_jax import encode, probes  # pylint: disable=wrong-import-position
from gon_jax.experiments import compare  # pylint: disable=wrong-import-position
from gon_jax.experiments.compare import percent_cell  # pylint: disable=wrong-import-position

BEGIN, END = '<!-- probe-table -->', '<!-- /probe-table -->'
DATASETS = ('mnist', 'fashion_mnist')
# compare's methods -> the table's name for their latents
MODELS = {'gon': 'GON (`conv_mnist`)',
          'gon_classifier': 'GON classifier, Eq. 13 (`gon_classifier_mnist`)',
          'ae': 'autoencoder (`ae_mnist`)'}
PROBE = {'steps': 5000, 'batch_size': 512}  # fit's defaults, recorded with each result


def probe_run(run_dir: str, seed: int) -> dict:
  """`{'linear': test accuracy, 'mlp': test accuracy, 'seconds': encoding and fitting}` of
  the run in `run_dir`, from its `probes.json` when it holds this PROBE's, else measured."""
  path = os.path.join(run_dir, 'probes.json')
  if os.path.exists(path):
    with open(path, encoding='utf-8') as f:
      kept = json.load(f)
    if kept.get('probe') == PROBE:
      return kept
  start = time.perf_counter()
  model = gon_jax.load(run_dir)
  train = encode.encode_split(model, 'train', progress='encoding training images')
  test = encode.encode_split(model, 'test', progress='encoding test images')
  result = {'probe': PROBE}
  for kind in probes.KINDS:
    probe = probes.fit(train['latents'], train['labels'], kind=kind, seed=seed, **PROBE)
    result[kind] = probes.accuracy(probe, test['latents'], test['labels'])
  result['seconds'] = time.perf_counter() - start
  with open(path, 'w', encoding='utf-8') as f:
    json.dump(result, f)
  return result


def table(results: dict, probed: dict, steps: int, seeds: int, machine: str,
          command: str) -> str:
  """The Markdown table of compare's `results` and `probed[(method, dataset)]` (a list over
  seeds of probe_run's dicts)."""
  titles = [compare.DATASET_TITLES[d] for d in DATASETS]
  header = ['latents (32 dimensions)', 'parameters']
  for title in titles:
    header += [f'{title} test SSE', f'{title} linear probe', f'{title} MLP']
  lines = [f'`{command}`: {machine}, {datetime.date.today().isoformat()}. Each model trained '
           f'{steps:,} steps on the training split; probes fitted on its 60,000 training '
           f'latents ({PROBE["steps"]:,} AdamW steps of {PROBE["batch_size"]}), accuracy on '
           f'the 10,000 test latents; mean ± std over seeds 0-{seeds - 1}.', '',
           '| ' + ' | '.join(header) + ' |', '|' + '---|' * 2 + '---:|' * (len(header) - 2)]
  for method, name in MODELS.items():
    cells = [name, f'{results[method]["parameters"]:,}']
    for dataset in DATASETS:
      cells.append(compare._mean_std_cell(  # pylint: disable=protected-access
          [run['sse'] for run in results[method]['runs'][dataset]]))
      cells += [percent_cell([run[kind] for run in probed[method, dataset]])
                for kind in probes.KINDS]
    lines.append('| ' + ' | '.join(cells) + ' |')
    if method == 'gon_classifier':  # Eq. 13's own head: a linear classifier trained with the GON
      cells = ['its own linear head (Eq. 13, trained with the GON)', '']
      for dataset in DATASETS:
        accuracies = [run['accuracy'] for run in results[method]['runs'][dataset]]
        cells += ['', percent_cell(accuracies), '']
      lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
  parser.add_argument('--mnist_dir', default='',
                      help="MNIST's IDX files (default: the download cache)")
  parser.add_argument('--fashion_dir', default='',
                      help="Fashion-MNIST's IDX files (default: the download cache)")
  parser.add_argument('--steps', type=int, default=1000, help='training steps of every model')
  parser.add_argument('--seeds', type=int, default=3, help='seeds 0, 1, ... of every model')
  parser.add_argument('--workdir', default='runs/probe_table', help='folder for the runs')
  parser.add_argument('--write', type=pathlib.Path, default=None,
                      help='a Markdown file to put the table into, between the markers')
  args = parser.parse_args()
  if args.steps < 1 or args.seeds < 1:
    parser.error('--steps and --seeds must be 1 or more')
  if args.write and not (args.write.is_file() and
                         performance_table.marked(BEGIN, END).search(args.write.read_text())):
    parser.error(f'--write {args.write}: not a file with the lines {BEGIN} and {END} '
                 'to write the table between')  # said before minutes of training
  dirs = {'mnist': args.mnist_dir, 'fashion_mnist': args.fashion_dir}
  results = compare.compare(list(MODELS), list(DATASETS), args.steps, args.seeds, 'idx', dirs,
                            {}, args.workdir)
  probed = {}
  for method in MODELS:
    for dataset in DATASETS:
      probed[method, dataset] = [
          probe_run(compare.run_folder(args.workdir, method, dataset, seed), seed)
          for seed in range(args.seeds)]
      print(f'{dataset} {method}: ' + ', '.join(
          f'{kind} {percent_cell([r[kind] for r in probed[method, dataset]])}'
          for kind in probes.KINDS), file=sys.stderr, flush=True)
  command = ' '.join(['python', 'benchmarks/probe_table.py', f'--steps {args.steps}',
                      f'--seeds {args.seeds}'])
  text = table(results, probed, args.steps, args.seeds,
               performance_table._machine(),  # pylint: disable=protected-access
               command)
  print(text)
  if args.write:
    performance_table.write_between_markers(args.write, text, BEGIN, END)


if __name__ == '__main__':
  main()
