r"""Host loop cost at rounds_per_call K = 1, 8, 32 on the tiny test model.

  python benchmarks/host_loop.py [--rounds=64] [--repeats=3]

Each repeat runs `training.loop.run` on configs/test.py for --rounds rounds
(no evaluation before the last round, one checkpoint at the end) once per K,
the K values interleaved. The training phase is the wall time of the loop
over the rounds (`loop._train_rounds`) minus its compiles (`time/compile_s`:
tracing, lowering, a persistent-cache hit) and its evaluation
(`time/eval_s`); rounds/s = rounds / training phase. Host share = 1 - (the
compiled calls' time, `time/round_s` summed: dispatch to the fetch of their
metrics) / training phase: the round plans made on the host, rows built and
written, TensorBoard, the checkpoint. Medians over repeats; writes
benchmarks/results/host_loop.{json,md}.
"""
import json
import os
import statistics
import tempfile
import time

from absl import app
from absl import flags
from absl import logging

from fedxr_jax.configs import test as test_config
from fedxr_jax.core import compilation_cache
from fedxr_jax.training import loop

_ROUNDS = flags.DEFINE_integer('rounds', 64, 'Rounds per run (a multiple of every K).')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Interleaved repeats per K.')
_KS = flags.DEFINE_list('ks', ['1', '8', '32'], 'rounds_per_call values.')
_OUT = flags.DEFINE_string('out', 'benchmarks/results/host_loop', 'Results path (no suffix).')


def config_for(k: int, rounds: int):
  config = test_config.get_config()
  config.num_rounds = rounds
  config.rounds_per_call = k
  config.eval_every = rounds
  config.checkpoint_every = rounds
  config.plot = False
  return config


def one_run(k: int, rounds: int) -> dict:
  config = config_for(k, rounds)
  phase = []
  train_rounds = loop._train_rounds   # pylint: disable=protected-access

  def timed(*args, **kwargs):
    t0 = time.perf_counter()
    try:
      return train_rounds(*args, **kwargs)
    finally:
      phase.append(time.perf_counter() - t0)

  loop._train_rounds = timed   # pylint: disable=protected-access
  try:
    with tempfile.TemporaryDirectory() as workdir:
      rows = loop.run(config, workdir, progress=False)
  finally:
    loop._train_rounds = train_rounds   # pylint: disable=protected-access
  compile_s = sum(r.get('time/compile_s', 0.0) for r in rows)
  eval_s = sum(r.get('time/eval_s', 0.0) for r in rows)
  calls_s = sum(r['time/round_s'] for r in rows)
  train_s = phase[0] - compile_s - eval_s
  return {'rounds_per_s': rounds / train_s, 'host_share': 1.0 - calls_s / train_s,
          'host_ms_per_round': 1e3 * (train_s - calls_s) / rounds,
          'call_ms_per_round': 1e3 * calls_s / rounds}


def main(argv):
  del argv
  logging.set_verbosity(logging.FATAL)   # orbax logs every save
  compilation_cache.enable()
  ks = [int(k) for k in _KS.value]
  runs = {k: [] for k in ks}
  for k in ks:   # warm the persistent cache: later compiles are cache hits
    one_run(k, _ROUNDS.value)
  for _ in range(_REPEATS.value):
    for k in ks:
      runs[k].append(one_run(k, _ROUNDS.value))
  result = {'rounds': _ROUNDS.value, 'repeats': _REPEATS.value,
            'median': {k: {key: statistics.median(r[key] for r in runs[k]) for key in runs[k][0]}
                       for k in ks},
            'runs': runs}
  os.makedirs(os.path.dirname(_OUT.value), exist_ok=True)
  with open(_OUT.value + '.json', 'w') as f:
    json.dump(result, f, indent=1)
  lines = ['| rounds_per_call | rounds/s | host ms/round | call ms/round | host share |',
           '|---:|---:|---:|---:|---:|']
  for k in ks:
    m = result['median'][k]
    lines.append(f"| {k} | {m['rounds_per_s']:.1f} | {m['host_ms_per_round']:.2f} | "
                 f"{m['call_ms_per_round']:.2f} | {m['host_share']:.0%} |")
  table = '\n'.join(lines)
  with open(_OUT.value + '.md', 'w') as f:
    f.write(f'# Host loop, tiny model, {_ROUNDS.value} rounds, median of {_REPEATS.value}\n\n'
            f'`python benchmarks/host_loop.py`\n\n{table}\n')
  print(table)


if __name__ == '__main__':
  app.run(main)
