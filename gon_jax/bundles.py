"""A bundle: the files of a trained model that inference needs and nothing else (config.json,
the variables, the Gaussian of its training latents, example images) and their record,
`sha256.json`, checked before anything is read; and the pretrained bundles shipped in the
package (gon_jax/pretrained/, named in its manifest.json). `gon_jax.load` reads them
(gon_jax.model); `python -m gon_jax.export` writes them from a workdir.
"""

import json
import os
import pathlib
import zipfile
from typing import Any, Callable, NamedTuple

import flax.serialization
import jax
import ml_collections
import msgpack
import numpy as np

from gon_jax import file_hashes, saved_config
from gon_jax.errors import DamagedFileError

PRETRAINED_DIR = pathlib.Path(__file__).parent / 'pretrained'
MANIFEST = PRETRAINED_DIR / 'manifest.json'
# A bundle's files: what inference needs and nothing else, and their record.
VARIABLES = 'variables.msgpack'  # {'params': ..., ['batch_stats': ...]}, flax msgpack
GAUSSIAN = 'gaussian.npz'  # non-variational models: mean, covariance of training latents
EXAMPLES = 'examples.npz'  # images (uint8): the first test images of its data set
# file_hashes.RECORD, sha256.json: every other file's size and sha256, written last.


class Bundle(NamedTuple):
  """What a bundle holds: its config (not yet validated), the Flax variables as stored, and
  the optional Gaussian `(mean, covariance)` and example images (uint8), None if absent."""
  config: ml_collections.ConfigDict
  variables: dict
  gaussian: tuple[np.ndarray, np.ndarray] | None
  examples: np.ndarray | None


def manifest() -> dict:
  """The pretrained models' manifest, `{name: entry}` (docs/pretrained.md says what an entry
  holds: command, data, steps, epochs, seed, test metrics, parameters, files with sha256)."""
  with open(MANIFEST, encoding='utf-8') as f:
    return json.load(f)


def pretrained_names() -> list[str]:
  """The names `gon_jax.load` knows, sorted."""
  return sorted(manifest()) if MANIFEST.is_file() else []


def pretrained_folder(name: str) -> pathlib.Path | None:
  """The folder in the package of the pretrained model `name`, or None if there is none."""
  return PRETRAINED_DIR / name if name in pretrained_names() else None


def is_bundle(folder: pathlib.Path) -> bool:
  """Whether `folder` holds a bundle (its variables or its record), not a workdir."""
  return (folder / VARIABLES).is_file() or file_hashes.has_record(folder)


def check_pretrained(folder: pathlib.Path) -> None:
  """Raises DamagedFileError unless every file of the pretrained bundle `folder` is the one
  its manifest entry names (size and sha256)."""
  for file, entry in manifest()[folder.name]['files'].items():
    if not (folder / file).is_file() or file_hashes.sha256(folder / file) != entry['sha256']:
      raise DamagedFileError(f'{folder / file} is not the file the manifest names (sha256 '
                             f'{entry["sha256"][:12]}...); reinstall gon_jax')


def read(folder: pathlib.Path) -> Bundle:
  """A bundle written by `write`, its files checked against its record first.

  A bundle without `sha256.json` (written before bundles recorded their files, or not
  completely) is refused: its files cannot be told from damaged ones.

  Raises:
    DamagedFileError: no record, a file whose size or sha256 is not the recorded one, or a
      file that does not parse.
  """
  if not file_hashes.has_record(folder):
    raise DamagedFileError(
        f'bundle {folder} has no {file_hashes.RECORD}: it was not completely written, or '
        'written before bundles recorded their files; write it again (save_bundle, python -m '
        'gon_jax.export), or if you trust its files record them: '
        f'gon_jax.file_hashes.write_record({str(folder)!r})')
  file_hashes.check_record(folder, 'the bundle')
  config = saved_config.load(str(folder))
  variables = _read(folder / VARIABLES,
                    lambda path: flax.serialization.msgpack_restore(path.read_bytes()))
  gaussian = None
  if (folder / GAUSSIAN).is_file():
    gaussian = _read(folder / GAUSSIAN, lambda path: _arrays(path, 'mean', 'covariance'))
  examples = None
  if (folder / EXAMPLES).is_file():
    (examples,) = _read(folder / EXAMPLES, lambda path: _arrays(path, 'images'))
  return Bundle(config, variables, gaussian, examples)


def write(folder: str | os.PathLike, bundle: Bundle) -> dict[str, dict]:
  """Writes `bundle`: config.json, the variables as flax msgpack, the Gaussian and the
  examples (uint8 images) where not None, then `sha256.json`, the record of every file's size
  and sha256 that `read` checks (gon_jax.file_hashes).

  Returns:
    `{file name: {'bytes': size, 'sha256': hex digest}}` of the files written (the record's
    entries).
  """
  folder = pathlib.Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  # No record until every file is written: a bundle written halfway is refused.
  (folder / file_hashes.RECORD).unlink(missing_ok=True)
  saved_config.save(bundle.config, str(folder))
  variables = jax.tree.map(np.asarray, bundle.variables)
  (folder / VARIABLES).write_bytes(flax.serialization.msgpack_serialize(variables))
  optional = {GAUSSIAN: bundle.gaussian, EXAMPLES: bundle.examples}
  for name in [name for name, value in optional.items() if value is None]:
    (folder / name).unlink(missing_ok=True)  # a bundle written before must not leave its own
  if bundle.gaussian is not None:
    mean, covariance = bundle.gaussian
    np.savez(folder / GAUSSIAN, mean=mean, covariance=covariance)
  if bundle.examples is not None:
    np.savez_compressed(folder / EXAMPLES, images=np.asarray(bundle.examples, np.uint8))
  written = [saved_config.FILENAME, VARIABLES, *(name for name, value in optional.items()
                                                 if value is not None)]
  record = file_hashes.write_record(folder)
  return {name: record[name] for name in written}


def _arrays(path: pathlib.Path, *names: str) -> tuple[np.ndarray, ...]:
  """The arrays `names` of an .npz file."""
  with np.load(path) as stored:
    return tuple(stored[name] for name in names)


def _read(path: pathlib.Path, read_file: Callable[[pathlib.Path], Any]) -> Any:
  """`read_file(path)`; a file that does not parse is a DamagedFileError naming it, never
  msgpack's or zipfile's own error (a bundle whose record was written over damaged files)."""
  try:
    return read_file(path)
  except (ValueError, TypeError, KeyError, EOFError, zipfile.BadZipFile,
          msgpack.UnpackException) as err:
    raise DamagedFileError(f'{path} is damaged: it does not parse ({type(err).__name__}); '
                           'write the bundle again') from None
