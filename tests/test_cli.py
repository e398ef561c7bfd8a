"""train.py and eval.py as a user runs them: end to end, and on bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from PIL import Image

from gon_jax import cli, images

from testing_utils import REPO, TINY_SIREN_FLAGS, run_script, write_idx_folder


def snapshot(folder):
  return {os.path.join(root, name): os.stat(os.path.join(root, name)).st_mtime_ns
          for root, _, files in os.walk(folder) for name in files}


@pytest.fixture(scope='module')
def trained(blob_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp('run')
  result = run_script('train.py', workdir, f'--config.data.dir={blob_dir}')
  assert result.returncode == 0, result.stderr[-2000:]
  return workdir


@pytest.mark.slow
def test_train_then_eval(trained, blob_dir):
  assert sorted(os.listdir(trained / 'checkpoints')) == ['3']
  result = run_script('eval.py', trained, f'--config.data.dir={blob_dir}')
  assert result.returncode == 0, result.stderr[-2000:]
  printed = json.loads(result.stdout.strip().splitlines()[-1])
  assert printed == json.loads((trained / 'eval' / 'metrics.json').read_text())
  assert printed['step'] == 3 and printed['num_images'] == 64
  assert 0 < printed['sse'] < 256 and printed['psnr'] > 0
  assert (trained / 'eval' / 'reconstructions.png').is_file()
  # The workdir alone: eval reads the config training recorded, and evaluates alike.
  saved = json.loads((trained / 'config.json').read_text())
  assert saved['model']['latent_dim'] == 8 and saved['data']['dir'] == str(blob_dir)
  alone = run_script('eval.py', trained, config=None, tiny_flags=[])
  assert alone.returncode == 0, alone.stderr[-2000:]
  assert json.loads(alone.stdout.strip().splitlines()[-1]) == printed


@pytest.mark.slow
def test_implicit_gon_eval_writes_every_grid(blob_dir, tmp_path):
  siren = dict(config='configs/siren_mnist_tiny.py', tiny_flags=TINY_SIREN_FLAGS)
  for script in ('train.py', 'eval.py'):
    result = run_script(script, tmp_path, f'--config.data.dir={blob_dir}', **siren)
    assert result.returncode == 0, result.stderr[-2000:]
  metrics = json.loads(result.stdout.strip().splitlines()[-1])
  assert metrics['num_images'] == 64 and metrics['psnr'] > 0
  sizes = {name: Image.open(tmp_path / 'eval' / f'{name}.png').size
           for name in ('reconstructions', 'interpolation', 'samples', 'superres')}
  # 4 test images per panel at 20x20 under a title strip, each panel as wide as its title
  # at least; two gaps between the three panels.
  titles = ['test image', 'reconstruction', 'rendered at 20x20']
  assert sizes['superres'] == (sum(max(2 * 20, images.title_width(t)) for t in titles) + 2 * 2,
                               images.TITLE_HEIGHT + 2 * 20)
  assert sizes['interpolation'] == (max(2 * 8, images.title_width('interpolation (slerp)')),
                                    images.TITLE_HEIGHT + 2 * 8)


def _idx_folder(folder, damage):
  """A small IDX folder, damaged: 'magic', 'truncated' or 'count' (labels and images differ)."""
  images = {split: np.zeros((4, 28, 28), np.uint8) for split in ('train', 'test')}
  labels = {split: np.zeros(4, np.uint8) for split in ('train', 'test')}
  if damage == 'count':
    labels['train'] = np.zeros(3, np.uint8)
  write_idx_folder(folder, images, labels, gz=False)
  path = folder / 'train-images-idx3-ubyte'
  raw = path.read_bytes()
  if damage == 'magic':
    path.write_bytes(b'\x00\x00\x08\x01' + raw[4:])
  if damage == 'truncated':
    path.write_bytes(raw[:-100])
  return folder


BAD_INPUT = {  # case: (flags, text the error line must contain)
    'missing_folder': (['--config.data.dir={tmp}/nowhere', '--config.data.download=False'],
                       'nowhere'),
    'empty_folder': (['--config.data.dir={empty}', '--config.data.download=False'], 'is empty'),
    'wrong_magic': (['--config.data.dir={magic}'], 'magic number'),
    'truncated_idx': (['--config.data.dir={truncated}'], 'truncated'),
    'images_labels_differ': (['--config.data.dir={count}'], '4 images but 3 labels'),
    'unknown_dataset': (['--config.data.source=tfds', '--config.data.name=mnistt'],
                        'unknown data set \'mnistt\'; use one of celeb_a, cifar10'),
    'unknown_model': (['--config.model.name=resnet'], "unknown model 'resnet'; valid: conv"),
    'unknown_activation': (['--config.model.activation=gelu'], 'valid: elu, relu'),
    'unknown_option': (['--config.gon.inner_reduction=median'], 'valid: sum, mean, official'),
    'unknown_key': (['--config.model.widht=3'],
                    "unknown config key 'widht' in --config.model.widht; valid there: "),
    'moved_key': (['--config.scan_chunk=2'],
                  'config key scan_chunk has moved: use --config.performance.scan_chunk'),
    'moved_nested_key': (['--config.model.conv_method=conv'],
                         'use --config.performance.conv_method'),
    'unknown_init': (['--config.model.init=xavier'], "unknown model.init 'xavier'"),
    'wrong_type': (['--config.batch_size=eight'], '--config.batch_size=eight'),
    'bad_image_size': (['--config.data.image_size=28'], 'image size 28'),
    'indivisible_batch': (['--config.batch_size=7'], 'does not divide'),
    # The recipe it was trained with is checked first (tests/test_recipe_change.py).
    'other_model_checkpoint': (['--config.model.latent_dim=6'],
                               'changes the recipe {trained} was trained with, recorded in '
                               '{trained}/config.json (saved -> given): model.latent_dim 8 -> 6;'),
}


# Each case starts train.py (2-3 s). The quick tier runs one of each kind (a data error, a
# config error, a flag error, the saved recipe); the rest share their paths: the full suite's.
QUICK_BAD_INPUT = ('missing_folder', 'unknown_activation', 'unknown_key', 'other_model_checkpoint')


@pytest.mark.parametrize('case', [case if case in QUICK_BAD_INPUT else
                                  pytest.param(case, marks=pytest.mark.slow)
                                  for case in BAD_INPUT])
def test_bad_input_is_one_line_and_leaves_the_workdir_alone(case, trained, blob_dir, tmp_path):
  flags, expected = BAD_INPUT[case]
  expected = expected.format(trained=trained)
  folders = {'tmp': tmp_path, 'empty': tmp_path / 'empty'}
  (tmp_path / 'empty').mkdir()
  for damage in ('magic', 'truncated', 'count'):
    if '{' + damage + '}' in flags[0]:
      folders[damage] = _idx_folder(tmp_path / damage, damage)
  flags = [f'--config.data.dir={blob_dir}'] + [flag.format(**folders) for flag in flags]
  before = snapshot(trained)
  result = run_script('train.py', trained, *flags, '--config.num_steps=6', devices=2)
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ') and expected in lines[0], result.stderr
  assert snapshot(trained) == before


# A newcomer's first mistakes at the command line: each is one line and exit 1,
# found before anything is compiled or written.
COMMAND_LINE_MISTAKES = {  # case: (run_script arguments, text the error line must contain)
    'top_level_key_typo': (dict(flags=['--config.num_step=5']),
                           "unknown config key 'num_step' in --config.num_step (did you mean "
                           "--config.num_steps?); valid there: batch_size, "),
    'value_is_no_group': (dict(flags=['--config.num_steps.x=5']),
                          "unknown config key 'x' in --config.num_steps.x: config.num_steps "
                          "is a value"),
    'missing_config_file': (dict(config='configs/conv_mnst.py'),
                            'conv_mnst.py not found (did you mean '),
    'config_file_raises': (dict(config='{tmp}/raises.py'),
                           "raises.py failed to load: ValueError: no such data set (line 5)"),
    'config_syntax_error': (dict(config='{tmp}/syntax.py'),
                            'syntax.py failed to load: SyntaxError: '),
    'unexpected_argument': (dict(flags=['extra']), 'unexpected arguments: extra'),
    'config_name_typo': (dict(config='conv_mnst'),
                         'config file conv_mnst not found (did you mean conv_mnist?); packaged '
                         'configs: ae_cifar10, ae_mnist, conv_cifar10, conv_fashion, '),
    'no_config_and_none_saved': (dict(config=None),
                                 'no --config given, and workdir {tmp}/run does not exist: give '
                                 '--config NAME_OR_FILE to start a run in it'),
}


@pytest.mark.parametrize('case', list(COMMAND_LINE_MISTAKES))
def test_command_line_mistake_is_one_line(case, tmp_path):
  arguments, expected = COMMAND_LINE_MISTAKES[case]
  (tmp_path / 'raises.py').write_text(
      'import ml_collections\n\n\ndef get_config():\n'
      "  raise ValueError('no such data set')\n")
  (tmp_path / 'syntax.py').write_text('def get_config(:\n  return None\n')
  config = arguments.get('config', 'configs/conv_mnist.py')
  config = config and config.format(tmp=tmp_path)
  expected = expected.format(tmp=tmp_path)
  result = run_script('train.py', tmp_path / 'run', *arguments.get('flags', []), config=config)
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 1, result.stderr[-2000:]
  assert len(lines) == 1 and lines[0].startswith('error: ') and expected in lines[0], result.stderr
  assert not (tmp_path / 'run').exists()


def _run_bare(script, *args):
  """`python script args` as typed, without run_script's config and workdir."""
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True,
                        text=True, env=env, cwd=REPO, timeout=300)


