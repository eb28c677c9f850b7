"""Many CLI invocations for the price of one interpreter start: import once, fork per run.

`Harness()` starts this file as a server process that imports the CLI and
its heavy dependencies (jax, orbax, the training loop) without touching a
device, then runs each request in a forked child: a fresh process as far as
the CLI can tell (its own flags, argv, exit code, stdout and stderr), minus
the ~5 s of imports. `Harness(read_only=[dirs])` runs the server in a user
and mount namespace where those directories are bind-mounted read-only
(`unshare -rm`), so a read-only workdir can be tested as root.

  with Harness() as cli:
    result = cli.train('--config=...', '--workdir=...')   # rc, stdout, stderr
"""
import importlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from typing import NamedTuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = {name: f'fedxr_jax.cli.{name}' for name in
            ('train', 'pretrain', 'report', 'leaderboard', 'bench', 'sweep', 'models')}


class Result(NamedTuple):
  rc: int
  stdout: str
  stderr: str

  @property
  def lines(self) -> list:
    """The non-empty lines of stderr."""
    return [line for line in self.stderr.splitlines() if line.strip()]


def can_mount_read_only() -> bool:
  if shutil.which('unshare') is None:
    return False
  probe = tempfile.mkdtemp()
  try:
    ok = subprocess.run(['unshare', '-rm', 'sh', '-c',
                         f'mount --bind -o ro {probe} {probe} && ! touch {probe}/x'],
                        capture_output=True, timeout=30).returncode == 0
  except (OSError, subprocess.SubprocessError):
    ok = False
  shutil.rmtree(probe, ignore_errors=True)
  return ok


class Harness:
  """A server process running CLI invocations in forked children."""

  def __init__(self, read_only=()):
    command = [sys.executable, os.path.abspath(__file__), '--serve']
    if read_only:
      mounts = ' && '.join(f'mount --bind -o ro {shlex.quote(d)} {shlex.quote(d)}'
                           for d in read_only)
      command = ['unshare', '-rm', 'sh', '-c', f'{mounts} && exec {shlex.join(command)}']
    self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    text=True, cwd=REPO)
    assert self.process.stdout.readline().strip() == 'ready'

  def run(self, program: str, *args, timeout: float = 600) -> Result:
    request = {'module': PROGRAMS[program], 'argv': [f'fedxr-{program}', *args],
               'timeout': timeout}
    self.process.stdin.write(json.dumps(request) + '\n')
    self.process.stdin.flush()
    return Result(**json.loads(self.process.stdout.readline()))

  def train(self, *args, **kwargs) -> Result:
    return self.run('train', '--progress=false', *args, **kwargs)

  def close(self):
    self.process.stdin.close()
    self.process.wait(timeout=60)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def _child(module_name: str, argv, out: str, err: str) -> None:
  """In the forked child: run the CLI entry as `python -m module argv...` would."""
  for fd, path in ((1, out), (2, err)):
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(handle, fd)
    os.close(handle)
  sys.stdout = os.fdopen(1, 'w', buffering=1)
  sys.stderr = os.fdopen(2, 'w', buffering=1)
  sys.argv = list(argv)
  code = 0
  try:
    importlib.import_module(module_name).entry()
  except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    if not isinstance(e.code, (int, type(None))):
      print(e.code, file=sys.stderr)
  except BaseException:   # what the interpreter does with an uncaught exception
    traceback.print_exc()
    code = 1
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)


def _wait(pid: int, timeout: float) -> int:
  """The child's exit code; a child past `timeout` is killed (-9): it hung."""
  deadline = time.monotonic() + timeout
  while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
      return os.waitstatus_to_exitcode(status)
    if time.monotonic() > deadline:
      os.kill(pid, signal.SIGKILL)
      os.waitpid(pid, 0)
      return -9
    time.sleep(0.05)


def serve() -> None:
  # The heavy imports; the CLI modules themselves (one absl flag set each)
  # are imported by the children.
  for name in ('fedxr_jax.training.loop', 'fedxr_jax.training.pretrain', 'absl.app',
               'ml_collections.config_flags'):
    importlib.import_module(name)
  protocol = sys.stdout
  sys.stdout = sys.stderr   # nothing but replies on the protocol channel
  protocol.write('ready\n')
  protocol.flush()
  scratch = tempfile.mkdtemp()
  for line in sys.stdin:
    request = json.loads(line)
    out, err = os.path.join(scratch, 'out'), os.path.join(scratch, 'err')
    pid = os.fork()
    if pid == 0:
      _child(request['module'], request['argv'], out, err)
    rc = _wait(pid, request['timeout'])
    with open(out, errors='replace') as f, open(err, errors='replace') as g:
      protocol.write(json.dumps({'rc': rc, 'stdout': f.read(), 'stderr': g.read()}) + '\n')
    protocol.flush()
  shutil.rmtree(scratch, ignore_errors=True)


if __name__ == '__main__' and sys.argv[1:] == ['--serve']:
  sys.path.insert(0, REPO)
  serve()
