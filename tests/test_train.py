"""The train step under jit and pmap, checkpoints and exact resumption."""

import json
import os

import chex
import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from gon_jax.encode import reconstruct
from gon_jax.models import ConfigError, get_model
from gon_jax.parallel import AXIS, Placement, make_placement
from gon_jax.train import train_and_evaluate

from testing_utils import run_steps, tiny_config


@pytest.mark.parametrize('norm,z0_sigma', [('batch', 0.0), ('layer', 0.1)])
def test_pmap_and_jit_match_one_device(blob_dir, norm, z0_sigma):
  assert jax.device_count() == 2
  config = tiny_config(blob_dir, norm)
  config.gon.z0_sigma = z0_sigma  # noise drawn per global batch, sliced per device
  one_device = Placement('jit', Mesh(np.array(jax.devices()[:1]), (AXIS,)))
  reference, losses = run_steps(config, one_device)
  assert losses[-1] < losses[0]
  for mode in ('jit', 'pmap'):
    state, mode_losses = run_steps(config, make_placement(mode, config.batch_size))
    np.testing.assert_allclose(mode_losses, losses, rtol=1e-5)
    chex.assert_trees_all_close(state.params, reference.params, rtol=1e-4, atol=1e-6)
    chex.assert_trees_all_close(state.batch_stats, reference.batch_stats, rtol=1e-4, atol=1e-6)



@pytest.mark.parametrize('norm', ['batch', 'layer'])
def test_rematerialised_and_cpu_option_steps_match_the_plain_step(blob_dir, norm):
  # jax.checkpoint of the decoder and XLA:CPU's YNNPACK fusions change how the
  # step is computed, not what: the same losses and parameters.
  one_device = Placement('jit', Mesh(np.array(jax.devices()[:1]), (AXIS,)))
  config = tiny_config(blob_dir, norm)
  reference, losses = run_steps(config, one_device)
  config.remat = True
  config.cpu_ynn_fusions = True
  state, remat_losses = run_steps(config, one_device)
  np.testing.assert_allclose(remat_losses, losses, rtol=1e-5)
  chex.assert_trees_all_close(state.params, reference.params, rtol=1e-4, atol=1e-6)
  chex.assert_trees_all_close(state.batch_stats, reference.batch_stats, rtol=1e-4, atol=1e-6)
  model = get_model(config)
  images, z0 = jax.numpy.zeros((2, 16, 16, 1)), jax.numpy.zeros((2, 8))
  jaxpr = jax.make_jaxpr(lambda v: reconstruct(model, v, images, z0, config, False)[2])(
      {'params': reference.params, 'batch_stats': reference.batch_stats})
  assert 'checkpoint' in str(jaxpr) or 'remat' in str(jaxpr)  # the option took effect


def test_scanning_over_chunks_gives_the_batch_gradients(blob_dir):
  config = tiny_config(blob_dir, norm='layer')
  config.gon.z0_sigma = 0.1
  one_device = Placement('jit', Mesh(np.array(jax.devices()[:1]), (AXIS,)))
  reference, losses = run_steps(config, one_device)
  config.scan_chunk = 2
  for placement in (one_device, make_placement('jit', config.batch_size),
                    make_placement('pmap', config.batch_size)):
    state, chunked_losses = run_steps(config, placement)
    np.testing.assert_allclose(chunked_losses, losses, rtol=1e-5)
    chex.assert_trees_all_close(state.params, reference.params, rtol=1e-4, atol=1e-6)


def test_batch_that_does_not_divide_over_devices_is_refused():
  with pytest.raises(ConfigError, match='does not divide over 2 devices'):
    make_placement('jit', 7)
  with pytest.raises(ConfigError, match='valid: jit, pmap'):
    make_placement('shard_map', 8)


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


def test_checkpoint_of_another_model_is_refused(blob_dir, tmp_path):
  config = tiny_config(blob_dir)
  config.num_steps = 2
  train_and_evaluate(config, str(tmp_path))
  before = sorted(os.listdir(tmp_path / 'checkpoints'))
  config.model.features = 8
  with pytest.raises(ConfigError, match='of another model'):
    train_and_evaluate(config, str(tmp_path))
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == before
