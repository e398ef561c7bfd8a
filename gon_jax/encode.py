"""The latents of a whole split in one .npz: `python -m gon_jax.encode` (docs/latents.md).

  python -m gon_jax.encode --workdir runs/conv_mnist --split test --out latents.npz
  python -m gon_jax.encode --workdir conv_mnist --split train --out train.npz   # pretrained

`--workdir` is a workdir of train.py, a bundle folder or a pretrained model's name (as
gon_jax.load takes them). The split is the one of the config the model was trained with,
read as train.py reads it; `--config.data.KEY=VALUE` says where else to read it (e.g.
`--config.data.dir=FOLDER`). The file holds `latents` float32 [n, latent_dim], encoded from
the origin in batches of `eval_batch_size` as eval.py encodes them, and `labels` int32 [n]
unless the split has none (every label 0: CelebA, a folder without class folders).
"""

import os
import sys
import tempfile

import ml_collections
import numpy as np

from gon_jax import bundles, data
from gon_jax import model as model_lib
from gon_jax.config import to_settings
from gon_jax.errors import ConfigError, DataError
from gon_jax.settings import DataSettings

ENCODE_USAGE = """Encodes a split of a trained model's data set into one .npz file.

  python -m gon_jax.encode --workdir runs/conv_mnist --split test --out latents.npz
  python -m gon_jax.encode --workdir conv_mnist --split train --out train.npz

--workdir: a workdir of train.py, or a pretrained model's name (conv_mnist, ...).
--split: train or test (default test).
--out: the .npz to write: latents float32 [n, latent_dim], labels int32 [n].
--config.data.KEY=VALUE: where the split is read from, e.g. --config.data.dir=FOLDER.
Prints one line saying what it wrote."""


def encode_split(model: model_lib.Model, split: str,
                 data_config: DataSettings | None = None,
                 progress: str | None = None) -> dict[str, np.ndarray]:
  """The latents of a whole split of the model's data set, and its labels.

  Args:
    model: a trained model (gon_jax.load).
    split: 'train' or 'test'.
    data_config: where the images come from (a config's data settings); default the model's.
      Its image_size must be the model's.
    progress: a progress bar's description for the encoding (Model.encode's).

  Returns:
    `{'latents': float32 [n, latent_dim], 'labels': int32 [n]}`, without `labels` when
    every label is 0 (a split without classes). The latents are Model.encode's of the
    split's images.

  Raises:
    DataError: an unknown split, or data that cannot be read.
    ConfigError: a data_config whose image_size is not the model's.
  """
  data_config = model.settings.data if data_config is None else data_config
  if data_config.image_size != model.settings.data.image_size:
    raise ConfigError(f'data.image_size {data_config.image_size} is not the model\'s '
                      f'{model.config.data.image_size}: the model encodes images of its own size')
  images, labels = data.load_split(data_config, split, data_config.image_size,
                                   model.config.model.channels)
  arrays = {'latents': np.asarray(model.encode(images, progress=progress), np.float32)}
  if np.any(labels):
    arrays['labels'] = np.asarray(labels, np.int32)
  return arrays


def check_out(out: str) -> None:
  """Raises DataError unless `out` names a .npz file that can be written (its folder is
  created if missing): said before any encoding."""
  if not out.endswith('.npz'):
    raise DataError(f'--out {out}: give a file name ending in .npz')
  if os.path.isdir(out):
    raise DataError(f'--out {out} is a folder; give a file name ending in .npz')
  folder = os.path.dirname(os.path.abspath(out))
  existing = folder
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise DataError(f'--out {out}: {existing} is a file, not a folder')
  if not os.access(existing, os.W_OK | os.X_OK):
    raise DataError(f'--out {out}: cannot write in {existing} (permission denied)')


