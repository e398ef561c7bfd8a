"""The comparison command: runs, skips finished runs, writes the table and the plot."""

import json
import os
import subprocess
import sys

import pytest

import testing_utils
from gon_jax.errors import ConfigError
from gon_jax.experiments import compare, methods

TINY = {'data.image_size': 16, 'model.features': 4, 'model.latent_dim': 8, 'batch_size': 8,
        'eval_batch_size': 32, 'grid_size': 2, 'learning_rate': 1e-2, 'glo.test_steps': 3}


@pytest.mark.slow
def test_compare_writes_table_and_curves_and_resumes(blob_dir, tmp_path):
  workdir = str(tmp_path / 'compare')
  os.makedirs(workdir)
  args = (['gon', 'glo'], ['mnist'], 4, 2, 'idx', {'mnist': str(blob_dir)}, TINY, workdir)
  results = compare.compare(*args)
  table = open(os.path.join(workdir, 'results.md'), encoding='utf-8').read()
  assert '| gon (GON, one gradient step) |' in table and '| glo (' in table
  assert 'MNIST test SSE' in table and '±' in table
  for method in ('gon', 'glo'):
    runs = results[method]['runs']['mnist']
    assert len(runs) == 2 and runs[0]['sse'] != runs[1]['sse']  # two seeds, two results
    assert [step for step, _ in runs[0]['curve']] == [1, 2, 3, 4]
  assert os.path.getsize(os.path.join(workdir, 'loss_curves.png')) > 1000
  saved = json.load(open(os.path.join(workdir, 'results.json'), encoding='utf-8'))
  assert saved['results']['gon']['parameters'] == results['gon']['parameters']

  metrics = os.path.join(workdir, 'runs', 'mnist', 'gon', 'seed0', 'metrics.jsonl')
  before = open(metrics, encoding='utf-8').read()
  again = compare.compare(*args)  # finished runs are read, not retrained
  assert open(metrics, encoding='utf-8').read() == before
  assert again['gon']['runs'] == results['gon']['runs']


@pytest.mark.slow
def test_equal_time_gives_each_method_the_reference_training_time(blob_dir, tmp_path):
  measured = {'gon': {'runs': {'mnist': [{'seconds_per_step': 0.1}, {'seconds_per_step': 0.3}],
                               'fashion_mnist': [{'seconds_per_step': 0.2}]}},
              'steps_10': {'runs': {'mnist': [{'seconds_per_step': 2.0}]}},
              'ae': {'runs': {'mnist': [{'seconds_per_step': 0.0999}]}}}
  # gon: 500 steps of 0.2 s = 100 s; steps_10 50 steps of 2 s; ae ~1001 steps, in tens.
  assert compare.equal_time_steps(measured, 'gon', 500) == {'gon': 500, 'steps_10': 50, 'ae': 1000}
  workdir = str(tmp_path / 'equal_time')
  os.makedirs(workdir)
  results = compare.compare(['gon', 'detach_1'], ['mnist'], {'gon': 3, 'detach_1': 5}, 1, 'idx',
                            {'mnist': str(blob_dir)}, TINY, workdir)
  assert [s for s, _ in results['detach_1']['runs']['mnist'][0]['curve']] == [1, 2, 3, 4, 5]
  assert [s for s, _ in results['gon']['runs']['mnist'][0]['curve']] == [1, 2, 3]
  table = open(os.path.join(workdir, 'results.md'), encoding='utf-8').read()
  assert '| gon (GON, one gradient step) | 1,637 | 3 |' in table, table


def test_bad_methods_and_overrides_are_one_line_errors(blob_dir, tmp_path):
  with pytest.raises(ConfigError, match='unknown method .*valid: gon, ae'):
    methods.run_config('vae_gon', 'mnist', 0, 10, 'idx', str(blob_dir), {})
  with pytest.raises(ConfigError, match="unknown config key 'model.widht'"):
    methods.run_config('gon', 'mnist', 0, 10, 'idx', str(blob_dir), {'model.widht': 3})
  with pytest.raises(ConfigError, match='model.latent_dim'):
    methods.run_config('gon', 'mnist', 0, 10, 'idx', str(blob_dir), {'model.latent_dim': 'x'})
  result = subprocess.run(
      [sys.executable, '-m', 'gon_jax.experiments.compare', '--methods', 'gon,nope',
       '--workdir', str(tmp_path / 'bad')], capture_output=True, text=True,
      cwd=testing_utils.REPO, timeout=120)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f"error: unknown method 'nope'; valid: {', '.join(methods.METHODS)}"]