@pytest.mark.parametrize('script,flag', [('train.py', '--help'), ('train.py', '-h'),
                                         ('eval.py', '--helpshort')])
def test_help_shows_the_flags_a_user_needs(script, flag):
  result = _run_bare(script, flag)
  assert result.returncode == 0 and not result.stderr, result.stderr[-2000:]
  usage = cli.TRAIN_USAGE if script == 'train.py' else cli.EVAL_USAGE
  assert result.stdout.splitlines()[0] == usage.splitlines()[0]
  for text in ('--config NAME_OR_FILE', '--workdir DIR', '--coordinator_address', '--num_processes',
               '--process_id', '--[no]distributed', '--config.KEY=VALUE',
               '--config.num_steps=100', '--helpfull'):
    assert text in result.stdout, text
  assert '--only_check_args' not in result.stdout  # absl's own flags are for --helpfull
  assert ('--[no]allow_recipe_change' in result.stdout) == (script == 'train.py')


def test_helpfull_exits_0():
  result = _run_bare('train.py', '--helpfull')
  assert result.returncode == 0 and '--workdir' in result.stdout and '--verbosity' in result.stdout


def _in_import_of_jax(process):
  """True once the process has started loading jaxlib (its import takes a second or more)."""
  try:
    with open(f'/proc/{process.pid}/maps', encoding='utf-8') as maps:
      return 'jaxlib' in maps.read()
  except FileNotFoundError:  # the process is gone (its exit code tells why), or not Linux
    return True


