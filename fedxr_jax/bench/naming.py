"""Submission file names that cannot collide with another entry.

  TRACK-vN__METHOD__HASH12.json

METHOD is the method name made file-safe; HASH12 the first 12 hex digits of
the content hash, so two different entries never share a name (the README's
`--method=fedadam` no longer writes a file named like the shipped
baseline), and `write_new` refuses to replace a file that exists.
"""
import os
import re

from fedxr_jax.bench import files
from fedxr_jax.bench import submission as submission_lib
from fedxr_jax.bench.errors import SubmissionError

_UNSAFE = re.compile(r'[^A-Za-z0-9_.-]+')


def slug(method: str) -> str:
  text = _UNSAFE.sub('-', method).strip('-.')[:60]
  return text or 'entry'


def file_name(doc) -> str:
  t = doc['track']
  method, digest = slug(doc['method']['name']), doc['content_sha256'][:12]
  return f'{t["id"]}-v{t["version"]}__{method}__{digest}.json'


def write_new(doc, folder: str) -> str:
  """Writes `doc` into `folder` under file_name(doc); refuses to replace a file."""
  path = os.path.join(folder, file_name(doc))
  if os.path.lexists(path):
    raise SubmissionError(f'{path} exists already: it is this very entry (same content '
                          'hash); nothing was written')
  return files.atomic_write(path, submission_lib.dumps(doc))
