"""fedxr-train over several processes on JAX's distributed runtime, on one machine.

Two processes x 2 CPU devices each (gloo collectives, coordinator on a free
local port) train the tiny config and must give the rows of one process with
4 CPU devices: the same ('clients',) mesh of 4 devices, the same program per
device; only the cross-device sums run through gloo instead of XLA's
in-process collectives, in another order. So rows agree to float32 rounding:
relative 1e-6 (about 8 float32 ulps, eps = 1.19e-7; measured: 1.4e-7 at worst,
on train/loss) and absolute 1e-7 for values near zero. A two-process run
stopped after 2 rounds and resumed to 4 must end with the uninterrupted
run's rows bit for bit (same processes, same programs, orbax state).

Each process is a real interpreter (`python -m fedxr_jax.cli.train`) with
its output in files and a deadline: a hang fails the test instead of
blocking CI. Bad launch flags are one line (`cli_harness`, a fork per run).
"""
import json
import math
import os
import socket
import subprocess
import sys
import time

import pytest

from fedxr_jax.training import metrics_log
import cli_harness

TEST_CONFIG = os.path.join(cli_harness.REPO, 'fedxr_jax', 'configs', 'test.py')
# The tiny config without the evaluations of unseen users and held-out groups
# (two more compiled evaluations each, no new multi-process code path); the
# fixed panel stays: its per-client stats are sharded across the processes.
CONFIG = (f'--config={TEST_CONFIG}', '--config.eval_unseen_clients=0',
          '--config.eval.holdout_clients=0', '--config.eval.panel_size=8')
DEADLINE_S = 600   # per launch of every process; a cold 2-process run: ~3 min on 2 busy cores
REL, ABS = 1e-6, 1e-7


@pytest.fixture(scope='module')
def cli():
  with cli_harness.Harness() as harness:
    yield harness


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def launch(workdir, *args, processes: int = 2, devices: int = 2) -> list:
  """Runs fedxr-train as `processes` processes of one run: their Results, by process id."""
  port = free_port()
  logs, procs = workdir.parent / f'{workdir.name}-logs', []
  logs.mkdir(exist_ok=True)
  for i in range(processes):
    out, err = open(logs / f'{i}.out', 'w'), open(logs / f'{i}.err', 'w')
    procs.append((subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, '-m', 'fedxr_jax.cli.train', *CONFIG, f'--workdir={workdir}',
         '--progress=false', f'--host_devices={devices}',
         f'--coordinator_address=localhost:{port}', f'--num_processes={processes}',
         f'--process_id={i}', '--initialization_timeout=120', *args],
        stdout=out, stderr=err, cwd=cli_harness.REPO), out, err))
  deadline = time.monotonic() + DEADLINE_S
  try:
    for proc, _, _ in procs:
      proc.wait(timeout=max(deadline - time.monotonic(), 1))
  except subprocess.TimeoutExpired:
    pass
  finally:
    hung = [p.pid for p, _, _ in procs if p.poll() is None]
    for proc, out, err in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
      out.close()
      err.close()
  results = [cli_harness.Result(proc.returncode, (logs / f'{i}.out').read_text(),
                                (logs / f'{i}.err').read_text())
             for i, (proc, _, _) in enumerate(procs)]
  assert not hung, f'processes {hung} still ran after {DEADLINE_S} s: {results}'
  return results


def raw_rows(workdir) -> list:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def assert_close(a, b, where=''):
  """Equal, floats to float32 rounding (REL, ABS), lists element by element."""
  if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
    assert len(a) == len(b), where
    for i, (x, y) in enumerate(zip(a, b)):
      assert_close(x, y, f'{where}[{i}]')
  elif isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
    assert math.isclose(a, b, rel_tol=REL, abs_tol=ABS), f'{where}: {a} != {b}'
  else:
    assert a == b, f'{where}: {a!r} != {b!r}'


@pytest.fixture(scope='module')
def one_process(cli, tmp_path_factory):
  workdir = tmp_path_factory.mktemp('one') / 'w'
  result = cli.train(*CONFIG, '--host_devices=4', f'--workdir={workdir}')
  assert result.rc == 0 and result.lines == [], result
  return workdir


