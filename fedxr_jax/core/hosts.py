"""Multi-process runs on JAX's distributed runtime: one process per host, one global mesh.

`initialize(Launch(...))` joins the run (`jax.distributed.initialize`; gloo
collectives on CPU) before anything touches a device. After it,
`jax.devices()` lists every process's devices, so `vectorize.client_mesh()`
is the global ('clients',) mesh and each jitted round is one program over
all processes, the client axis sharded across them.

Every process runs the same host loop on the same config. Values built from
the seed (the world, the plans, the guard) are the same on every process:
jit takes such an uncommitted process-local value for the global, replicated
one (a value committed to one local device would be refused). States live
replicated on the global mesh (`training.loop.Runner`); results come back to
the host through `fetch`, which gathers what is sharded across processes.
Host measurements that steer a decision (free memory) are agreed with
`least`. Process 0, the leader,
owns the workdir's files (config.json, metrics.jsonl, summary, plots,
TensorBoard, the lock) and what it reads there reaches the others through
`leader_value`, so every process takes the same branch. Checkpoints are
written and read by orbax on every process: the workdir must be one path
on a filesystem every process sees.
"""
import os
import pickle
import socket
import sys
import threading
from typing import Any, Callable, NamedTuple, Optional

import jax
import numpy as np

from fedxr_jax.errors import ConfigError, FedXRError

# jax's cluster_detection_method names (jax._src.clusters); 'auto': the first present.
CLUSTERS = ('slurm', 'ompi', 'mpi4py', 'tpu', 'gcetpu', 'gketpu')
MODES = ('off', 'auto') + CLUSTERS
# Seconds between the coordinator's deadline and ours: we report, not jax's abort.
_MARGIN_S = 30


class DistributedError(FedXRError):
  """The processes of a multi-process run could not form (or keep) the run."""


class Launch(NamedTuple):
  """How this process joins a run; `mode` 'off' with no address: a single process."""
  mode: str = 'off'
  coordinator_address: str = ''
  num_processes: Optional[int] = None
  process_id: Optional[int] = None
  timeout_s: int = 300

  @property
  def explicit(self) -> bool:
    return bool(self.coordinator_address) and self.mode == 'off'


def check(launch: Launch) -> None:
  """Refuses, in one line, a launch that cannot form a run (before any connection)."""
  if launch.mode not in MODES:
    raise ConfigError(f'--distributed={launch.mode!r} is not one of {MODES}')
  if launch.timeout_s < 1:
    raise ConfigError(f'--initialization_timeout must be >= 1 s, got {launch.timeout_s}')
  n, i = launch.num_processes, launch.process_id
  if n is not None and n < 1:
    raise ConfigError(f'--num_processes must be >= 1, got {n}')
  if i is not None and i < 0:
    raise ConfigError(f'--process_id must be >= 0, got {i}')
  if n is not None and i is not None and i >= n:
    raise ConfigError(f'--process_id={i} is not below --num_processes={n} '
                      f'(ids are 0..{n - 1})')
  if launch.coordinator_address:
    _split_address(launch.coordinator_address)
  if launch.mode != 'off':
    return
  if not launch.coordinator_address:
    if (n or 1) > 1 or i:
      raise ConfigError('--num_processes/--process_id need --coordinator_address=HOST:PORT '
                        "(process 0's host), or --distributed=auto inside a SLURM or "
                        'Open MPI job')
    return
  if n is None or i is None:
    raise ConfigError('--coordinator_address needs --num_processes and --process_id '
                      '(or --distributed=auto inside a SLURM or Open MPI job)')


def _split_address(address: str) -> tuple:
  host, _, port = address.rpartition(':')
  if not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise ConfigError(f'--coordinator_address={address!r} is not HOST:PORT '
                      '(e.g. node001:12355)')
  return host.strip('[]'), int(port)


