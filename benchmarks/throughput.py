r"""Client-updates per second of the default XR round against cohort size.

  python benchmarks/throughput.py                       # 16 .. 4096 clients
  python benchmarks/throughput.py --cohorts=16,256 --rounds=5 --chunk_size=64
  python benchmarks/throughput.py --chunk_size=auto --noschedule_by_budget

One warm-up round (compile) then --rounds timed rounds; the median is
reported. A client update is one local step of one client (steps past a
device's budget are not counted). Prints a table and, last, one JSON line.
"""
import json
import os
import sys
import time

from absl import app
from absl import flags
import jax
import numpy as np

from fedxr_jax.configs import default as default_config
from fedxr_jax.compose import experiment

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scheduling  # noqa: E402  pylint: disable=g-import-not-at-top

_COHORTS = flags.DEFINE_list('cohorts', ['16', '64', '256', '1024', '4096'],
                             'Cohort sizes to time.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Timed rounds per size.')
_CHUNK = flags.DEFINE_string(
    'chunk_size', 'auto', "Clients per vmapped chunk (0: whole cohort at once; 'auto': "
    'core.chunking); capped at the cohort size.')
_SCHEDULE = flags.DEFINE_bool('schedule_by_budget', True,
                              'Chunks in step-budget order (core.schedule).')


def time_cohort(cohort: int, rounds: int, chunk: str) -> dict:
  config = default_config.get_config()
  config.cohort_size = cohort
  config.population_size = max(4 * cohort, config.population_size)
  chunk = chunk if chunk == 'auto' else int(chunk) if 0 < int(chunk) < cohort else 0
  exp = scheduling.build_experiment(experiment, config, chunk_size=chunk,
                                    schedule_by_budget=_SCHEDULE.value)
  server, clients, frozen = jax.jit(exp.federation.init)(exp.world, exp.key)
  round_fn = jax.jit(exp.federation.round, donate_argnums=(0, 1))
  t0 = time.perf_counter()
  server, clients, metrics = round_fn(server, clients, frozen, exp.world,
                                     exp.plan(0)[0])
  jax.block_until_ready(metrics)
  warmup = time.perf_counter() - t0
  times, steps = [], []
  for r in range(1, rounds + 1):
    plan, _ = exp.plan(r)   # host-side, outside the timed region
    t0 = time.perf_counter()
    server, clients, metrics = round_fn(server, clients, frozen, exp.world, plan)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
    steps.append(float(metrics['train/mean_local_steps']) * cohort)
  median = float(np.median(times))
  return dict(cohort=cohort, chunk_size=exp.federation.chunk_size, warmup_s=warmup,
              schedule_by_budget=_SCHEDULE.value,
              median_s_per_round=median,
              client_updates_per_s=float(np.median(steps)) / median,
              clients_per_s=cohort / median, loss=float(metrics['train/loss']))


def main(argv):
  del argv
  results = []
  print(f'devices: {jax.devices()}')
  print(f"{'clients':>8}{'chunk':>7}{'warm-up s':>11}{'s/round':>10}"
        f"{'clients/s':>11}{'updates/s':>11}")
  for cohort in map(int, _COHORTS.value):
    r = time_cohort(cohort, _ROUNDS.value, _CHUNK.value)
    results.append(r)
    print(f"{r['cohort']:>8}{r['chunk_size']:>7}{r['warmup_s']:>11.2f}"
          f"{r['median_s_per_round']:>10.3f}{r['clients_per_s']:>11.1f}"
          f"{r['client_updates_per_s']:>11.0f}", flush=True)
  print(json.dumps({'benchmark': 'throughput', 'device': str(jax.devices()[0]),
                    'results': results}))


if __name__ == '__main__':
  app.run(main)
