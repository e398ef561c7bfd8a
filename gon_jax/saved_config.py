"""The config a workdir was trained with: `<workdir>/config.json`, written as training starts,
and the history of its changes on resumption, `<workdir>/config_history.jsonl`.

train.py and eval.py read config.json when no --config is given. They load it as they load
any config file, `--config=<this file>:WORKDIR` (ml_collections calls
`get_config(WORKDIR)`), so `--config.KEY=VALUE` overrides apply to it too.

Resuming a workdir with another config (`compare_with_saved`): the keys of `FREE_KEYS` may change
(training longer, in steps or epochs, other cadences, evaluation settings, where the data is
read from, speed switches); a change to any other key, the recipe, is refused unless allowed,
and recorded.
"""

import datetime
import json
import os
from typing import Any, NamedTuple

import ml_collections

from gon_jax.config import base_config
from gon_jax.errors import ConfigError

FILENAME = 'config.json'
HISTORY_FILENAME = 'config_history.jsonl'

# The keys a resumed run may change: they leave what is trained, step by step, as it was.
# Every other key is the recipe, and so is a key that is not named here (new keys are safe).
# A name ending in '.*' frees its whole section.
FREE_KEYS = (
    'num_steps',  # training longer or shorter; but see RECIPE_WHEN: a cosine schedule's decay
    # The same in epochs: it sets num_steps (config.with_resolved_steps), which config.json
    # records resolved, so that a resumed run compares the steps either way.
    'num_epochs',
    # Cadence: when the loop logs, evaluates and saves, not what each step computes (a
    # checkpoint holds the whole train state, so resuming from any step is exact).
    'log_every', 'eval_every', 'checkpoint_every',
    # Evaluation only: in training's evaluations (eval_batch_size, train_eval_examples,
    # epoch_eval_examples, grid_size) or eval.py's (num_fit_examples, superres_size,
    # elbo_samples, and GLO's fitting of the latents of unseen images, glo.test_*). BatchNorm
    # evaluates on its running averages, so the evaluation batch does not change the numbers.
    'eval_batch_size', 'train_eval_examples', 'epoch_eval_examples', 'grid_size',
    'num_fit_examples', 'superres_size', 'elbo_samples', 'glo.test_steps', 'glo.test_learning_rate',
    # Where the data comes from, not what it is (data.source, data.name and data.image_size
    # say what it is); but see RECIPE_WHEN: a folder of one's own images is its data.dir.
    'data.dir', 'data.download', 'data.mirror', 'data.cache',
    # How the same function is computed: the speed switches (docs/performance.md; tests
    # compare each with its plain setting) and jit or pmap over the devices (the same global
    # batch, the same per-example keys, BatchNorm statistics over the global batch: tests
    # compare them); float32 sums in another order, as on another number of devices.
    'performance.*', 'parallel',
    # What happens after a step that was not finite (it changes nothing either way): the run
    # stops ('stop') or goes on ('skip'); every step both reach is the same.
    'nonfinite',
)

# Free keys that are the recipe when another key has a value, in the saved or the given
# config: `{key: (other key, its value, why)}`.
RECIPE_WHEN = {
    'num_steps': ('lr_schedule', 'cosine', "with lr_schedule 'cosine', num_steps sets the "
                  "learning rate's decay, so it changes the learning rate of the steps to come"),
    'num_epochs': ('lr_schedule', 'cosine', "with lr_schedule 'cosine', num_epochs sets the "
                   "learning rate's decay, so it changes the learning rate of the steps to come"),
    'data.dir': ('data.source', 'folder', "with data.source 'folder', data.dir is the data set"),
}

_ABSENT = object()  # a key one of two configs lacks (another model's section)


class Change(NamedTuple):
  """One key whose value differs between the saved and the given config."""
  key: str  # dotted: 'model.norm'
  saved: Any  # _ABSENT where the saved config lacks the key
  given: Any  # _ABSENT where the given config lacks the key
  recipe: bool  # it changes what is trained (not a free key)
  why: str = ''  # why a free key is the recipe here (RECIPE_WHEN)


def path(workdir: str) -> str:
  return os.path.join(workdir, FILENAME)


def history_path(workdir: str) -> str:
  return os.path.join(workdir, HISTORY_FILENAME)