def initialize(launch: Launch, on_timeout: Optional[Callable[[str], None]] = None) -> bool:
  """Joins the run `launch` describes; False when it is a single process.

  Must run before JAX first touches a device. jax's runtime aborts the
  process when the processes do not all join in time; a watchdog reports
  that first, in one line, through `on_timeout(message)` (default: the
  message on stderr, exit code 2).
  """
  check(launch)
  if launch.mode == 'off' and not launch.coordinator_address:
    return False
  if jax.distributed.is_initialized():
    return True
  # CPU collectives across processes (a no-op for GPU and TPU computations).
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  method = ('deactivate' if launch.explicit else
            None if launch.mode == 'auto' else launch.mode)
  watchdog = threading.Timer(launch.timeout_s, _timed_out,
                             (launch, on_timeout or _exit_with))
  watchdog.daemon = True
  watchdog.start()
  try:
    jax.distributed.initialize(
        launch.coordinator_address or None, launch.num_processes, launch.process_id,
        cluster_detection_method=method,
        initialization_timeout=launch.timeout_s + _MARGIN_S)
  except (ValueError, TypeError, RuntimeError, KeyError) as e:
    # Cluster detection: jax names a variable a named cluster lacks (KeyError),
    # or finds no address at all ('coordinator_address should be defined').
    detected = launch.mode != 'off' and (isinstance(e, KeyError) or 'defined' in str(e))
    if not detected:
      where = f' at {launch.coordinator_address}' if launch.coordinator_address else ''
      hint = (' (process 0 serves the coordinator there: is that port free on this host?)'
              if 'RPC server' in str(e) else '')
      raise DistributedError(f'cannot join the run{where}: {e}{hint}') from None
    why = f'{e.args[0]} is not set' if isinstance(e, KeyError) else 'none detected'
    where = ('a SLURM, Open MPI or TPU job' if launch.mode == 'auto' else
             'a job of that cluster manager')
    raise DistributedError(
        f'--distributed={launch.mode} runs inside {where} ({why}); elsewhere give '
        '--coordinator_address, --num_processes and --process_id') from None
  finally:
    watchdog.cancel()
  return True


def _timed_out(launch: Launch, report: Callable[[str], None]) -> None:
  address = launch.coordinator_address or os.environ.get('JAX_COORDINATOR_ADDRESS', '')
  who = (f'process {launch.process_id} of {launch.num_processes}'
         if launch.process_id is not None else 'this process')
  if launch.process_id and address and not _listening(address):
    why = f'nothing listens at {address} (is process 0 running there?)'
  else:
    count = f' {launch.num_processes}' if launch.num_processes else ''
    why = (f'the coordinator at {address or "the detected address"} did not see all'
           f'{count} processes join')
  report(f'{who} could not join the run within --initialization_timeout='
         f'{launch.timeout_s} s: {why}; start every process with the same '
         '--coordinator_address and --num_processes and a distinct --process_id')


def _listening(address: str) -> bool:
  try:
    with socket.create_connection(_split_address(address), timeout=2):
      return True
  except OSError:
    return False


def _exit_with(message: str) -> None:
  print(f'error: {message}', file=sys.stderr, flush=True)
  os._exit(2)   # the main thread is blocked inside jax's runtime


def process_count() -> int:
  return jax.process_count()


def is_leader() -> bool:
  """Process 0: the one that writes the workdir's files and prints."""
  return jax.process_index() == 0


def leader_value(fn: Callable[[], Any]) -> Any:
  """fn() as the leader computed it, on every process (its FedXRError or OSError too).

  For what the leader alone reads or writes (the workdir's files): the other
  processes do not run `fn`, they receive its result (pickled).
  """
  if process_count() == 1:
    return fn()
  outcome = None
  if is_leader():
    try:
      outcome = (True, fn())
    except (FedXRError, OSError) as e:
      outcome = (False, e)
  ok, value = pickle.loads(_broadcast_bytes(
      pickle.dumps(outcome) if outcome is not None else b''))
  if not ok:
    raise value
  return value


def leader_only(fn: Callable[[], Any]) -> Any:
  """fn() on the leader alone: its value there, None elsewhere, its error everywhere."""
  box = []
  leader_value(lambda: box.append(fn()))
  return box[0] if box else None


def _broadcast_bytes(data: bytes) -> bytes:
  """The leader's bytes on every process (one small compile per power-of-two size)."""
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  size = int(multihost_utils.broadcast_one_to_all(np.int32(len(data))))
  buffer = np.zeros(1 << max(size - 1, 0).bit_length(), np.uint8)
  if is_leader():
    buffer[:size] = np.frombuffer(data, np.uint8)
  return np.asarray(multihost_utils.broadcast_one_to_all(buffer))[:size].tobytes()


def barrier(name: str) -> None:
  """Every process waits here until all have arrived (no-op for one process)."""
  if process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices(name)


def least(value: Optional[float]) -> Optional[int]:
  """The smallest of every process's value (None: unknown there; all None: None).

  For decisions from what each host measures (free memory): every process
  must decide alike. A collective when there are several processes.
  """
  if process_count() == 1:
    return value
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  values = np.asarray(multihost_utils.process_allgather(
      np.float32(-1.0 if value is None else value)))
  known = values[values >= 0]
  return int(known.min()) if known.size else None


def fetch(tree):
  """Host (numpy) values of a tree of arrays; a leaf sharded across processes is gathered.

  A collective when there are several processes: every process calls it
  with the same tree.
  """
  if process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

  def one(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return jax.device_get(x)
  return jax.tree.map(one, tree)
