r"""Gossip (D-PSGD) at population scale: every device keeps its own model.

  python benchmarks/gossip_scale.py --population=100000 --cohort=64 --rounds=3

The default XR model and data, topology.kind=decentralized with a geometric
D2D graph over each round's cohort: the population's models are stacked
(population x the shared trees), a round gathers the cohort's, trains and
gossips them, and scatters them back. Reports the bytes of the stacked
models, peak RSS, and s/round (median after one warm-up round) against a
population equal to the cohort. Writes OUT/gossip_scale.json.
"""
import json
import os
import resource
import time

from absl import app
from absl import flags
import jax
import numpy as np

from fedxr_jax.configs import default
from fedxr_jax.core import compilation_cache
from fedxr_jax.core import trees
from fedxr_jax.compose import experiment

_POPULATION = flags.DEFINE_integer('population', 100_000, 'Devices, each with its model.')
_COHORT = flags.DEFINE_integer('cohort', 64, 'Devices training per round.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Timed rounds (after one warm-up).')
_OUT = flags.DEFINE_string('out', 'benchmarks/results', 'Output folder.')


def time_rounds(population: int, cohort: int, rounds: int) -> dict:
  config = default.get_config()
  config.population_size, config.cohort_size = population, cohort
  config.topology.kind = 'decentralized'
  exp = experiment.build(config)
  fed = exp.federation
  server, clients, frozen = jax.jit(fed.init)(exp.world, exp.key)
  models_bytes = trees.tree_bytes(jax.tree.map(lambda x: x[0], server.topology['models']))
  step = jax.jit(fed.round, donate_argnums=(0, 1))
  times = []
  for r in range(rounds + 1):
    plan, _ = exp.plan(r)
    t0 = time.perf_counter()
    server, clients, metrics = step(server, clients, frozen, exp.world, plan)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  return {'population': population, 'cohort': cohort,
          'model_bytes_per_device': models_bytes,
          'stacked_models_bytes': models_bytes * population,
          'warmup_s': times[0], 's_per_round': float(np.median(times[1:])),
          'train_loss': float(metrics['train/loss']),
          'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv):
  del argv
  compilation_cache.enable()
  small = time_rounds(_COHORT.value, _COHORT.value, _ROUNDS.value)
  large = time_rounds(_POPULATION.value, _COHORT.value, _ROUNDS.value)
  result = {'cohort_only': small, 'population': large,
            'ratio_s_per_round': large['s_per_round'] / small['s_per_round']}
  os.makedirs(_OUT.value, exist_ok=True)
  with open(os.path.join(_OUT.value, 'gossip_scale.json'), 'w') as f:
    json.dump(result, f, indent=1)
  print(json.dumps(result))


if __name__ == '__main__':
  app.run(main)
