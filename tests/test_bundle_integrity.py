"""A bundle records its files' sha256 (sha256.json) and `load` checks them before reading
anything: a damaged, truncated or missing file is one DamagedFileError naming it, never a
model that loads and gives wrong numbers."""

import json
import shutil

import numpy as np
import pytest

from gon_jax.config import to_settings
from gon_jax import bundles, data, file_hashes
from gon_jax.errors import DamagedFileError
from gon_jax.export import export
from gon_jax.model import Model, load, save_bundle
from gon_jax.state import setup

from testing_utils import tiny_config

FLIPS_PER_FILE = 8


@pytest.fixture(scope='module')
def bundle(blob_dir, tmp_path_factory):
  """A bundle of every kind of file: config, variables with BatchNorm statistics, a Gaussian,
  examples, and the record."""
  config = tiny_config(blob_dir, norm='batch')
  _, _, state = setup(to_settings(config))
  model = Model(config, {'params': state.params, 'batch_stats': state.batch_stats},
                gaussian=(np.zeros(8), np.eye(8)))
  folder = tmp_path_factory.mktemp('bundle') / 'tiny'
  images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 1), np.uint8)
  save_bundle(model, folder, examples=images)
  return folder


def _copy(bundle, tmp_path):
  copy = tmp_path / 'copy'
  shutil.copytree(bundle, copy)
  return copy


def test_a_bundle_holds_its_record_and_loads(bundle):
  record = json.loads((bundle / file_hashes.RECORD).read_text())
  assert set(record) == {'config.json', 'variables.msgpack', 'gaussian.npz', 'examples.npz'}
  for name, entry in record.items():
    assert entry == {'bytes': (bundle / name).stat().st_size,
                     'sha256': file_hashes.sha256(bundle / name)}, name
  assert load(bundle).examples.shape == (3, 16, 16, 1)


def _cases(bundle):
  """`(file, what is done to it, how)`: bytes flipped at offsets spread over each file, each
  file truncated to half and to nothing, and each file removed."""
  for path in sorted(bundle.iterdir()):
    size = path.stat().st_size
    for offset in sorted({int(k * (size - 1) / (FLIPS_PER_FILE - 1))
                          for k in range(FLIPS_PER_FILE)}):
      yield path.name, f'byte {offset} of {size} flipped', ('flip', offset)
    yield path.name, 'truncated to half', ('truncate', size // 2)
    yield path.name, 'truncated to 0 bytes', ('truncate', 0)
    yield path.name, 'removed', ('remove', None)


def test_every_damage_to_every_file_is_an_error(bundle, tmp_path):
  cases = list(_cases(bundle))
  assert len(cases) == 5 * (FLIPS_PER_FILE + 3)
  for name, what, (action, where) in cases:
    copy = _copy(bundle, tmp_path)
    path = copy / name
    if action == 'flip':
      data = bytearray(path.read_bytes())
      data[where] ^= 0xFF
      path.write_bytes(bytes(data))
    elif action == 'truncate':
      path.write_bytes(path.read_bytes()[:where])
    else:
      path.unlink()
    with pytest.raises(DamagedFileError) as error:
      load(copy)
    message = str(error.value)
    assert '\n' not in message, (name, what)
    # The message names the damaged file (or the record, when it is the record that is).
    assert name in message or file_hashes.RECORD in message, (name, what, message)
    shutil.rmtree(copy)


def test_a_bundle_without_a_record_is_refused_with_the_ways_on(bundle, tmp_path):
  copy = _copy(bundle, tmp_path)
  (copy / file_hashes.RECORD).unlink()
  with pytest.raises(DamagedFileError, match=r'bundle .*copy has no sha256.json: it was not '
                                             r'completely written, or written before bundles '
                                             r'recorded their files; write it again .*'
                                             r'write_record'):
    load(copy)
  file_hashes.write_record(copy)  # the way on for a bundle one trusts
  assert load(copy).gaussian is not None


def test_a_record_written_over_a_damaged_file_still_gives_no_parser_error(bundle, tmp_path):
  for name in ('variables.msgpack', 'gaussian.npz', 'examples.npz'):
    copy = _copy(bundle, tmp_path)
    (copy / name).write_bytes((copy / name).read_bytes()[:100])
    file_hashes.write_record(copy)
    with pytest.raises(DamagedFileError, match=f'{name} is damaged: it does not parse'):
      load(copy)
    shutil.rmtree(copy)


def test_a_bundle_written_again_gets_a_new_record(bundle, tmp_path, blob_dir):
  copy = _copy(bundle, tmp_path)
  config = tiny_config(blob_dir, norm='batch')
  _, _, state = setup(to_settings(config))
  files = save_bundle(Model(config, {'params': state.params, 'batch_stats': state.batch_stats}),
                      copy)
  assert set(files) == {'config.json', 'variables.msgpack'}
  assert json.loads((copy / file_hashes.RECORD).read_text()) == files
  assert load(copy).gaussian is None and load(copy).examples is None


@pytest.mark.parametrize('name', bundles.pretrained_names())
def test_each_pretrained_bundle_has_the_record_of_its_manifest_files(name):
  folder = bundles.PRETRAINED_DIR / name
  record = json.loads((folder / file_hashes.RECORD).read_text())
  assert record == bundles.manifest()[name]['files']
  file_hashes.check_record(folder, name)


def test_export_writes_a_recorded_bundle_and_its_manifest_entry(tiny_run, tmp_path):
  workdir, config = tiny_run
  (workdir / 'eval').mkdir(exist_ok=True)  # eval.py's metrics.json, which the entry records
  (workdir / 'eval' / 'metrics.json').write_text(json.dumps(
      {'num_images': 64, 'psnr': 7.5, 'sse': 45.0, 'step': 2}))
  entry = export(str(workdir), 'tiny', 'python train.py ...', out=str(tmp_path), subset=8,
                 num_examples=4)
  record = json.loads((tmp_path / 'tiny' / file_hashes.RECORD).read_text())
  assert entry['files'] == record and set(record) == {
      'config.json', 'variables.msgpack', 'gaussian.npz', 'examples.npz'}
  assert json.loads((tmp_path / 'manifest.json').read_text())['tiny'] == entry
  model = load(tmp_path / 'tiny')
  assert entry['parameters'] == model.num_parameters and model.examples.shape[0] == 4
  train_images, _, test_images, _ = data.load_data(
      config.data, config.model.channels, config.classifier.num_classes)
  assert entry['test_subset']['metrics'] == model.evaluate(test_images[:8])
  # 2 steps of an epoch of len(train_images) // batch_size steps
  assert entry['epochs'] == round(2 / (len(train_images) // config.batch_size), 2) > 0
