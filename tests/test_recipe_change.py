"""Resuming a workdir with another config: a changed recipe is refused in one line and leaves
the workdir as it was; free keys (num_steps, cadences) resume; --allow_recipe_change resumes
and records the change in config_history.jsonl (gon_jax.saved_config.compare_with_saved)."""

import datetime
import json
import os
import shutil

import pytest

from gon_jax import flag_parsing, saved_config
from gon_jax.config import base_config
from gon_jax.configs import conv_mnist_official
from gon_jax.errors import ConfigError
from gon_jax.file_hashes import sha256
from gon_jax.train import train_and_evaluate

from testing_utils import TINY_FLAGS, run_script, tiny_config


def tree_hash(folder) -> dict[str, str]:
  """`{relative path: sha256 of a file, 'folder' for a folder}` of everything under `folder`."""
  tree = {}
  for root, folders, files in os.walk(folder):
    for name in folders:
      tree[os.path.relpath(os.path.join(root, name), folder)] = 'folder'
    for name in files:
      path = os.path.join(root, name)
      tree[os.path.relpath(path, folder)] = sha256(path)
  return tree


@pytest.fixture(name='copy')
def copy_of_tiny_run(tiny_run, tmp_path):
  """`(workdir, config)`: a copy of tiny_run's workdir (tiny_config, LayerNorm, step 2), as the
  issue's user copied a trained workdir."""
  workdir, config = tiny_run
  shutil.copytree(workdir, tmp_path / 'copy')
  return tmp_path / 'copy', config.copy_and_resolve_references()


def official_config(tiny):
  """The issue's command shrunk: configs/conv_mnist_official.py with --config.model.norm=layer
  and more steps, on the sizes of `tiny` (tiny_config; the sizes are not what it is about)."""
  config = conv_mnist_official.get_config()
  config.data.dir, config.data.image_size = tiny.data.dir, tiny.data.image_size
  config.model.latent_dim, config.model.features = tiny.model.latent_dim, tiny.model.features
  config.batch_size, config.eval_batch_size = tiny.batch_size, tiny.eval_batch_size
  config.model.norm = 'layer'
  config.num_steps = 4
  return config


def history(workdir) -> list[dict]:
  path = workdir / saved_config.HISTORY_FILENAME
  return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_issues_command_is_refused_in_one_line_and_changes_nothing(copy):
  workdir, tiny = copy
  before = tree_hash(workdir)
  with pytest.raises(ConfigError) as refused:
    train_and_evaluate(official_config(tiny), str(workdir))
  # Only the recipe keys, with both values: not num_steps (a constant schedule), nor the
  # cadences the official config sets.
  assert str(refused.value) == (
      f'the config given changes the recipe {workdir} was trained with, recorded in '
      f'{workdir}/config.json (saved -> given): gon.inner_reduction \'sum\' -> \'official\', '
      f'learning_rate 0.01 -> 0.0001; to train it, use a new --workdir; to change this run from '
      f'its last checkpoint on, give --allow_recipe_change (train_and_evaluate: '
      f'allow_recipe_change=True), which records the change in {workdir}/config_history.jsonl')
  assert tree_hash(workdir) == before


@pytest.mark.parametrize('free', [{}, {'log_every': 1, 'eval_every': 1, 'checkpoint_every': 1}],
                         ids=['num_steps_alone', 'cadence'])
def test_more_steps_and_other_cadences_resume(copy, free):
  workdir, config = copy
  config.num_steps = 4
  config.update(free)
  state = train_and_evaluate(config, str(workdir))
  assert int(state.step) == 4
  assert saved_config.load(str(workdir)) == config  # config.json holds the config it went on with
  [entry] = history(workdir)  # free changes are recorded too
  assert entry['step'] == 2 and 'recipe' not in entry
  assert entry['free'] == {key: {'saved': saved, 'given': config[key]} for key, saved in
                           {'num_steps': 2, 'log_every': 2, 'eval_every': 2,
                            'checkpoint_every': 2}.items() if key == 'num_steps' or free}


@pytest.mark.slow
def test_allow_recipe_change_resumes_and_records_the_change(copy):
  workdir, tiny = copy
  config = official_config(tiny)
  start = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
  state = train_and_evaluate(config, str(workdir), allow_recipe_change=True)
  assert int(state.step) == 4
  assert saved_config.load(str(workdir)) == config
  [entry] = history(workdir)
  assert entry['step'] == 2
  assert start <= datetime.datetime.fromisoformat(entry['time']) <= datetime.datetime.now(
      datetime.timezone.utc)
  assert entry['recipe'] == {'gon.inner_reduction': {'saved': 'sum', 'given': 'official'},
                             'learning_rate': {'saved': 0.01, 'given': 0.0001}}
  assert entry['free'] == {'checkpoint_every': {'saved': 2, 'given': 1000},
                           'eval_every': {'saved': 2, 'given': 1000},
                           'grid_size': {'saved': 2, 'given': 8},
                           'log_every': {'saved': 2, 'given': 50},
                           'num_steps': {'saved': 2, 'given': 4}}
  # Resumed again as it now is: nothing to refuse, nothing more recorded.
  train_and_evaluate(config, str(workdir))
  assert len(history(workdir)) == 1


