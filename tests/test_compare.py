"""The comparison command: runs, skips finished runs, writes the table and the plot."""

import json
import os
import subprocess
import sys

import pytest

import testing_utils
from gon_jax.errors import ConfigError
from gon_jax.experiments import compare

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
    compare.run_config('vae_gon', 'mnist', 0, 10, 'idx', str(blob_dir), {})
  with pytest.raises(ConfigError, match="unknown config key 'model.widht'"):
    compare.run_config('gon', 'mnist', 0, 10, 'idx', str(blob_dir), {'model.widht': 3})
  with pytest.raises(ConfigError, match='model.latent_dim'):
    compare.run_config('gon', 'mnist', 0, 10, 'idx', str(blob_dir), {'model.latent_dim': 'x'})
  result = subprocess.run(
      [sys.executable, '-m', 'gon_jax.experiments.compare', '--methods', 'gon,nope',
       '--workdir', str(tmp_path / 'bad')], capture_output=True, text=True,
      cwd=testing_utils.REPO, timeout=120)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f"error: unknown method 'nope'; valid: {', '.join(compare.METHODS)}"]


def test_ablations_name_known_methods():
  for methods in compare.ABLATIONS.values():
    for method in methods:
      assert method in compare.METHODS
  config = compare.run_config('gon_sigma0.1_step', 'mnist', 0, 10, 'idx', '/x', {})
  assert config.gon.z0_sigma == 0.1 and config.gon.start_from_z0
  config = compare.run_config('gon_relu', 'mnist', 0, 10, 'idx', '/x', {})
  assert config.model.activation == 'relu'
  config = compare.run_config('gon_classifier', 'mnist', 0, 10, 'idx', '/x', {})
  assert config.classifier.num_classes == 10
  assert 'gon' in compare.ABLATIONS['activation']  # conv_mnist's ELU, run once
  assert 'gon_elu' not in compare.ABLATIONS['activation']


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
  for method in compare.ABLATIONS['implicit']:
    config = compare.run_config(method, 'fashion_mnist', 0, 10, 'idx', '/x', {})
    assert config.model.name == 'siren' and config.data.name == 'fashion_mnist'
  config = compare.run_config('siren_steps_3_learnt', 'mnist', 0, 10, 'idx', '/x', {})
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
  assert compare._mean_std_cell([1.0, float('nan'), 3.0]) == '2.00 ± 1.00 (1 of 3 diverged)'
