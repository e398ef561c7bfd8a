"""Bad input to the library and its commands is one clear error naming what was wrong and
what is expected (issue 30, Deliver 5): empty batches and splits, non-positive sizes,
non-key seeds, labels of another length, a train step's axis name that is not the
objective's; and the demo on a workdir, its titles readable at any width (Deliver 6)."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from gon_jax import demo as demo_lib
from gon_jax import encode, images, losses, saved_config, train, train_step
from gon_jax.config import SIZES, to_settings, validate
from gon_jax.core import origin, origin_latent
from gon_jax.errors import ConfigError, DataError
from gon_jax.models import make_objective
from gon_jax.parallel import make_placement
from gon_jax.state import TrainState, init_variables, make_optimizer

from testing_utils import tiny_config, write_idx_folder


def _linear_decoder(z):
  return jnp.tile(z.sum(axis=1)[:, None, None, None], (1, 4, 4, 1))


@pytest.mark.parametrize('jit', [False, True])
@pytest.mark.parametrize('z0', [jnp.zeros((0, 3)), jnp.zeros(3)], ids=['per_example', 'shared'])
def test_origin_latent_refuses_an_empty_batch(z0, jit):
  encode = lambda target, z0: origin_latent(_linear_decoder, target, z0)
  with pytest.raises(ValueError, match=re.escape(
      'target has no examples (shape [0, 4, 4, 1]): origin_latent needs a batch of at least '
      'one example')):
    (jax.jit(encode) if jit else encode)(jnp.zeros((0, 4, 4, 1)), z0)


def test_per_example_losses_of_an_empty_batch_are_empty():
  # Per-example maps: no examples, no losses (a reshape to [0, -1] raised ZeroDivisionError).
  empty = jnp.zeros((0, 4, 4, 1))
  assert losses.squared_error(empty, empty).shape == (0,)
  assert losses.binary_cross_entropy(empty + 0.5, empty).shape == (0,)
  assert losses.gaussian_nll(empty, empty, 0.1).shape == (0,)
  np.testing.assert_allclose(losses.gaussian_nll(jnp.zeros((2, 4, 4, 1)), jnp.zeros((2, 4, 4, 1)),
                                                 1.0), 16 * 0.5 * np.log(2 * np.pi), rtol=1e-6)


def _abstract_setup(config):
  """`(objective, tx, state)` as gon_jax.state.setup gives them, the state's arrays as
  jax.ShapeDtypeStruct: what tracing needs, without compiling the initialisation."""
  objective, tx = make_objective(to_settings(config)), make_optimizer(to_settings(config).optimizer)

  def initial_state():
    variables = init_variables(objective, jax.random.key(0))
    return TrainState(step=jnp.zeros((), jnp.int32), params=variables['params'],
                      batch_stats=variables.get('batch_stats', {}),
                      opt_state=tx.init(variables['params']),
                      latents=objective.latent_table.init(jax.random.key(1), 256),
                      skipped_steps=jnp.zeros((), jnp.int32))

  return objective, tx, jax.eval_shape(initial_state)


@pytest.fixture(scope='module')
def batchnorm_setup(blob_dir):
  """`(config, objective, tx, state)` of tiny_config with BatchNorm, made for jit."""
  config = tiny_config(blob_dir, 'batch')
  return config, *_abstract_setup(config)


def _batch(n, labels=None, index=None):
  return {'image': jnp.zeros((n, 16, 16, 1)),
          'label': jnp.zeros(n, jnp.int32) if labels is None else labels,
          'index': jnp.arange(n) if index is None else index}


def test_objective_refuses_an_empty_batch(batchnorm_setup):
  _, objective, _, state = batchnorm_setup
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  message = re.escape('images must be [batch, height, width, channels] with at least one image, '
                      'got shape [0, 16, 16, 1]')
  with pytest.raises(ValueError, match=message):
    jax.eval_shape(objective.encode, variables, jnp.zeros((0, 16, 16, 1)))
  loss = functools.partial(objective.loss, batch_stats=state.batch_stats, step=jnp.int32(0))
  with pytest.raises(ValueError, match=message):
    jax.eval_shape(lambda p, b, k: loss(p, None, b, k, mean_over=1), state.params, _batch(0),
                   jax.random.split(jax.random.key(0), 0))
  with pytest.raises(ValueError, match='mean_over must be a positive integer'):
    jax.eval_shape(lambda p, b, k: loss(p, None, b, k, mean_over=0), state.params, _batch(2),
                   jax.random.split(jax.random.key(0), 2))


@pytest.mark.parametrize('name', list(SIZES))
@pytest.mark.parametrize('value', [0, -2])
def test_config_refuses_a_size_that_is_not_positive(name, value):
  config = tiny_config('unused')
  config[name] = value
  with pytest.raises(ConfigError, match=rf'^{name}={value}: use a positive integer \('):
    validate(config)


def test_training_with_batch_size_0_is_refused_before_anything_is_written(blob_dir, tmp_path):
  config = tiny_config(blob_dir, 'layer')
  config.eval_batch_size = 0
  with pytest.raises(ConfigError, match=r'^eval_batch_size=0: use a positive integer'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


@pytest.fixture(scope='module')
def empty_test_split(tmp_path_factory):
  """An IDX folder whose training split holds 16 images and whose test split none."""
  images_ = np.zeros((16, 28, 28), np.uint8)
  images_[:, 4:12, 4:12] = 255
  return write_idx_folder(tmp_path_factory.mktemp('empty_test'),
                          {'train': images_, 'test': np.zeros((0, 28, 28), np.uint8)},
                          {'train': np.zeros(16, np.uint8), 'test': np.zeros(0, np.uint8)},
                          gz=True)


def test_training_on_an_empty_split_is_one_data_error(empty_test_split, tmp_path):
  config = tiny_config(empty_test_split, 'layer')
  with pytest.raises(DataError, match='^the test split of mnist in .* holds no images'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))


def test_encoding_an_empty_split_is_one_data_error(tiny_run, empty_test_split, tmp_path):
  # python -m gon_jax.encode prints a DataError as its one `error:` line (cli.run).
  workdir, _ = tiny_run
  config = saved_config.load(str(workdir))
  config.data.dir = str(empty_test_split)
  with pytest.raises(DataError, match='^the test split of mnist in .* holds no images'):
    encode.encode_to_file(config, str(workdir), 'test', str(tmp_path / 'out.npz'))
  assert not (tmp_path / 'out.npz').exists()


@pytest.mark.parametrize('step_axis, objective_axis, message', [
    ('batch', None, "train_step(axis_name='batch') with an objective made with axis_name=None: "
     "its BatchNorm would keep each device's batch statistics and drift from a one-device run; "
     "make the objective with make_objective(settings, axis_name='batch')"),
    (None, 'batch', "train_step(axis_name=None) with an objective made with axis_name='batch': "
     "its BatchNorm averages statistics over that axis, the step no gradients; under "
     "jax.pmap(..., axis_name='batch') give train_step axis_name='batch', under jit make the "
     "objective with make_objective(settings)"),
    ('devices', 'batch', "train_step(axis_name='devices') with an objective made with "
     "axis_name='batch': its BatchNorm averages statistics over another axis; make the "
     "objective with make_objective(settings, axis_name='devices')"),
])
def test_train_step_refuses_an_objective_of_another_axis(batchnorm_setup, step_axis,
                                                         objective_axis, message):
  config, _, tx, state = batchnorm_setup
  step = functools.partial(train_step.train_step, tx=tx, seed=0, axis_name=step_axis,
                           objective=make_objective(to_settings(config), objective_axis))
  axis_env = [] if step_axis is None else [(step_axis, 2)]  # traced as pmap over 2 devices
  with pytest.raises(ValueError, match=re.escape(message)):
    jax.make_jaxpr(step, axis_env=axis_env)(state, _batch(4))
  matching = functools.partial(step, objective=make_objective(to_settings(config), step_axis))
  jax.make_jaxpr(matching, axis_env=axis_env)(state, _batch(4))  # the same axis: traced


@pytest.mark.parametrize('norm', ['batch', 'layer'])
def test_pmap_training_binds_the_objective_to_its_axis(blob_dir, norm):
  # train.py's pmap step binds the objective made with its axis, and passes the check;
  # without BatchNorm (LayerNorm, SIRENs, which drop the axis) there are no statistics, and
  # an objective made without the axis traces to the same program.
  config = tiny_config(blob_dir, norm)
  config.parallel = 'pmap'
  _, tx, state = _abstract_setup(config)
  placement = make_placement('pmap')
  step = train_step.bound_train_step(to_settings(config), placement, tx)
  assert step.keywords['objective'] == make_objective(to_settings(config),
                                                      axis_name=placement.axis_name)
  assert step.keywords['axis_name'] == placement.axis_name
  bound = jax.make_jaxpr(step, axis_env=[(placement.axis_name, 2)])(state, _batch(4))
  if norm == 'layer':
    unbound = jax.make_jaxpr(functools.partial(step, objective=make_objective(to_settings(config))),
                             axis_env=[(placement.axis_name, 2)])(state, _batch(4))
    assert str(unbound) == str(bound)


@pytest.mark.parametrize('key, value, message', [
    ('label', jnp.zeros(3, jnp.int32), "batch['label'] has shape [3] but the batch has 4 images: "
     'give one row per image, [4, ...]'),
    ('index', jnp.arange(5), "batch['index'] has shape [5] but the batch has 4 images"),
    ('label', jnp.zeros(4), "a classifier's batch needs 'label', integers [4] (one class per "
     'image), got float32'),
])
def test_labels_of_another_length_or_type_are_refused(blob_dir, key, value, message):
  config = tiny_config(blob_dir, 'layer')
  config.classifier.num_classes = 5
  objective, tx, state = _abstract_setup(config)
  batch = {**_batch(4), key: value}
  with pytest.raises(ValueError, match=re.escape(message)):
    jax.eval_shape(functools.partial(train_step.train_step, objective=objective, tx=tx, seed=0),
                   state, batch)


@pytest.mark.parametrize('keys, got', [
    (jnp.arange(4), 'int32 [4], not keys'),
    (np.zeros(4), 'float64 [4], not keys'),
    (jnp.zeros((4, 2), jnp.int32), 'int32 [4, 2], not keys'),
    (jnp.zeros((4, 3), jnp.uint32), 'uint32 [4, 3], not keys'),
    (0, 'got 0'),
    (jax.random.key(0), 'got [] keys'),
])
def test_origin_refuses_seeds_that_are_not_one_key_per_example(keys, got):
  with pytest.raises(ValueError, match=re.escape(
      'origin with sigma 0.5 needs one PRNG key per example, [4] keys, e.g. '
      'jax.random.split(jax.random.key(seed), 4); ') + '.*' + re.escape(got)):
    origin(4, 2, 0.5, keys)


def test_origin_takes_typed_and_raw_keys_alike():
  raw = jax.random.split(jax.random.PRNGKey(3), 4)  # uint32 [4, 2]
  np.testing.assert_array_equal(origin(4, 2, 0.5, raw),
                                origin(4, 2, 0.5, jax.random.wrap_key_data(raw)))


@pytest.mark.parametrize('arguments, message', [
    ((0, 2), 'origin: batch_size must be a positive integer, got 0'),
    ((4, -1), 'origin: latent_dim must be a positive integer, got -1'),
    ((4.0, 2), 'origin: batch_size must be a positive integer, got 4.0'),
    ((4, 2, -0.1), 'origin: sigma must be 0 (the origin) or a positive standard deviation, '
     'got -0.1'),
])
def test_origin_refuses_sizes_that_are_not_positive_and_a_negative_sigma(arguments, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    origin(*arguments)


def test_the_demo_shows_a_workdirs_test_images_and_samples(tiny_run, tmp_path):
  workdir, config = tiny_run
  line = demo_lib.demo(str(workdir) + '/', 64, str(tmp_path), count=4)
  path = tmp_path / f'{workdir.name}.png'  # the folder's own name, a trailing / or not
  assert re.fullmatch(re.escape(f'{path}: 4 test images of mnist, their reconstructions (SSE ')
                      + r'\d+\.\d\d per image\) and samples', line), line
  grid = np.asarray(Image.open(path))
  # 2x2 tiles of 16x16 under the scale-1 title strip, as eval.py's grids.
  assert grid.shape[0] == images.TITLE_HEIGHT + 32
  with pytest.raises(ConfigError, match='^size 0: use a positive integer$'):
    demo_lib.demo(str(workdir), 0, str(tmp_path))


def test_the_demo_of_a_workdir_without_its_data_is_one_data_error(tiny_run, tmp_path,
                                                                    monkeypatch):
  workdir, _ = tiny_run

  def missing(*_):
    raise DataError('IDX folder /nowhere does not exist')

  monkeypatch.setattr(demo_lib.data, 'load_split', missing)
  with pytest.raises(DataError, match=re.escape(
      f'{workdir} holds no example images and the test split of the data set it was trained '
      'on cannot be read: IDX folder /nowhere does not exist')):
    demo_lib.demo(str(workdir), 64, str(tmp_path))
  assert not list(tmp_path.iterdir())


def test_titles_are_readable_on_a_wide_figure_and_leave_the_panels_alone():
  # The demo's figure: three panels of 4x4 images at 256x256, 3076 pixels wide. Shown 1000
  # pixels wide, its titles' line is 25 pixels high or more (the bitmap font's 11-pixel
  # line magnified 7 times); the panels' pixels are those of the untitled grid.
  rng = np.random.default_rng(0)
  panels = [rng.random((16, 256, 256, 1), np.float32) for _ in range(3)]
  titles = ['test images', 'reconstructions', 'rendered at 256x256']
  grid = images.grid_image(panels, 4, titles)
  plain = images.grid_image(panels, 4)
  width = grid.shape[1]
  assert width == plain.shape[1] == 3076  # titles narrower than their panels widen nothing
  strip = grid.shape[0] - plain.shape[0]
  np.testing.assert_array_equal(grid[strip:], plain)
  scale = strip // images.TITLE_HEIGHT
  assert strip == scale * images.TITLE_HEIGHT and scale == images.title_scale(width) == 7
  assert images.TITLE_LINE * scale / width * 1000 >= 25
  ink = np.flatnonzero((grid[:strip, :1024, 0] < 128).any(axis=1))  # 'test images', t to g
  assert (ink[-1] - ink[0] + 1) / width * 1000 >= 20


def test_a_narrow_figure_keeps_the_fonts_own_size():
  panels = [np.zeros((4, 32, 32, 1), np.float32)] * 2
  grid = images.grid_image(panels, 2, ['test images', 'reconstructions'])
  assert grid.shape[0] == images.TITLE_HEIGHT + 64
  assert images.title_scale(grid.shape[1]) == 1