def test_free_keys_change_nothing_that_is_trained(tmp_path):
  saved = base_config('conv')
  given = saved.copy_and_resolve_references()
  given.num_steps, given.log_every, given.eval_batch_size = 10_000, 7, 3
  given.data.dir, given.data.download, given.glo.test_steps = '/elsewhere', False, 5
  given.performance.scan_chunk, given.parallel, given.nonfinite = 2, 'pmap', 'skip'
  changes = saved_config.differences(saved, given)
  assert [change.key for change in changes] == [
      'data.dir', 'data.download', 'eval_batch_size', 'glo.test_steps', 'log_every',
      'nonfinite', 'num_steps', 'parallel', 'performance.scan_chunk']
  assert not any(change.recipe for change in changes)
  saved_config.save(saved, str(tmp_path))
  assert saved_config.compare_with_saved(given, str(tmp_path)) == changes


def test_cosine_num_steps_a_folders_dir_and_unknown_keys_are_the_recipe(tmp_path):
  saved = base_config('conv')
  saved.lr_schedule, saved.data.source = 'cosine', 'folder'
  saved_config.save(saved, str(tmp_path))
  given = saved.copy_and_resolve_references()
  given.num_steps, given.data.dir = 2000, '/other/images'
  given.model.new_option = 1  # a key this list's author never saw: the recipe
  with pytest.raises(ConfigError) as refused:
    saved_config.compare_with_saved(given, str(tmp_path))
  message = str(refused.value)
  assert ("data.dir '' -> '/other/images' (with data.source 'folder', data.dir is the data "
          "set), model.new_option (absent) -> 1, num_steps 1000 -> 2000 (with lr_schedule "
          "'cosine', num_steps sets the learning rate's decay, so it changes the learning rate "
          "of the steps to come);") in message
  assert '\n' not in message
  allowed = saved_config.compare_with_saved(given, str(tmp_path), allow_recipe_change=True)
  assert [(change.key, change.recipe) for change in allowed] == [
      ('data.dir', True), ('model.new_option', True), ('num_steps', True)]
  assert os.listdir(tmp_path) == ['config.json']  # comparing writes nothing


def test_another_model_names_the_keys_one_config_lacks(tmp_path):
  conv = base_config('conv')
  saved_config.save(conv, str(tmp_path))
  with pytest.raises(ConfigError) as refused:
    saved_config.compare_with_saved(base_config('siren'), str(tmp_path))
  message = str(refused.value)
  assert f'model.features {conv.model.features} -> (absent)' in message
  assert "model.name 'conv' -> 'siren'" in message


def test_a_missing_workdir_is_said_to_be_missing(tmp_path, capsys):
  from gon_jax import cli  # pylint: disable=import-outside-toplevel,unused-import  # its flags
  missing = tmp_path / 'nothing_here'
  for starts_runs, expected in (
      (False, f'error: workdir {missing} does not exist'),
      (True, f'error: no --config given, and workdir {missing} does not exist: give --config '
             'NAME_OR_FILE to start a run in it')):
    with pytest.raises(SystemExit) as exited:
      flag_parsing.parse_flags_or_exit(['eval.py', '--workdir', str(missing)],
                                       workdir_config=True, starts_runs=starts_runs)
    assert exited.value.code == 1
    assert capsys.readouterr().err == expected + '\n'
  assert not missing.exists()


def test_a_damaged_config_json_is_one_line_and_the_library_gives_no_flags(tmp_path, capsys):
  from gon_jax import cli  # pylint: disable=import-outside-toplevel,unused-import  # its flags
  (tmp_path / 'config.json').write_text('{"model": ')
  with pytest.raises(ConfigError) as raised:  # gon_jax.load's route: no command-line advice
    saved_config.load(str(tmp_path))
  assert str(raised.value) == (f'{tmp_path}/config.json is not a saved gon_jax config '
                               '(JSONDecodeError: Expecting value: line 1 column 11 (char 10))')
  with pytest.raises(SystemExit):
    flag_parsing.parse_flags_or_exit(['eval.py', '--workdir', str(tmp_path)], workdir_config=True)
  assert capsys.readouterr().err == (f'error: {raised.value}; give --config NAME_OR_FILE to use '
                                     'another config\n')


@pytest.mark.slow
def test_train_py_refuses_the_issues_command_in_one_line(copy):
  workdir, tiny = copy
  before = tree_hash(workdir)
  result = run_script(
      'train.py', workdir, f'--config.data.dir={tiny.data.dir}', '--config.model.norm=layer',
      '--config.num_steps=6', config='configs/conv_mnist_official.py',
      tiny_flags=[flag for flag in TINY_FLAGS if 'learning_rate' not in flag])
  assert result.returncode == 1
  assert result.stderr.splitlines() == [
      f'error: the config given changes the recipe {workdir} was trained with, recorded in '
      f'{workdir}/config.json (saved -> given): gon.inner_reduction \'sum\' -> \'official\', '
      f'learning_rate 0.01 -> 0.0001; to train it, use a new --workdir; to change this run from '
      f'its last checkpoint on, give --allow_recipe_change (train_and_evaluate: '
      f'allow_recipe_change=True), which records the change in {workdir}/config_history.jsonl']
  assert tree_hash(workdir) == before
