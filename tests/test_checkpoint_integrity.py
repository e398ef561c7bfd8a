"""Saved checkpoints are verified: each step's sha256.json, damaged bytes and truncated files
refused with the step and the file named, training resuming from an intact step, old steps
without a record still read, and no NaN in metrics files."""

import json
import math
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

import testing_utils
from gon_jax.config import to_settings
from gon_jax import checkpoints, file_hashes
from gon_jax.errors import DamagedFileError, DataError
from gon_jax.evaluate import evaluate_checkpoint, write_json
from gon_jax.metric_writer import MetricWriter
from gon_jax.state import setup
from gon_jax.train import train_and_evaluate

FLIPS_PER_FILE = 8


@pytest.fixture(scope='module')
def run(blob_dir, tmp_path_factory):
  """`(workdir, config)`: tiny_config trained 4 steps, with the checkpoints of steps 2 and 4."""
  workdir = tmp_path_factory.mktemp('run')
  config = testing_utils.tiny_config(blob_dir, norm='layer')
  train_and_evaluate(config, str(workdir))
  return workdir, config


def _copy(run_, tmp_path):
  shutil.copytree(run_[0], tmp_path / 'run')
  return tmp_path / 'run'


_TEMPLATES = {}


def _template(config):
  """The initial train state of `config`, made once per config (setup compiles)."""
  key = config.to_json()
  if key not in _TEMPLATES:
    _TEMPLATES[key] = setup(to_settings(config), num_train_examples=256)[2]
  return _TEMPLATES[key]


def _restore(workdir, config, training=False):
  """restore_latest as eval.py and gon_jax.load call it, or as training does."""
  with checkpoints.manager(str(workdir), read_only=not training) as manager:
    return checkpoints.restore_latest(manager, _template(config), missing_ok=training)


def _stored_shapes(workdir, step):
  with checkpoints.manager(str(workdir), read_only=True) as manager:
    return checkpoints.stored_shapes(manager, step)


def _strict_json(line: str):
  """json.loads refusing NaN and Infinity, as strict readers (JavaScript, jq) do."""
  return json.loads(line, parse_constant=lambda name: pytest.fail(f'{name} in {line}'))


def test_each_step_has_a_record_of_its_files(run):
  workdir, _ = run
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2', '4']
  for step in ('2', '4'):
    folder = workdir / 'checkpoints' / step
    record = json.loads((folder / file_hashes.RECORD).read_text())
    files = sorted(path.relative_to(folder).as_posix() for path in folder.rglob('*')
                   if path.is_file() and path.name != file_hashes.RECORD)
    assert sorted(record) == files and 'default/_METADATA' in files
    assert all(record[name]['sha256'] == file_hashes.sha256(folder / name) for name in files)


def test_steps_orbax_deletes_take_their_records_with_them(tmp_path):
  with checkpoints.manager(str(tmp_path)) as manager:  # keeps the last three
    for step in range(1, 6):
      checkpoints.save(manager, step, {'w': np.full(3, step, np.float32)})
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['3', '4', '5']
  for step in (3, 4, 5):
    file_hashes.check_record(tmp_path / 'checkpoints' / str(step), f'step {step}')


