"""Every code block of README.md, CHANGELOG.md and docs/*.md runs or is checked here.

`python` blocks run as they are. `bash` blocks hold one command a line: the quick start's
train and eval commands run (tiny, on the test's data); every other train or eval command
is parsed by the command line's own parser and its config validated (a workdir named by a
train command then holds its config.json, as training writes it, for the eval commands
after it); a script's flags must be ones it defines; `pip install` extras and pytest
markers must exist. `text` blocks are output, not run.
"""

import pathlib
import re
import shlex
import subprocess
import sys
import tomllib

import pytest
from absl import flags

from gon_jax import cli, saved_config
from gon_jax.config import validate

from testing_utils import REPO, TINY_FLAGS

PAGES = sorted([REPO / 'README.md', REPO / 'CHANGELOG.md', *(REPO / 'docs').glob('*.md')])
LANGUAGES = ('bash', 'python', 'text')
# The forms of the train and eval commands: a clone's scripts, the console scripts.
TRAIN = (('python', 'train.py'), ('gon-train',))
EVAL = (('python', 'eval.py'), ('gon-eval',))
SCRIPTS = {('python', '-m', 'gon_jax.experiments.compare'): 'gon_jax/experiments/compare.py',
           ('python', '-m', 'gon_jax.experiments.superres'): 'gon_jax/experiments/superres.py',
           ('python', '-m', 'gon_jax.experiments.batchnorm_modes'):
               'gon_jax/experiments/batchnorm_modes.py',
           ('python', '-m', 'gon_jax.demo'): 'gon_jax/demo.py',
           ('python', '-m', 'gon_jax.export'): 'gon_jax/export.py',
           ('python', '-m', 'gon_jax.encode'): 'gon_jax/encode.py',
           ('python', '-m', 'gon_jax.probes'): 'gon_jax/probes.py',
           ('python', '-m', 'gon_jax.sample_quality'): 'gon_jax/sample_quality.py'}
PYPROJECT = tomllib.loads((REPO / 'pyproject.toml').read_text())


def code_blocks(text: str) -> list[tuple[str, str, int]]:
  """`(language, body, line)` of each fenced block of a Markdown text (line: its opening fence)."""
  blocks, start = [], None
  for number, line in enumerate(text.splitlines(), 1):
    if line.lstrip().startswith('```'):
      if start is None:
        start, language, body = number, line.strip()[3:].strip(), []
      else:
        blocks.append((language, '\n'.join(body), start))
        start = None
    elif start is not None:
      body.append(line)
  assert start is None, f'the block at line {start} never closes'
  return blocks


def page_blocks(page: pathlib.Path) -> list[tuple[str, str, int]]:
  return code_blocks(page.read_text())


def commands(text: str) -> list[list[str]]:
  """The commands of a bash block, as argument lists: `\\` continues a line, `#` comments."""
  return [words for line in text.replace('\\\n', ' ').splitlines()
          if (words := shlex.split(line, comments=True))]


def _blocks(language: str) -> list:
  return [pytest.param(page, text, id=f'{page.relative_to(REPO)}:{line}')
          for page in PAGES for lang, text, line in page_blocks(page) if lang == language]


def _starts(words: list[str], forms) -> int:
  """The length of the form of `forms` that `words` starts with, or 0."""
  return next((len(form) for form in forms if tuple(words[:len(form)]) == form), 0)


def test_every_page_exists_and_every_block_names_a_known_language():
  assert (REPO / 'docs').is_dir() and len(PAGES) > 3
  unknown = [(page.name, line, language) for page in PAGES
             for language, _, line in page_blocks(page) if language not in LANGUAGES]
  assert not unknown, f'fenced blocks must be one of {LANGUAGES}: {unknown}'


@pytest.mark.slow
@pytest.mark.parametrize('page,text', _blocks('python'))
def test_python_block_runs(page, text, tmp_path):
  del page
  result = subprocess.run([sys.executable, '-c', text], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]


def _check_config_command(words: list[str], form: int, tmp_path: pathlib.Path,
                          monkeypatch) -> None:
  """Parses a train or eval command as its script does and validates its config; a train
  command leaves its config.json in its workdir (under tmp_path)."""
  args = list(words[form:])
  for i, arg in enumerate(args):  # workdirs under tmp_path
    if arg == '--workdir':
      args[i + 1] = str(tmp_path / args[i + 1])
    elif arg.startswith('--workdir='):
      args[i] = f'--workdir={tmp_path / arg.split("=", 1)[1]}'
  argv = [' '.join(words[:form]), *args]
  monkeypatch.setattr(sys, 'argv', argv)  # ml_collections reads overrides from sys.argv
  monkeypatch.chdir(REPO)
  flags.FLAGS.unparse_flags()
  try:
    cli._parse_flags(argv)  # pylint: disable=protected-access  # the scripts' own parsing
    config = flags.FLAGS.config
    validate(config, num_devices=1)
    if _starts(words, TRAIN):
      saved_config.save(config, flags.FLAGS.workdir)
  except SystemExit as exit_:  # --help exits 0, a mistake 1
    if exit_.code:
      pytest.fail(f'{shlex.join(words)}: exits {exit_.code} (see the error line above)')
  finally:
    flags.FLAGS.unparse_flags()
    for name in [name for name in flags.FLAGS if name.startswith('config.')]:
      delattr(flags.FLAGS, name)  # ml_collections defines one flag per override it parses