@pytest.fixture(scope='module')
def two_processes(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('two') / 'w'
  t0 = time.monotonic()
  results = launch(workdir)
  print(f'2 processes x 2 devices, 4 rounds: {time.monotonic() - t0:.1f} s')
  return workdir, results


@pytest.mark.slow   # two 4-device processes; every sharded-path test runs with -m slow
def test_two_processes_give_the_rows_of_one_process_with_four_devices(one_process,
                                                                       two_processes):
  workdir, (leader, other) = two_processes
  for result in (leader, other):
    assert result.rc == 0 and result.lines == [], result
  # Process 0 alone wrote the files: one row per round, one TensorBoard file,
  # the panel's client table once; it alone printed the summary.
  rows, want = raw_rows(workdir), raw_rows(one_process)
  assert [r['round'] for r in rows] == [1, 2, 3, 4]
  assert ['time/compile_s' in r for r in rows] == [True, False, False, False]
  assert len(os.listdir(workdir / 'tensorboard')) == 1
  with open(workdir / 'eval_clients.jsonl') as f, open(one_process / 'eval_clients.jsonl') as g:
    assert len(f.readlines()) == len(g.readlines()) > 0
  with open(workdir / 'summary.json') as f:
    assert json.load(f)['round'] == 4
  assert 'rounds: compile' in leader.stdout and 'rounds: compile' not in other.stdout
  for got, expected in zip(rows, want):
    got, expected = metrics_log.comparable(got), metrics_log.comparable(expected)
    assert sorted(got) == sorted(expected)
    for key in expected:
      assert_close(got[key], expected[key], f"round {expected['round']} {key}")


@pytest.mark.slow   # two more 2-process launches (~2 min on 2 cores)
def test_a_stopped_two_process_run_resumes_to_the_uninterrupted_rows(two_processes,
                                                                     tmp_path):
  uninterrupted, _ = two_processes
  workdir = tmp_path / 'w'
  first = launch(workdir, '--config.num_rounds=2')
  assert all(r.rc == 0 and r.lines == [] for r in first), first
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2']
  resumed = launch(workdir, '--config.num_rounds=4')
  assert all(r.rc == 0 and r.lines == [] for r in resumed), resumed
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2', '4']
  got = [metrics_log.comparable(r) for r in raw_rows(workdir)]
  assert got == [metrics_log.comparable(r) for r in raw_rows(uninterrupted)]


def test_what_process_0_refuses_stops_every_process_in_one_line(tmp_path):
  # Only process 0 looks at the workdir; its error reaches the other process.
  workdir = tmp_path / 'file'
  workdir.write_text('not a run')
  for result in launch(workdir):
    assert_one_line(result, f'--workdir {workdir} is a file, not a directory')


def assert_one_line(result, *parts):
  assert result.rc == 2, result
  assert 'Traceback' not in result.stderr and len(result.lines) == 1, result.stderr
  for part in parts:
    assert part in result.lines[0], result.lines[0]


@pytest.mark.parametrize('args, message', [
    (['--coordinator_address=localhost:1234', '--num_processes=2', '--process_id=2'],
     '--process_id=2 is not below --num_processes=2 (ids are 0..1)'),
    (['--num_processes=2', '--process_id=1'],
     '--num_processes/--process_id need --coordinator_address=HOST:PORT'),
    (['--coordinator_address=localhost:1234'],
     '--coordinator_address needs --num_processes and --process_id'),
    (['--coordinator_address=localhost', '--num_processes=2', '--process_id=1'],
     "--coordinator_address='localhost' is not HOST:PORT"),
    (['--distributed=slurmm'], "--distributed='slurmm' is not one of"),
    (['--coordinator_address=localhost:1234', '--num_processes=0', '--process_id=0'],
     '--num_processes must be >= 1'),
])
def test_a_bad_launch_is_one_line(cli, tmp_path, args, message):
  assert_one_line(cli.train(*CONFIG, f'--workdir={tmp_path}/w', *args), message)
  assert not os.path.exists(tmp_path / 'w')


@pytest.mark.skipif(any(k in os.environ for k in ('SLURM_JOB_ID', 'OMPI_MCA_orte_hnp_uri')),
                    reason='inside a cluster job, auto-detection finds it')
@pytest.mark.parametrize('mode, message', [
    ('auto', '--distributed=auto runs inside a SLURM, Open MPI or TPU job (none detected)'),
    ('slurm', '--distributed=slurm runs inside a job of that cluster manager '
              '(SLURM_JOB_ID is not set)'),
])
def test_cluster_detection_outside_a_cluster_is_one_line(cli, tmp_path, mode, message):
  assert_one_line(cli.train(*CONFIG, f'--workdir={tmp_path}/w', f'--distributed={mode}'),
                  message)


@pytest.mark.parametrize('process_id, message', [
    (1, 'nothing listens at localhost:'),   # no process 0
    (0, 'did not see all 2 processes join'),   # no process 1
])
def test_a_run_whose_processes_do_not_all_join_stops_in_one_line(cli, tmp_path, process_id,
                                                                   message):
  t0 = time.monotonic()
  result = cli.train(*CONFIG, f'--workdir={tmp_path}/w', '--initialization_timeout=2',
                     f'--coordinator_address=localhost:{free_port()}', '--num_processes=2',
                     f'--process_id={process_id}', timeout=120)
  assert_one_line(result, f'process {process_id} of 2 could not join the run within '
                  '--initialization_timeout=2 s', message)
  assert time.monotonic() - t0 < 60
  assert not os.path.exists(tmp_path / 'w' / 'metrics.jsonl')