def write_npz(out: str, arrays: dict[str, np.ndarray]) -> None:
  """Writes `arrays` to `out` (.npz, uncompressed) atomically: a temporary file in the same
  folder, renamed into place, so a reader never sees half a file and a failed write leaves
  what was there before."""
  folder = os.path.dirname(os.path.abspath(out))
  os.makedirs(folder, exist_ok=True)
  handle, temporary = tempfile.mkstemp(prefix=os.path.basename(out) + '.', suffix='.tmp',
                                       dir=folder)
  try:
    with os.fdopen(handle, 'wb') as f:
      np.savez(f, **arrays)  # a file object: savez adds no second .npz to the name
    os.replace(temporary, out)
  except BaseException:
    os.unlink(temporary)
    raise


def _check_only_data_differs(config: ml_collections.ConfigDict,
                             trained: ml_collections.ConfigDict) -> None:
  """Raises ConfigError if `config` differs from the model's config outside `data`: encode
  reads data elsewhere, but the model is the checkpoint's."""
  given, saved = _flatten(config.to_dict()), _flatten(trained.to_dict())
  for key in sorted(set(given) | set(saved)):
    if not key.startswith('data.') and given.get(key) != saved.get(key):
      raise ConfigError(f'config key {key} is {given.get(key)!r} but the model was trained with '
                        f'{saved.get(key)!r}: encode takes only --config.data.* overrides '
                        '(where the images come from)')


def _flatten(tree: dict, prefix: str = '') -> dict:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = list(value) if isinstance(value, tuple) else value
  return flat


def encode_to_file(config: ml_collections.ConfigDict, workdir: str, split: str,
                   out: str) -> str:
  """The command's work: encodes `split` of the model in `workdir` (a workdir, bundle folder
  or pretrained name) with `config.data`, writes `out`; returns the line to print.

  Raises:
    FileNotFoundError: no model there.
    ConfigError: `config` differs from the model's outside `data`.
    DataError: a bad split or `out`, or data that cannot be read.
  """
  if split not in data.SPLITS:
    raise DataError(f"unknown split {split!r}; use one of {', '.join(data.SPLITS)}")
  check_out(out)
  model = model_lib.load(workdir)
  _check_only_data_differs(config, model.config)
  arrays = encode_split(model, split, to_settings(config).data,
                        progress=f'encoding {split} images')
  write_npz(out, arrays)
  latents = arrays['latents']
  labels = 'and their labels' if 'labels' in arrays else '(the split has no labels)'
  return (f'{out}: {len(latents)} latents of {latents.shape[1]} dimensions {labels}, the '
          f'{split} split of {config.data.name} encoded by {model.source}')


def _resolve_workdir(argv: list[str]) -> list[str]:
  """`argv` with a --workdir naming a pretrained model (not a folder here) given the model's
  folder in the package, which holds its config.json as a workdir does; a --workdir that is
  neither is one `error:` line (not the missing config.json of a workdir), exit 1."""
  argv = list(argv)
  for i, arg in enumerate(argv):
    name, equals, value = arg.partition('=')
    if name not in ('--workdir', '-workdir'):
      continue
    index = i if equals else i + 1
    value = value if equals else (argv[index] if index < len(argv) else '')
    if not value or os.path.isdir(os.path.expanduser(value)):
      continue
    folder = bundles.pretrained_folder(value)
    if folder is None:
      print(f'error: --workdir {value}: neither a folder nor a pretrained model; pretrained: '
            f'{", ".join(bundles.pretrained_names())}', file=sys.stderr)
      sys.exit(1)
    argv[index] = f'{name}={folder}' if equals else str(folder)
  return argv


def main() -> None:
  """python -m gon_jax.encode: see ENCODE_USAGE."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  from gon_jax import cli  # pylint: disable=import-outside-toplevel  # defines --config, --workdir

  split = flags.DEFINE_enum('split', 'test', list(data.SPLITS), 'The split to encode.')
  out = flags.DEFINE_string('out', None, 'The .npz file to write.')
  flags.mark_flag_as_required('out')
  sys.argv = _resolve_workdir(sys.argv)
  cli.run(lambda config, workdir: print(encode_to_file(config, workdir, split.value, out.value)),
          ENCODE_USAGE)


if __name__ == '__main__':
  main()
