"""scripts/paper_scale.py: the paper-scale tables read from run folders as compare and train.py
write them (finished runs only, a cell over several seeds as mean ± std (seeds))."""

import importlib.util
import json

from gon_jax import saved_config
from gon_jax.configs import conv_mnist, vgon_mnist

from testing_utils import REPO

_SPEC = importlib.util.spec_from_file_location('paper_scale', REPO / 'scripts' / 'paper_scale.py')
paper_scale = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(paper_scale)


def _run(folder, sse, finished=True, steps=10):
  """A compare run's folder: config.json, metrics.jsonl (its final test SSE if `finished`)
  and one epoch's record."""
  config = conv_mnist.get_config()
  config.num_steps = steps
  folder.mkdir(parents=True)
  saved_config.save(config, str(folder))
  rows = [{'step': steps, 'train/loss': sse + 1.0, 'train/steps_per_second': 50.0}]
  if finished:
    rows.append({'step': steps, 'test/sse': sse, 'test/psnr': 20.0})
  (folder / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
  (folder / 'epochs.jsonl').write_text(json.dumps(
      {'epoch': 1, 'step': steps, 'train_loss': sse + 1.0, 'test_loss': sse}) + '\n')


def test_table_1_averages_the_finished_seeds_only(tmp_path):
  runs = tmp_path / 'table1_mnist_paper' / 'runs' / 'mnist'
  _run(runs / 'gon' / 'seed0', 4.0)
  _run(runs / 'gon' / 'seed1', 6.0)
  _run(runs / 'gon' / 'seed2', 1.0, finished=False)  # still training: not counted
  _run(tmp_path / 'table1_cifar10_paper' / 'runs' / 'cifar10' / 'ae' / 'seed0', 9.5)
  lines = paper_scale.table_1(tmp_path, 'paper').splitlines()
  assert lines[0] == '| method | MNIST | Fashion-MNIST | CIFAR-10 (JPEG) |'
  assert '| gon | 5.00 ± 1.00 (2) | - | - |' in lines
  assert '| ae | - | - | 9.50 |' in lines  # one seed: its value alone
  assert not [line for line in lines if line.startswith('| tied_ae')]  # no run: no row
  assert paper_scale.table_1(tmp_path, 'default').count('\n') == 1  # the header alone


def test_table_2_reads_eval_and_sample_quality(tmp_path):
  workdir = tmp_path / 'table2' / 'vgon_mnist'
  workdir.mkdir(parents=True)
  saved_config.save(vgon_mnist.get_config(), str(workdir))
  (workdir / 'eval').mkdir()
  (workdir / 'eval' / 'metrics.json').write_text(json.dumps(
      {'bits_per_dim': 0.2, 'negative_elbo_nats': 150.0, 'sse': 7.5, 'step': 20}))
  (workdir / 'sample_quality.json').write_text(json.dumps(
      {'fd_samples': 300.0, 'fd_floor_train_vs_test': 1.9}))
  (workdir / 'epochs.jsonl').write_text('{"epoch": 1}\n{"epoch": 2}\n')
  lines = paper_scale.table_2(tmp_path).splitlines()
  assert lines[2:] == ['| MNIST | vgon | 2 | 0.2000 | 150.0 | 7.50 | 300.00 | 1.90 |']


def test_the_ablation_names_each_change_and_divides_the_gon_by_the_autoencoder(tmp_path):
  _run(tmp_path / 'table1_mnist_paper' / 'runs' / 'mnist' / 'gon' / 'seed0', 4.5)
  _run(tmp_path / 'table1_mnist_paper' / 'runs' / 'mnist' / 'ae' / 'seed0', 3.0)
  _run(tmp_path / 'table1_mnist_paper' / 'runs' / 'mnist' / 'gon' / 'seed1', 9.0)  # not paired
  changed = tmp_path / 'ablation_mnist_lr'
  _run(changed / 'runs' / 'mnist' / 'gon' / 'seed0', 3.0)
  _run(changed / 'runs' / 'mnist' / 'ae' / 'seed0', 2.0, finished=False)
  (changed / 'results.json').write_text(json.dumps(
      {'overrides': {'epoch_eval_examples': 2000, 'learning_rate': 0.001}}))
  _run(tmp_path / 'ablation_mnist_norm' / 'runs' / 'mnist' / 'gon' / 'seed0', 5.0)  # running
  lines = paper_scale.ablation(tmp_path).splitlines()
  assert lines[2:] == ['| none | 4.50 | 3.00 | 1.50 |',  # seed 0 alone, as each change's
                       '| learning_rate=0.001 | 3.00 | - | - |',
                       '| norm | 5.00 | - | - |']


def _epochs(folder, test_losses):
  (folder / 'epochs.jsonl').write_text(''.join(
      json.dumps({'epoch': i + 1, 'step': i + 1, 'train_loss': loss + 1.0, 'test_loss': loss})
      + '\n' for i, loss in enumerate(test_losses)))


def test_figure_2a_cuts_table_1s_runs_at_epoch_5(tmp_path):
  ten_epochs = {'gon': [9, 8, 7, 6, 5, 4, 3, 2, 1, 0.5], 'ae': [9, 9, 9, 9, 10, 1, 1, 1, 1, 1]}
  for method, losses in ten_epochs.items():
    _run(tmp_path / 'table1_cifar10_paper' / 'runs' / 'cifar10' / method / 'seed0', 3.0)
    _epochs(tmp_path / 'table1_cifar10_paper' / 'runs' / 'cifar10' / method / 'seed0', losses)
  for method, losses in (('gon', [8, 6, 4, 3, 2]), ('ae', [8, 7, 6, 5, 3])):
    _run(tmp_path / 'fig2a_side2' / 'runs' / 'cifar10' / method / 'seed0', 2.0)
    _epochs(tmp_path / 'fig2a_side2' / 'runs' / 'cifar10' / method / 'seed0', losses)
  _run(tmp_path / 'fig2a_side4' / 'runs' / 'cifar10' / 'gon' / 'seed0', 2.0)  # no ae: no row
  lines = paper_scale.figure_2a(tmp_path, tmp_path).splitlines()
  assert lines[2:] == ['| 1x1 | 5.00 | 10.00 | 2.00 |', '| 2x2 | 2.00 | 3.00 | 1.50 |']
  assert (tmp_path / 'fig2a_curves.png').stat().st_size > 0


def test_the_ten_step_rows_compare_at_their_epoch_with_table_1s_runs(tmp_path):
  table_1 = tmp_path / 'table1_mnist_paper' / 'runs' / 'mnist'
  for method, losses in (('gon', [5, 4, 3, 2]), ('detach_1', [9, 8, 7, 6])):
    _run(table_1 / method / 'seed0', 1.0)
    _epochs(table_1 / method / 'seed0', losses)
  _run(table_1 / 'gon' / 'seed1', 1.0)  # the 10-step runs have seed 0 alone: not counted
  _epochs(table_1 / 'gon' / 'seed1', [9, 9, 9])
  _run(tmp_path / 'inner_steps_mnist' / 'runs' / 'mnist' / 'steps_10' / 'seed0', 2.5)
  _epochs(tmp_path / 'inner_steps_mnist' / 'runs' / 'mnist' / 'steps_10' / 'seed0', [6, 4, 2.5])
  _run(tmp_path / 'inner_steps_mnist' / 'runs' / 'mnist' / 'detach_10' / 'seed0', 8.0)
  _epochs(tmp_path / 'inner_steps_mnist' / 'runs' / 'mnist' / 'detach_10' / 'seed0', [9, 8])
  lines = paper_scale.inner_steps(tmp_path).splitlines()  # detach_10 has 2 epochs: no row
  assert lines[2:] == ['| gon | 3.00 | 0.020 |', '| detach_1 | 7.00 | 0.020 |',
                       '| steps_10 | 2.50 | 0.020 |']


def test_figure_3_gives_test_and_training_losses_and_draws_the_finished_latents(tmp_path):
  methods = [*paper_scale.FIG_3, 'ae']
  for i, method in enumerate(methods):  # latent 512: every method; latent 128: the GON only
    _run(tmp_path / 'fig3_latent512' / 'runs' / 'cifar10' / method / 'seed0', 10.0 + i)
  _run(tmp_path / 'fig3_latent128' / 'runs' / 'cifar10' / 'gon' / 'seed0', 20.0)
  test_title, test_table, train_title, train_table = paper_scale.figure_3(
      tmp_path, tmp_path).split('\n\n')
  assert (test_title, train_title) == ('test SSE per image', 'training loss over the last epoch')
  rows = {line.split(' | ')[0]: line for line in test_table.splitlines()[2:]}
  assert sorted(rows) == sorted(f'| {m}' for m in methods)
  ae = len(methods) - 1
  assert rows['| ae'] == f'| ae | {10 + ae:.2f} | - | - |'
  assert rows['| gon'] == f'| gon | {10 + methods.index("gon"):.2f} | 20.00 | - |'
  assert f'| ae | {11 + ae:.2f} | - | - |' in train_table  # _run: train = test + 1
  assert (tmp_path / 'fig3_curves.png').stat().st_size > 0  # latent 512's panel only


def test_batchnorm_modes_groups_the_runs_of_each_file_by_method(tmp_path):
  def modes(path, runs):  # gon_jax.experiments.batchnorm_modes --out's JSON
    path.write_text(json.dumps({'batch_size': 64, 'split': 'test', 'runs': [
        {'run': f'/runs/table1_x/runs/x/{method}/seed{seed}', 'batch_statistics': batch,
         'running_averages': running, 'num_images': 9984}
        for method, seed, batch, running in runs]}))
  modes(tmp_path / 'a.json', [('gon', 0, 4.0, 5.0), ('gon', 1, 6.0, 9.0), ('ae', 0, 3.0, 2.0)])
  modes(tmp_path / 'b.json', [('ae', 0, 7.0, 8.0)])
  table = paper_scale.batchnorm_modes({'A': tmp_path / 'a.json', 'B': tmp_path / 'b.json',
                                       'C': tmp_path / 'not_yet.json'}, ['gon', 'tied_ae', 'ae'])
  assert table.splitlines() == [
      '| method | A: batch statistics | running averages '
      '| B: batch statistics | running averages |',
      '|---|---:|---:|---:|---:|',
      '| gon | 5.00 ± 1.00 (2) | 7.00 ± 2.00 (2) | - | - |',
      '| ae | 3.00 | 2.00 | 7.00 | 8.00 |']