def save(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes `config` as `<workdir>/config.json`, atomically (a reader never sees half of it)."""
  os.makedirs(workdir, exist_ok=True)
  temporary = path(workdir) + '.tmp'
  with open(temporary, 'w', encoding='utf-8') as f:
    f.write(config.to_json(indent=2, sort_keys=True) + '\n')
  os.replace(temporary, path(workdir))


def load(workdir: str) -> ml_collections.ConfigDict:
  """The config saved in `workdir`, on `base_config` of its model (so every key keeps its type).

  Raises:
    ConfigError: no config.json, or one that is not a saved gon_jax config; the message names
      the file and what is wrong with it (the command line adds its own advice).
  """
  file = path(workdir)
  if not os.path.isfile(file):
    raise ConfigError(f'{file} not found (training writes config.json to its workdir as it '
                      'starts)')
  try:
    with open(file, encoding='utf-8') as f:
      saved = json.load(f)
    config = base_config(saved['model']['name'])
  except (ValueError, KeyError, TypeError) as err:
    raise ConfigError(f'{file} is not a saved gon_jax config ({type(err).__name__}: {err})'
                      ) from None
  _update(config, saved, file, '')
  return config


def _update(config: ml_collections.ConfigDict, saved: dict, file: str, prefix: str) -> None:
  """Sets `config`'s values from `saved`; JSON's lists become the tuples the defaults hold."""
  for key, value in saved.items():
    if key not in config:
      raise ConfigError(f'{file} has key {prefix}{key}, which this version of gon_jax does '
                        'not know')
    if isinstance(config[key], ml_collections.ConfigDict):
      _update(config[key], value, file, f'{prefix}{key}.')
    else:
      config[key] = tuple(value) if isinstance(config[key], tuple) else value


def describe(workdir: str) -> str:
  """'<workdir>/config.json (model conv)' if the workdir has a saved config, else ''."""
  try:
    return f'{path(workdir)} (model {load(workdir).model.name!r})'
  except ConfigError:
    return ''


def get_config(workdir: str) -> ml_collections.ConfigDict:
  """ml_collections' entry point: `--config=<this file>:WORKDIR`."""
  return load(workdir)


def _flat(config: ml_collections.ConfigDict, prefix: str = '') -> dict[str, Any]:
  """`{dotted key: value}` of every value of `config`; lists as tuples (JSON's lists)."""
  flat = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      flat.update(_flat(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = tuple(value) if isinstance(value, list) else value
  return flat


def _why_recipe(key: str, saved: dict[str, Any], given: dict[str, Any]) -> str | None:
  """None if a change of `key` is free; else why it is the recipe ('' for a recipe key)."""
  if key in RECIPE_WHEN:
    other, value, why = RECIPE_WHEN[key]
    if value in (saved.get(other), given.get(other)):
      return why
  sections = tuple(name[:-1] for name in FREE_KEYS if name.endswith('.*'))
  return None if key in FREE_KEYS or key.startswith(sections) else ''


def differences(saved: ml_collections.ConfigDict,
                given: ml_collections.ConfigDict) -> list[Change]:
  """Every key whose value differs between `saved` and `given`, sorted by key.

  Args:
    saved: the config a workdir was trained with (`load`).
    given: the config it is resumed with.

  Returns:
    One `Change` per key, `recipe` True unless the key is free (FREE_KEYS, RECIPE_WHEN).
  """
  saved_flat, given_flat = _flat(saved), _flat(given)
  found = []
  for key in sorted(saved_flat.keys() | given_flat.keys()):
    old, new = saved_flat.get(key, _ABSENT), given_flat.get(key, _ABSENT)
    if old is not _ABSENT and new is not _ABSENT and old == new:
      continue
    why = _why_recipe(key, saved_flat, given_flat)
    found.append(Change(key, old, new, why is not None, why or ''))
  return found


def _shown(value: Any) -> str:
  return '(absent)' if value is _ABSENT else repr(value)


def compare_with_saved(config: ml_collections.ConfigDict, workdir: str,
                       allow_recipe_change: bool = False) -> list[Change]:
  """How `config` differs from the config `workdir` was trained with, checked before resuming.

  Args:
    config: the config to resume with.
    workdir: the run's folder; one without config.json has nothing to compare.
    allow_recipe_change: go on when the recipe changes (the caller records it: `record`).

  Returns:
    The differences (`differences`), free ones included; none for a workdir without config.json.

  Raises:
    ConfigError: a recipe key changed and `allow_recipe_change` is False (one line naming
      every such key with both values, and the ways on); or config.json does not load.
  """
  if not os.path.isfile(path(workdir)):
    return []
  found = differences(load(workdir), config)
  recipe = [change for change in found if change.recipe]
  if recipe and not allow_recipe_change:
    listed = ', '.join(f'{change.key} {_shown(change.saved)} -> {_shown(change.given)}' +
                       (f' ({change.why})' if change.why else '') for change in recipe)
    raise ConfigError(
        f'the config given changes the recipe {workdir} was trained with, recorded in '
        f'{path(workdir)} (saved -> given): {listed}; to train it, use a new --workdir; to '
        f'change this run from its last checkpoint on, give --allow_recipe_change '
        f'(train_and_evaluate: allow_recipe_change=True), which records the change in '
        f'{history_path(workdir)}')
  return found


def _entry(changes: list[Change]) -> dict[str, dict[str, Any]]:
  """`{key: {'saved': value, 'given': value}}`, a side left out where its config lacks the key."""
  return {change.key: {side: value for side, value in (('saved', change.saved),
                                                       ('given', change.given))
                       if value is not _ABSENT} for change in changes}


def record(workdir: str, step: int, changes: list[Change]) -> None:
  """Appends one JSON line for `changes` to `<workdir>/config_history.jsonl`: `{"step":
  the step training goes on from, "time": UTC, ISO 8601, "recipe": {key: {"saved": old,
  "given": new}}, "free": {...}}` (a group left out when empty). Nothing if no change."""
  if not changes:
    return
  line = {'step': step,
          'time': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}
  for group, recipe in (('recipe', True), ('free', False)):
    chosen = [change for change in changes if change.recipe == recipe]
    if chosen:
      line[group] = _entry(chosen)
  with open(history_path(workdir), 'a', encoding='utf-8') as f:
    f.write(json.dumps(line) + '\n')