def _defined_flags(script: pathlib.Path) -> set[str]:
  """The flags a script defines (absl's DEFINE_*, argparse's add_argument, config_flags)."""
  source = script.read_text()
  names = set(re.findall(r"DEFINE_\w+\(\s*'(\w+)'", source))
  names |= set(re.findall(r"add_argument\(\s*'--([\w-]+)'", source))
  if 'gon_jax import cli' in source:
    names |= {'config', 'workdir', 'coordinator_address', 'num_processes', 'process_id',
              'distributed'}
  return names


def _check_script_flags(words: list[str], script: pathlib.Path, tmp_path, monkeypatch) -> None:
  assert script.is_file(), f'{shlex.join(words)}: no such script'
  defined = _defined_flags(script)
  named = {word[2:].split('=', 1)[0] for word in words if word.startswith('--')}
  overrides = {name for name in named if name.startswith('config.')}
  named = {name[2:] if name.startswith('no') and name[2:] in defined else name
           for name in named - overrides}
  assert named <= defined, f'{shlex.join(words)}: {script.name} has no flags {named - defined}'
  if 'config' in named:  # the config and its overrides, as train.py would read them
    config = words[words.index('--config') + 1] if '--config' in words else next(
        word.split('=', 1)[1] for word in words if word.startswith('--config='))
    given = [word for word in words if word.startswith('--config.')]
    _check_config_command(['gon-train', '--config', config, '--workdir', 'script', *given], 1,
                          tmp_path, monkeypatch)


def _check_command(words: list[str], tmp_path, monkeypatch) -> None:
  if form := _starts(words, TRAIN) or _starts(words, EVAL):
    return _check_config_command(words, form, tmp_path, monkeypatch)
  if words[:2] == ['pip', 'install']:
    for target in (word for word in words[2:] if not word.startswith('-')):
      match = re.fullmatch(r'\.(?:\[([\w,]+)\])?', target)
      assert match, f'{shlex.join(words)}: install the clone, ".", with extras'
      extras = set((match.group(1) or '').split(',')) - {''}
      assert extras <= set(PYPROJECT['project']['optional-dependencies']), extras
    return None
  if words[:3] == ['python', '-m', 'pytest']:
    markers = {line.split(':')[0]
               for line in PYPROJECT['tool']['pytest']['ini_options']['markers']}
    expression = words[words.index('-m', 3) + 1] if '-m' in words[3:] else ''
    used = set(re.findall(r'\w+', expression)) - {'not', 'and', 'or'}
    assert used <= markers, f'{shlex.join(words)}: no markers {used - markers}'
    return None
  if words[0] == 'tensorboard':
    assert 'tensorboard' in PYPROJECT['project']['optional-dependencies']
    return None
  script = SCRIPTS.get(tuple(words[:3])) or (
      words[1] if words[0] == 'python' and words[1].startswith(('benchmarks/', 'scripts/'))
      else None)
  assert script, f'a command the docs may not hold: {shlex.join(words)}'
  return _check_script_flags(words, REPO / script, tmp_path, monkeypatch)


@pytest.mark.parametrize('page', [pytest.param(page, id=str(page.relative_to(REPO)))
                                  for page in PAGES])
def test_bash_commands_are_valid(page, tmp_path, monkeypatch):
  """Each page's commands in order, so that its eval commands find their workdir's config."""
  checked = 0
  for language, text, line in page_blocks(page):
    if language != 'bash':
      continue
    for words in commands(text):
      try:
        _check_command(words, tmp_path, monkeypatch)
      except AssertionError as err:
        raise AssertionError(f'{page.name}:{line}: {err}') from None
      checked += 1
  assert checked or 'bash' not in [language for language, _, _ in page_blocks(page)]


def _quick_start() -> list[list[str]]:
  """The train and eval commands of README.md's Quick start section, in order."""
  section = (REPO / 'README.md').read_text().split('\n## Quick start', 1)[1].split('\n## ', 1)[0]
  return [words for language, block, _ in code_blocks(section) if language == 'bash'
          for words in commands(block) if _starts(words, TRAIN) or _starts(words, EVAL)]


@pytest.mark.slow
def test_quick_start_trains_and_evaluates(blob_dir, tmp_path):
  """README's quick start word for word, on the test's tiny data set and for 2 steps."""
  steps = _quick_start()
  assert [bool(_starts(words, TRAIN)) for words in steps] == [True, False], steps
  tiny = [*TINY_FLAGS, '--config.num_steps=2', f'--config.data.dir={blob_dir}']
  for words in steps:
    form = _starts(words, TRAIN) or _starts(words, EVAL)
    script = {'train.py': 'train.py', 'eval.py': 'eval.py'}.get(words[1])
    assert script, f'the quick start uses train.py and eval.py of the clone: {words}'
    extra = tiny if _starts(words, TRAIN) else []
    result = subprocess.run([sys.executable, str(REPO / script), *words[form:], *extra],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
  assert '"step": 2' in result.stdout.strip().splitlines()[-1], result.stdout[-2000:]