def test_ablations_name_known_methods():
  for names in methods.ABLATIONS.values():
    for method in names:
      assert method in methods.METHODS
  config = methods.run_config('gon_sigma0.1_step', 'mnist', 0, 10, 'idx', '/x', {})
  assert config.gon.z0_sigma == 0.1 and config.gon.start_from_z0
  config = methods.run_config('gon_relu', 'mnist', 0, 10, 'idx', '/x', {})
  assert config.model.activation == 'relu'
  config = methods.run_config('gon_classifier', 'mnist', 0, 10, 'idx', '/x', {})
  assert config.classifier.num_classes == 10
  assert 'gon' in methods.ABLATIONS['activation']  # conv_mnist's ELU, run once
  assert 'gon_elu' not in methods.ABLATIONS['activation']


def test_the_table_adds_test_accuracy_when_a_method_classifies():
  def run(sse, accuracy):
    return {'sse': sse, 'accuracy': accuracy, 'seconds_per_step': 0.1, 'curve': []}
  results = {'gon': {'parameters': 10, 'runs': {'mnist': [run(5.0, None), run(7.0, None)]}},
             'gon_classifier': {'parameters': 12, 'runs': {'mnist': [run(6.0, 0.9), run(6.0, 0.8)]}}}
  table = compare.summarise(results, ['gon', 'gon_classifier'], ['mnist'],
                            {'gon': 500, 'gon_classifier': 500}, 2)
  assert '| MNIST test SSE | MNIST test accuracy | s / step |' in table, table
  assert '| gon (GON, one gradient step) | 10 | 500 | 6.00 ± 1.00 | - | 0.1000 |' in table, table
  assert '| 6.00 ± 0.00 | 85.0% ± 5.0 | 0.1000 |' in table, table
  without = compare.summarise(results, ['gon'], ['mnist'], {'gon': 500}, 2)
  assert 'accuracy' not in without


def test_the_implicit_ablation_reports_psnr():
  for method in methods.ABLATIONS['implicit']:
    config = methods.run_config(method, 'fashion_mnist', 0, 10, 'idx', '/x', {})
    assert config.model.name == 'siren' and config.data.name == 'fashion_mnist'
  config = methods.run_config('siren_steps_3_learnt', 'mnist', 0, 10, 'idx', '/x', {})
  assert config.gon.num_steps == 3 and config.gon.learn_step_size == 'per_dimension'
  run = {'sse': 20.0, 'psnr': 15.0, 'accuracy': None, 'seconds_per_step': 0.1, 'curve': []}
  results = {'siren': {'parameters': 9, 'implicit': True, 'runs': {'mnist': [run, run]}}}
  table = compare.summarise(results, ['siren'], ['mnist'], {'siren': 50}, 2)
  assert '| MNIST test SSE | MNIST test PSNR (dB) | s / step |' in table, table
  assert '| 20.00 ± 0.00 | 15.00 ± 0.00 | 0.1000 |' in table, table


@pytest.mark.slow
def test_a_diverged_run_is_a_result_not_the_end_of_the_comparison(blob_dir, tmp_path):
  """A run stopped on a non-finite loss or gradient is recorded (diverged.json) and shown as
  diverged; the comparison goes on, and reading it back does not train it again."""
  workdir = str(tmp_path / 'compare')
  os.makedirs(workdir)
  args = (['gon', 'detach_1'], ['mnist'], 4, 1, 'idx', {'mnist': str(blob_dir)},
          {**TINY, 'learning_rate': 1e30}, workdir)  # Adam steps of 1e30 overflow at once
  results = compare.compare(*args)
  for method in ('gon', 'detach_1'):
    run = results[method]['runs']['mnist'][0]
    assert run['diverged_at'] in (1, 2, 3, 4) and run['sse'] != run['sse']  # nan
  table = open(os.path.join(workdir, 'results.md'), encoding='utf-8').read()
  assert table.count('| diverged (1 of 1) |') == 2, table
  run_dir = os.path.join(workdir, 'runs', 'mnist', 'gon', 'seed0')
  before = sorted(os.listdir(run_dir))
  again = compare.compare(*args)['gon']['runs']['mnist'][0]
  assert again['diverged_at'] == results['gon']['runs']['mnist'][0]['diverged_at']
  assert sorted(os.listdir(run_dir)) == before
  assert compare.mean_std_cell([1.0, float('nan'), 3.0]) == '2.00 ± 1.00 (1 of 3 diverged)'