def _cases(folder):
  """`(file, description, damage)` for every file of a step folder, its record and orbax's
  metadata included: a byte flipped at FLIPS_PER_FILE offsets spread over the file, and the
  file truncated to half its size and to nothing."""
  for path in sorted(p for p in folder.rglob('*') if p.is_file()):
    size = path.stat().st_size
    for offset in sorted({i * size // FLIPS_PER_FILE for i in range(FLIPS_PER_FILE)}):
      def flip(data, offset=offset):
        return data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1:]
      yield path, f'byte {offset} of {size} flipped', flip
    for length in (size // 2, 0):
      yield path, f'truncated to {length} of {size} bytes', lambda data, n=length: data[:n]


def test_every_flipped_byte_and_truncation_is_refused_naming_step_and_file(run, tmp_path):
  workdir = _copy(run, tmp_path)
  config = run[1]
  folder = workdir / 'checkpoints' / '4'
  damaged = set()
  for path, description, damage in _cases(folder):
    original = path.read_bytes()
    path.write_bytes(damage(original))
    try:
      for read in (lambda: _restore(workdir, config),  # eval.py's and gon_jax.load's restore
                   lambda: _stored_shapes(workdir, 4)):  # gon_jax.load's first read
        with pytest.raises(DamagedFileError) as refused:
          read()
        message = str(refused.value)
        assert 'step 4 is damaged' in message and str(path) in message, (description, message)
        assert '\n' not in message
        assert message.endswith(f'to use the older checkpoint of step 2, move {folder} away')
    finally:
      path.write_bytes(original)
    damaged.add(path.relative_to(folder).as_posix())
  assert {file_hashes.RECORD, '_CHECKPOINT_METADATA', 'default/_METADATA'} < damaged
  assert len(damaged) >= 10, damaged  # orbax's files: metadata, manifests, array data
  assert _restore(workdir, config)[1] == 4  # put back: intact again


def test_training_resumes_from_the_newest_intact_step(run, tmp_path, capsys):
  workdir = _copy(run, tmp_path)
  config = run[1].copy_and_resolve_references()
  damaged = next((workdir / 'checkpoints' / '4' / 'default').rglob('ocdbt.process_0/d/*'))
  written = damaged.stat().st_size
  damaged.write_bytes(damaged.read_bytes()[:-1])
  config.num_steps = 6
  state = train_and_evaluate(config, str(workdir))
  assert int(state.step) == 6
  lines = capsys.readouterr().err.splitlines()
  said = [line for line in lines if 'damaged' in line]
  assert said == [f'the checkpoint of step 4 is damaged: {damaged} has {written - 1:,} bytes, '
                  f'{written:,} when it was written (truncated?); resuming from step 2, the '
                  'newest intact '
                  f'checkpoint; moved aside to 4.damaged in {workdir / "checkpoints"}'], lines
  # The damaged step kept aside; steps 4 and 6 saved again and recorded.
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2', '4', '4.damaged', '6']
  assert _restore(workdir, run[1])[1] == 6


def test_an_empty_newest_step_is_said_to_be_empty(run, tmp_path, capsys):
  workdir = _copy(run, tmp_path)
  config = run[1]
  empty = workdir / 'checkpoints' / '6'
  empty.mkdir()
  with pytest.raises(DamagedFileError) as refused:
    _restore(workdir, config)
  assert str(refused.value) == (
      f'the checkpoint of step 6 is empty: {empty} holds no files (a write that never '
      f'finished, or its files were removed); to use the older checkpoint of step 4, move '
      f'{empty} away')
  # Training passes over it (and, for the next save of step 6, moves it aside).
  state, step = _restore(workdir, config, training=True)
  assert step == 4 and int(state.step) == 4
  assert 'step 6 is empty' in capsys.readouterr().err
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2', '4', '6.damaged']


def test_every_step_damaged_is_an_error_for_training_too(run, tmp_path):
  workdir = _copy(run, tmp_path)
  for step in ('2', '4'):
    (workdir / 'checkpoints' / step / 'default' / '_METADATA').write_text('{')
  with pytest.raises(DamagedFileError, match='step 4 is damaged: .*_METADATA has 1 bytes.*; '
                     'no older checkpoint is intact either: move .* away to train from step 0'):
    _restore(workdir, run[1], training=True)


def test_steps_without_a_record_still_load_and_damage_is_said(run, tmp_path):
  # Steps written before records were kept (old workdirs), or whose writer was killed between
  # orbax's commit and the record: read as before, with the shapes checked.
  workdir = _copy(run, tmp_path)
  config = run[1]
  for step in ('2', '4'):
    (workdir / 'checkpoints' / step / file_hashes.RECORD).unlink()
  state, step = _restore(workdir, config)
  assert step == 4
  expected, _ = _restore(run[0], config)
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(expected), strict=True):
    np.testing.assert_array_equal(a, b)
  # A truncated _METADATA is named, not a bare JSONDecodeError.
  metadata = workdir / 'checkpoints' / '4' / 'default' / '_METADATA'
  original = metadata.read_bytes()
  metadata.write_bytes(original[:100])
  with pytest.raises(DamagedFileError, match=f'step 4 is damaged: {metadata} cannot be read '
                     r'\(JSONDecodeError: .*\); to use the older checkpoint of step 2'):
    _restore(workdir, config)
  metadata.write_bytes(original)
  # A truncated array file: damaged (orbax's reason), not "a checkpoint of another model".
  data = max((workdir / 'checkpoints' / '4' / 'default').rglob('ocdbt.process_0/d/*'),
             key=lambda path: path.stat().st_size)
  data.write_bytes(data.read_bytes()[:100])
  with pytest.raises(DamagedFileError, match='step 4 is damaged: reading .* failed .*; it has '
                     'no sha256.json'):
    _restore(workdir, config)
  assert _restore(workdir, config, training=True)[1] == 2  # which training passes over


def test_eval_refuses_non_finite_metrics_and_writes_nothing(run, tmp_path):
  workdir = _copy(run, tmp_path)
  config = run[1]
  state, _ = _restore(workdir, config)
  broken = state.replace(params=jax.tree.map(lambda p: np.full_like(p, np.nan), state.params))
  with checkpoints.manager(str(workdir)) as manager:  # saved and recorded: passes its check
    checkpoints.save(manager, 6, broken)
  with pytest.raises(DataError) as refused:
    evaluate_checkpoint(config, str(workdir))
  assert str(refused.value) == (
      f'non-finite metrics (sse=nan, psnr=nan) from the checkpoint of step 6 in '
      f'{workdir}/checkpoints: its parameters give non-finite outputs (damaged, or training '
      f'diverged); {workdir}/eval/metrics.json not written')
  assert not (workdir / 'eval').exists()


def test_metrics_files_hold_no_nan(tmp_path):
  with pytest.raises(DataError, match=r'non-finite metrics \(gon/psnr=inf\)'):
    write_json(str(tmp_path / 'out' / 'metrics.json'), {'gon': {'psnr': math.inf}, 'step': 1})
  assert not (tmp_path / 'out').exists()
  # Training's metrics of a step skipped under nonfinite='skip': null, with the step's flag.
  writer = MetricWriter(str(tmp_path))
  writer.write(3, {'train/loss': float('nan'), 'train/grad_norm': np.float32('inf'),
                   'train/nonfinite': 1.0})
  writer.write(4, {'train/loss': 2.5, 'train/nonfinite': 0.0})
  writer.close()
  lines = (tmp_path / 'metrics.jsonl').read_text().splitlines()
  assert [_strict_json(line) for line in lines] == [
      {'step': 3, 'train/loss': None, 'train/grad_norm': None, 'train/nonfinite': 1.0},
      {'step': 4, 'train/loss': 2.5, 'train/nonfinite': 0.0}]


@pytest.mark.slow
def test_eval_py_on_a_damaged_workdir_says_one_line(run, tmp_path):
  workdir = _copy(run, tmp_path)
  damaged = workdir / 'checkpoints' / '4' / 'default' / '_METADATA'
  damaged.write_bytes(damaged.read_bytes()[:-10])
  result = testing_utils.run_script('eval.py', workdir, config=None, tiny_flags=())  # its own
  assert result.returncode == 1
  assert result.stderr.splitlines() == [
      f'error: the checkpoint of step 4 is damaged: {damaged} has {damaged.stat().st_size:,} '
      f'bytes, {damaged.stat().st_size + 10:,} when it was written (truncated?); to use the '
      f'older checkpoint of step 2, move {damaged.parent.parent} away'], result.stderr
  assert not (workdir / 'eval').exists()


@pytest.mark.slow
def test_loading_a_model_imports_neither_tensorboardx_nor_torch():
  code = ('import sys, gon_jax.model, gon_jax.evaluate; '
          'print(sorted({m.split(".")[0] for m in sys.modules} & {"tensorboardX", "torch"}))')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          check=True)
  assert result.stdout.strip() == '[]', result.stdout
