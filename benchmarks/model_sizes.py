r"""The M3T family's cost per federated round: speed, share of peak, memory per client.

  python benchmarks/model_sizes.py                                # CPU: tiny/small x32, base x4
  python benchmarks/model_sizes.py --runs=tiny:32:float32,small:32:bfloat16 --rounds=3
  python benchmarks/model_sizes.py --runs=small:256:bfloat16,base:64:bfloat16   # a GPU

For each SIZE:COHORT:DTYPE the default federation (LoRA PEFT over a frozen
base, m3t size SIZE with compute dtype DTYPE) runs one warm-up round and
--rounds timed rounds (median reported): seconds per round, client updates
per second (one local step of one client), useful FLOP/s (the model's
measured FLOPs per step, XLA's cost analysis, times the steps taken) and its
share of this device's practical matmul peak (a timed square matmul in the
same dtype, the best of several), and memory: the frozen base (one shared
copy), each client's trainable trees and optimizer state, and XLA's temporary
buffers of the round program divided by the cohort. Writes RESULTS/model_sizes.{json,md}.
"""
import json
import os
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.configs import default as default_config
from fedxr_jax.compose import experiment

_RUNS = flags.DEFINE_list('runs', ['tiny:32:float32', 'tiny:32:bfloat16', 'small:32:float32',
                                   'small:32:bfloat16', 'base:4:float32', 'base:4:bfloat16'],
                          'SIZE:COHORT:DTYPE per measurement.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Timed rounds (after one warm-up).')
_LOCAL_STEPS = flags.DEFINE_integer('local_steps', 0, 'Local steps (0: the default).')
_PEAK_N = flags.DEFINE_integer('peak_n', 2048, 'Side of the matmul that measures the peak.')
_CHUNK = flags.DEFINE_integer('chunk_size', 0, 'Clients per vmapped chunk (0: the whole '
                              'cohort at once).')
_RESULTS = flags.DEFINE_string('results', 'benchmarks/results', 'Where model_sizes.* go.')


def matmul_peak(dtype: str, n: int, repeats: int = 5) -> float:
  """FLOP/s of the best of `repeats` timed [n, n] @ [n, n] matmuls."""
  a = jnp.ones((n, n), dtype)
  f = jax.jit(lambda x: x @ x)
  jax.block_until_ready(f(a))
  best = min(_timed(f, a) for _ in range(repeats))
  return 2 * n ** 3 / best


def _timed(f, *args) -> float:
  t0 = time.perf_counter()
  jax.block_until_ready(f(*args))
  return time.perf_counter() - t0


def nbytes(tree) -> int:
  return int(sum(np.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(tree)))


def measure(size: str, cohort: int, dtype: str, rounds: int) -> dict:
  config = default_config.get_config()
  config.model.m3t.size, config.model.dtype = size, dtype
  config.cohort_size = cohort
  config.population_size = max(4 * cohort, 64)
  config.chunk_size = _CHUNK.value if 0 < _CHUNK.value < cohort else 0
  if _LOCAL_STEPS.value:
    config.local_steps = _LOCAL_STEPS.value
  exp = experiment.build(config)
  fed = exp.federation
  server, clients, frozen = jax.jit(fed.init)(exp.world, exp.key)
  compiled = jax.jit(fed.round, donate_argnums=(0, 1)).lower(
      server, clients, frozen, exp.world, exp.plan(0)[0]).compile()
  temp = compiled.memory_analysis()
  times, updates = [], []
  for r in range(rounds + 1):
    plan, _ = exp.plan(r)
    t0 = time.perf_counter()
    server, clients, metrics = compiled(server, clients, frozen, exp.world, plan)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
    updates.append(float(metrics['train/mean_local_steps']) * cohort)
  s = float(np.median(times[1:]))
  steps = float(np.median(updates[1:]))
  shapes = jax.eval_shape(lambda: exp.problem.init_params(jax.random.key(0)))
  trained = {r: t for r, t in shapes.items() if r not in ('base',)}
  return {'size': size, 'cohort': cohort, 'dtype': dtype, 'chunk_size': config.chunk_size,
          'parameters': sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes)),
          'base_bytes_shared': nbytes(frozen),
          'trained_bytes_per_client': nbytes(trained),
          # A chunked round holds one chunk's temporaries at a time.
          'xla_temp_bytes_per_client': (temp.temp_size_in_bytes / (config.chunk_size or cohort)
                                        if temp is not None else None),
          'warmup_s': times[0], 's_per_round': s, 'client_updates_per_s': steps / s,
          'flops_per_step': exp.costs.flops_per_step / config.data.hardware.model_scale,
          'useful_flop_per_s': steps * exp.costs.flops_per_step
                               / config.data.hardware.model_scale / s,
          'final_train_loss': float(metrics['train/loss'])}


def write(rows: list, peaks: dict, device: str) -> str:
  os.makedirs(_RESULTS.value, exist_ok=True)
  with open(os.path.join(_RESULTS.value, 'model_sizes.json'), 'w') as f:
    json.dump({'device': device, 'matmul_peak_flop_per_s': peaks, 'rows': rows}, f, indent=2)
  lines = ['| size | dtype | cohort | params | s/round | client updates/s | GFLOP/s useful '
           '| share of matmul peak | base MB (shared) | trained MB/client | XLA temp MB/client |',
           '|---|---|---|---|---|---|---|---|---|---|---|']
  for r in rows:
    temp = r['xla_temp_bytes_per_client']
    lines.append(
        f"| {r['size']} | {r['dtype']} | {r['cohort']} | {r['parameters']:,} | "
        f"{r['s_per_round']:.3f} | {r['client_updates_per_s']:.1f} | "
        f"{r['useful_flop_per_s'] / 1e9:.2f} | {r['share_of_peak']:.3f} | "
        f"{r['base_bytes_shared'] / 1e6:.2f} | {r['trained_bytes_per_client'] / 1e6:.3f} | "
        f"{temp / 1e6 if temp is not None else float('nan'):.2f} |")
  lines.append('\nPractical matmul peak on ' + device + ': ' + ', '.join(
      f'{k} {v / 1e9:.1f} GFLOP/s' for k, v in peaks.items()) + f' ({_PEAK_N.value}^2 matmul).')
  table = '\n'.join(lines)
  with open(os.path.join(_RESULTS.value, 'model_sizes.md'), 'w') as f:
    f.write(table + '\n')
  return table


def main(argv):
  del argv
  runs = [r.split(':') for r in _RUNS.value]
  bad = [':'.join(r) for r in runs if len(r) != 3]
  if bad:
    raise app.UsageError(f'--runs entries are SIZE:COHORT:DTYPE, got {bad}')
  device = jax.devices()[0].device_kind
  peaks = {d: matmul_peak(d, _PEAK_N.value) for d in sorted({r[2] for r in runs})}
  rows = []
  for size, cohort, dtype in runs:
    row = measure(size, int(cohort), dtype, _ROUNDS.value)
    row['share_of_peak'] = row['useful_flop_per_s'] / peaks[dtype]
    print(json.dumps(row), flush=True)
    rows.append(row)
  print(write(rows, peaks, device))


if __name__ == '__main__':
  app.run(main)