def test_the_length_is_steps_or_epochs_never_both():
  assert compare.epochs_from_flags(1000, False, None) == 0  # --steps (or its default)
  assert compare.epochs_from_flags(1000, False, 5) == 5
  with pytest.raises(ConfigError, match=r'^--steps 200 and --epochs 5: give one, the length '):
    compare.epochs_from_flags(200, True, 5)
  with pytest.raises(ConfigError, match=r'^--epochs 0: train at least 1 epoch$'):
    compare.epochs_from_flags(1000, False, 0)
  # An epoch of 100 images in batches of 64 is 1 step; the cadences follow the steps.
  config = methods.run_config('gon', 'mnist', 0, None, 'idx', '/x', {}, epochs=3, num_train=100)
  assert (config.num_epochs, config.num_steps, config.eval_every, config.log_every) == (3, 3, 3, 1)
  # A run in epochs checkpoints at every epoch's end: killed midway, it resumes from there.
  config = methods.run_config('gon', 'mnist', 0, None, 'idx', '/x', {}, epochs=4, num_train=1000)
  assert (config.num_steps, config.checkpoint_every) == (4 * 15, 15)
  assert methods.run_config('gon', 'mnist', 0, 20, 'idx', '/x', {}).checkpoint_every == 20
  table = compare.summarise(
      {'gon': {'parameters': 10, 'runs': {'mnist': [{'sse': 5.0, 'seconds_per_step': 0.1}]}}},
      ['gon'], ['mnist'], None, 1, epochs=3)
  assert '| Method | Parameters | Epochs | MNIST test SSE |' in table, table
  assert '| gon (GON, one gradient step) | 10 | 3 | 5.00 ± 0.00 |' in table, table


def test_the_paper_recipe_lands_in_every_method_under_its_own_changes():
  paper = methods.RECIPES['paper']
  assert paper == {'model.norm': 'batch', 'learning_rate': 1e-4,
                   'gon.inner_reduction': 'official'}
  for method in methods.TABLE_1:
    config = methods.method_config(method, 'mnist', 0, 'idx', '/x', {}, 'paper')
    assert (config.model.norm, config.learning_rate, config.gon.inner_reduction) == (
        'batch', 1e-4, 'official'), method
  config = methods.run_config('detach_10', 'mnist', 0, 10, 'idx', '/x', {}, recipe='paper')
  assert (config.model.norm, config.gon.num_steps, config.gon.detach) == ('batch', 10, True)
  # A method's own change wins over the recipe's; --override over both.
  assert methods.run_config('gon_no_norm', 'mnist', 0, 10, 'idx', '/x', {},
                            recipe='paper').model.norm == 'none'
  assert methods.run_config('gon', 'mnist', 0, 10, 'idx', '/x', {'learning_rate': 3e-4},
                            recipe='paper').learning_rate == 3e-4
  assert methods.run_config('gon', 'mnist', 0, 10, 'idx', '/x', {}).model.norm == 'layer'


def test_cifar10_runs_use_the_cifar10_config_of_a_method_where_there_is_one(monkeypatch):
  packaged = {'conv_cifar10', 'ae_cifar10'}
  monkeypatch.setattr(methods, '_config_exists', lambda name: name in packaged)
  assert methods.config_name('conv_mnist', 'cifar10') == 'conv_cifar10'
  assert methods.config_name('ae_mnist', 'cifar10') == 'ae_cifar10'
  assert methods.config_name('tied_ae_mnist', 'cifar10') == 'tied_ae_mnist'  # none: as before
  assert methods.config_name('conv_mnist', 'fashion_mnist') == 'conv_mnist'
  assert methods.config_name('siren_mnist_tiny', 'mnist') == 'siren_mnist_tiny'
  monkeypatch.undo()
  assert methods._config_exists('conv_mnist') and not methods._config_exists('conv_nothing')


@pytest.mark.slow
def test_compare_in_epochs_writes_epoch_curves_and_per_epoch_numbers(tmp_path):
  # 36 training images in batches of 8: epochs of 4 steps.
  blobs = testing_utils.write_blob_digits(tmp_path / 'blobs', num_train=36, num_test=16)
  workdir = str(tmp_path / 'compare')
  os.makedirs(workdir)
  results = compare.compare(['gon', 'ae'], ['mnist'], None, 1, 'idx', {'mnist': str(blobs)},
                            {**TINY, 'model.norm': 'layer'}, workdir, epochs=2)
  for method in ('gon', 'ae'):
    run = results[method]['runs']['mnist'][0]
    assert [e['epoch'] for e in run['epochs']] == [1, 2]
    assert all(e['train_loss'] > 0 and e['test_loss'] > 0 for e in run['epochs'])
    assert run['curve'][-1][0] == 8  # 2 epochs of 4 steps
  saved = json.load(open(os.path.join(workdir, 'results.json'), encoding='utf-8'))
  assert saved['epochs'] == 2 and saved['steps'] == {'gon': {'mnist': 8}, 'ae': {'mnist': 8}}
  ae_run = results['ae']['runs']['mnist'][0]
  assert saved['results']['ae']['runs']['mnist'][0]['epochs'] == ae_run['epochs']
  assert os.path.getsize(os.path.join(workdir, 'epoch_curves.png')) > 1000
  table = open(os.path.join(workdir, 'results.md'), encoding='utf-8').read()
  assert '| Epochs |' in table and '| 2 |' in table
