"""The train step under jit and pmap, checkpoints and exact resumption, and what
a run shows: compilation, progress, its summary, TensorBoard."""

import contextlib
import io
import json
import os
import pathlib
import re
import struct

import chex
import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from tensorboardX.proto import event_pb2

from gon_jax import train
from gon_jax.config import to_settings, validate
from gon_jax.errors import ConfigError
from gon_jax.models import make_objective
from gon_jax.parallel import AXIS, Placement, make_placement
from gon_jax.train import train_and_evaluate

from testing_utils import TINY_FLAGS, assert_runs_match, run_script, run_steps, tiny_config

from gon_jax.configs import conv_mnist


@pytest.mark.slow
@pytest.mark.parametrize('norm,z0_sigma', [('batch', 0.0), ('layer', 0.1)])
def test_pmap_and_jit_match_one_device(blob_dir, norm, z0_sigma):
  assert jax.device_count() == 2
  config = tiny_config(blob_dir, norm)
  config.gon.z0_sigma = z0_sigma  # noise drawn per global batch, sliced per device
  one_device = Placement('jit', Mesh(np.array(jax.devices()[:1]), (AXIS,)))
  reference, losses = run_steps(config, one_device)
  assert losses[-1] < losses[0]
  for mode in ('jit', 'pmap'):
    state, mode_losses = run_steps(config, make_placement(mode))
    np.testing.assert_allclose(mode_losses, losses, rtol=1e-5)
    assert_runs_match((state.params, state.batch_stats), (reference.params, reference.batch_stats))



@pytest.mark.slow
@pytest.mark.parametrize('norm', ['batch', 'layer'])
def test_rematerialised_and_cpu_option_steps_match_the_plain_step(blob_dir, norm):
  # jax.checkpoint of the decoder and XLA:CPU's YNNPACK fusions change how the
  # step is computed, not what: the same losses and parameters.
  one_device = Placement('jit', Mesh(np.array(jax.devices()[:1]), (AXIS,)))
  config = tiny_config(blob_dir, norm)
  reference, losses = run_steps(config, one_device)
  config.performance.remat = True
  config.performance.cpu_ynn_fusions = True
  state, remat_losses = run_steps(config, one_device)
  np.testing.assert_allclose(remat_losses, losses, rtol=1e-5)
  assert_runs_match((state.params, state.batch_stats), (reference.params, reference.batch_stats))
  objective = make_objective(to_settings(config))
  images, z0 = jax.numpy.zeros((2, 16, 16, 1)), jax.numpy.zeros((2, 8))
  jaxpr = jax.make_jaxpr(lambda v: objective.reconstruct(v, images, z0).losses)(
      {'params': reference.params, 'batch_stats': reference.batch_stats})
  assert 'checkpoint' in str(jaxpr) or 'remat' in str(jaxpr)  # the option took effect


@pytest.mark.slow
def test_scanning_over_chunks_gives_the_batch_gradients(blob_dir):
  config = tiny_config(blob_dir, norm='layer')
  config.gon.z0_sigma = 0.1
  one_device = Placement('jit', Mesh(np.array(jax.devices()[:1]), (AXIS,)))
  reference, losses = run_steps(config, one_device)
  config.performance.scan_chunk = 2
  for placement in (one_device, make_placement('jit'), make_placement('pmap')):
    state, chunked_losses = run_steps(config, placement)
    np.testing.assert_allclose(chunked_losses, losses, rtol=1e-5)
    assert_runs_match(state.params, reference.params)


def test_batch_that_does_not_divide_over_devices_is_refused():
  config = conv_mnist.get_config()
  config.batch_size = 7
  with pytest.raises(ConfigError, match='does not divide over 2 devices'):
    validate(config)
  config.batch_size, config.parallel = 8, 'shard_map'
  with pytest.raises(ConfigError, match='valid: jit, pmap'):
    validate(config)


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(blob_dir, tmp_path):
  config = tiny_config(blob_dir)
  straight = train_and_evaluate(config, str(tmp_path / 'straight'))
  config.num_steps = 2
  train_and_evaluate(config, str(tmp_path / 'resumed'))
  config.num_steps = 4
  resumed = train_and_evaluate(config, str(tmp_path / 'resumed'))
  assert int(resumed.step) == int(straight.step) == 4
  chex.assert_trees_all_equal(resumed, straight)

  workdir = tmp_path / 'straight'
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2', '4']
  records = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert [r['step'] for r in records if 'train/loss' in r] == [2, 4]
  assert np.isfinite([r['test/sse'] for r in records if 'test/sse' in r]).all()
  assert any(name.startswith('events.out.tfevents') for name in os.listdir(workdir / 'tensorboard'))
  assert (workdir / 'images' / 'reconstructions_0000004.png').is_file()