INTERRUPTS = {  # case: (script, when to press Ctrl-C, the lines stderr may have)
    'train_importing_jax': ('train.py', 'importing', {
        'stopped: interrupted (Ctrl-C) before training started; nothing was saved'}),
    'train_starting': ('train.py', 'starting', {
        'stopped: interrupted (Ctrl-C) before training started; nothing was saved',
        'stopped: interrupted (Ctrl-C); no checkpoint was saved'}),
    'eval_importing_jax': ('eval.py', 'importing', {'stopped: interrupted (Ctrl-C)'}),
}


@pytest.mark.parametrize('case', list(INTERRUPTS))
def test_ctrl_c_before_the_training_loop_is_one_line(case, blob_dir, tmp_path):
  script, when, expected = INTERRUPTS[case]
  workdir = tmp_path / 'run'
  # A cold compilation cache of its own: with the session's warm one, start-up can
  # end before the Ctrl-C below.
  process = run_script(script, workdir, f'--config.data.dir={blob_dir}', '--config.num_steps=1000',
                       background=True, stderr_path=tmp_path / 'stderr.txt',
                       env={'JAX_COMPILATION_CACHE_DIR': str(tmp_path / 'xla_cache')})
  start = time.time()
  if when == 'importing':  # where a KeyboardInterrupt used to fail jax's import or crash
    while not _in_import_of_jax(process):
      assert time.time() - start < 60
      time.sleep(0.005)
  else:  # past the imports on most machines, and still loading data or initialising
    time.sleep(3)
    if (workdir / 'checkpoints').exists():  # created just before the training loop
      process.kill()
      process.wait()
      pytest.skip('start-up took less than 3 s: the loop handles this Ctrl-C')
  process.send_signal(signal.SIGINT)
  assert process.wait(timeout=120) == 130
  lines = (tmp_path / 'stderr.txt').read_text().strip().splitlines()
  assert len(lines) == 1 and lines[0] in expected, lines
  assert snapshot(workdir) == {}  # no file written, not even an empty one
