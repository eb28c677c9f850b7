"""The README's keys and examples are the config's and the CLI's."""
import os
import re
import shlex
import subprocess
import sys

import pytest

from fedxr_jax.cli import common
from fedxr_jax.configs import default

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(REPO, 'README.md')).read()
KEYS = set(common.flat_keys(default.get_config()))
TOP = {k.split('.')[0] for k in KEYS}


def _is_key(dotted: str) -> bool:
  """A key of the config, or a block of it (`plan.*`, `algorithm.<name>.*`)."""
  dotted = dotted.rstrip('*').rstrip('.')
  dotted = re.sub(r'\.<[a-z]+>', '.*', dotted)
  pattern = re.compile('^' + re.escape(dotted).replace(r'\*', '[a-z_0-9]+') + r'(\.|$)')
  return any(pattern.match(k) for k in KEYS)


def _mentioned_keys():
  """Backticked dotted names that start with a top-level config key, and every --config.KEY."""
  found = set(re.findall(r'--config\.([a-z_0-9.]+)=', README))
  for token in re.findall(r'`([a-z_][a-z_0-9.*<>]*\.[a-z_0-9.*<>]+)`', README):
    if token.split('.')[0] in TOP and not token.endswith('.py'):
      found.add(token)
  return sorted(found)


def test_every_key_the_readme_names_is_in_the_config():
  missing = [k for k in _mentioned_keys() if not _is_key(k)]
  assert len(_mentioned_keys()) > 40
  assert not missing, f'README keys the config does not have: {missing}'


def _train_examples():
  """Each `fedxr-train ...` command of the README's code blocks (continuations joined)."""
  blocks = re.findall(r'```(?:bash)?\n(.*?)```', README, flags=re.S)
  out = []
  for block in blocks:
    for line in block.replace('\\\n', ' ').splitlines():
      line = line.split('#')[0].strip()
      if line.startswith(('fedxr-train', 'srun fedxr-train')):
        out.append(shlex.split(line)[1 if line.startswith('fedxr-train') else 2:])
  return out


def test_every_fedxr_train_example_parses():
  """Each example's flags and overrides through the CLI (--list_config stops before training)."""
  examples = _train_examples()
  assert len(examples) >= 8
  for args in examples:
    args = [a for a in args if not a.startswith(('--coordinator_address', '--num_processes',
                                                 '--process_id', '--distributed'))]
    args = [a.replace('$i', '0').replace('$SLURM_JOB_ID', '1') for a in args
            if a not in ('&', ';', 'done;', 'wait')]
    result = subprocess.run([sys.executable, '-m', 'fedxr_jax.cli.train', *args,
                             '--list_config'], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, (args, result.stderr[-500:])