@pytest.mark.slow
@pytest.mark.parametrize('parallel', ['jit', 'pmap'])
def test_steps_per_call_takes_the_same_steps_and_resumes_exactly(blob_dir, tmp_path, parallel):
  # K steps scanned in one call, their batches gathered on the device, are the K single
  # steps: the same batches in the same (seed, step) order, logs, evaluations and checkpoints.
  config = tiny_config(blob_dir, norm='layer')
  config.parallel = parallel
  config.gon.z0_sigma = 0.1  # random keys per (seed, step) inside the scan too
  single = train_and_evaluate(config, str(tmp_path / 'single'))
  config.performance.steps_per_call = 2
  scanned = train_and_evaluate(config, str(tmp_path / 'scanned'))
  assert int(scanned.step) == 4
  # Bit for bit under jit on this machine; the tolerance allows XLA to fuse a step inside a
  # scan differently elsewhere.
  assert_runs_match(scanned, single)
  records = {name: [json.loads(line) for line in
                    (tmp_path / name / 'metrics.jsonl').read_text().splitlines()]
             for name in ('single', 'scanned')}
  for key in ('train/loss', 'test/sse'):
    single_values, scanned_values = ([(r['step'], r[key]) for r in records[name] if key in r]
                                     for name in ('single', 'scanned'))
    assert [s for s, _ in scanned_values] == [s for s, _ in single_values] == [2, 4][-len(single_values):]
    np.testing.assert_allclose([v for _, v in scanned_values], [v for _, v in single_values],
                               rtol=1e-5)
  assert sorted(os.listdir(tmp_path / 'scanned' / 'checkpoints')) == ['2', '4']

  config.num_steps = 2  # stopped at step 2, then resumed to 4 with the same K: bit for bit
  train_and_evaluate(config, str(tmp_path / 'resumed'))
  config.num_steps = 4
  chex.assert_trees_all_equal(train_and_evaluate(config, str(tmp_path / 'resumed')), scanned)


def test_steps_per_call_must_divide_the_schedule(blob_dir, tmp_path):
  config = tiny_config(blob_dir)
  config.performance.steps_per_call = 3
  with pytest.raises(ConfigError, match='num_steps=4 is not a multiple of performance.steps_per_call=3'):
    validate(config)
  config.performance.steps_per_call = 0
  with pytest.raises(ConfigError, match='use 1 or more'):
    validate(config)
  config.performance.steps_per_call, config.num_steps = 1, 3  # a checkpoint at step 3 ...
  config.checkpoint_every = config.log_every = config.eval_every = 1
  train_and_evaluate(config, str(tmp_path / 'run'))
  config.performance.steps_per_call, config.num_steps = 2, 4  # ... is no multiple of K=2
  config.checkpoint_every = config.log_every = config.eval_every = 2
  with pytest.raises(ConfigError, match='checkpoint of step 3 is not at a multiple'):
    train_and_evaluate(config, str(tmp_path / 'run'))


def read_summaries(folder) -> list[tuple[int, str, str]]:
  """`(step, tag, kind)` of every summary value in the TensorBoard event files in `folder`.

  An event file is a TFRecord file of Event protos: per record a little-endian
  uint64 length, its CRC (4 bytes), the data, and the data's CRC (4 bytes).
  kind is 'image', 'simple_value' (a scalar), ...
  """
  values = []
  for path in sorted(pathlib.Path(folder).glob('events.out.tfevents.*')):
    raw, position = path.read_bytes(), 0
    while position < len(raw):
      (length,) = struct.unpack('<Q', raw[position:position + 8])
      event = event_pb2.Event.FromString(raw[position + 12:position + 12 + length])
      position += 12 + length + 4
      values += [(event.step, value.tag, value.WhichOneof('value'))
                 for value in event.summary.value]
  return values


@pytest.fixture(scope='module')
def run(blob_dir, tmp_path_factory):
  """A 4-step run, as train.py makes it: its workdir, config, stderr, and its progress
  bar's elapsed seconds at its first update."""
  workdir = tmp_path_factory.mktemp('run')
  config = tiny_config(blob_dir)
  first_update = []
  make_bar = train._progress_bar  # pylint: disable=protected-access

  def recording_bar(*args):
    bar = make_bar(*args)
    update = bar.update

    def first(n=1):
      if not first_update:
        first_update.append(bar.format_dict['elapsed'])
      return update(n)

    bar.update = first
    return bar

  stderr = io.StringIO()
  with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(stderr):
    patch.setattr(train, '_progress_bar', recording_bar)
    train_and_evaluate(config, str(workdir))
  return workdir, config, stderr.getvalue(), first_update[0]


def test_compilation_is_announced_and_not_in_the_progress_rate(run):
  _, _, stderr, first_update_elapsed = run
  assert stderr.startswith('compiling the train step (XLA; '), stderr[:300]
  seconds = re.search(r'\ncompiled the train step and ran its first step in ([\d.]+) s\n',
                      stderr)
  assert seconds, stderr[:300]
  assert stderr.index('compiled the train step') < stderr.index('step/s')  # before the bar
  # The bar's clock starts after compiling: its first update came far sooner.
  assert first_update_elapsed < float(seconds.group(1)), (first_update_elapsed, seconds.group(1))


def test_run_ends_with_one_summary_line(run):
  workdir, _, stderr, _ = run
  last = re.split('[\r\n]', stderr.strip())[-1]
  assert re.fullmatch(
      r'trained 4 steps in [\d.]+ s \([\d.]+ steps/s after [\d.]+ s compiling; [\d.]+ s '
      r'evaluating besides\); '
      r'test SSE [\d.]+, PSNR [\d.]+ dB on 64 images; checkpoint (.*)', last), last
  assert last.endswith(f'checkpoint {workdir}/checkpoints/4') and (workdir / 'checkpoints' / '4').is_dir()


def test_tensorboard_has_reconstruction_images_and_no_counts(run):
  workdir, _, _, _ = run
  summaries = read_summaries(workdir / 'tensorboard')
  assert (4, 'test/reconstructions', 'image') in summaries
  assert (4, 'test/sse', 'simple_value') in summaries
  assert not [tag for _, tag, _ in summaries if 'num_images' in tag]


@pytest.mark.slow
def test_checkpoint_of_another_model_is_refused(run):
  workdir, config, _, _ = run
  before = sorted(os.listdir(workdir / 'checkpoints'))
  config = config.copy_and_resolve_references()
  config.model.latent_dim = 6
  config.num_steps = 6
  with pytest.raises(ConfigError, match='model.latent_dim 8 -> 6'):  # the recipe changed
    train_and_evaluate(config, str(workdir))
  with pytest.raises(ConfigError, match='of another model') as refused:  # allowed, but ...
    train_and_evaluate(config, str(workdir), allow_recipe_change=True)
  message = str(refused.value)
  # The first parameter that differs, with both shapes; no numpy error leaking through.
  assert (f'{workdir}/checkpoints holds a checkpoint (step 4) of another model: '
          'params/UpConv_0/kernel is [4, 4, 8, 8] there, [4, 4, 6, 8] here') in message, message
  assert 'truth value' not in message and '\n' not in message
  assert message.endswith(f'use another workdir, or the config it was trained with, recorded '
                          f"in {workdir}/config.json (model 'conv') (train.py and eval.py read "
                          'it when --config is left out)')
  assert sorted(os.listdir(workdir / 'checkpoints')) == before
  # The refused config did not replace the one the workdir was trained with, nor was it
  # recorded as a change.
  assert json.loads((workdir / 'config.json').read_text())['model']['latent_dim'] == 8
  assert not (workdir / 'config_history.jsonl').exists()


def test_labels_beyond_the_classifier_classes_are_refused_first(blob_dir, tmp_path):
  # The blob set's labels are 0..4: with 3 classes the first step's loss would be NaN.
  workdir = tmp_path / 'run'
  result = run_script('train.py', workdir, f'--config.data.dir={blob_dir}',
                      '--config.classifier.num_classes=3',
                      config='configs/gon_classifier_mnist.py', tiny_flags=TINY_FLAGS)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      'error: labels of mnist go up to 4 but classifier.num_classes is 3; '
      'set --config.classifier.num_classes=5'], result.stderr
  assert not workdir.exists()
