r"""What generating the primitives world's data costs, as a share of a round.

  python benchmarks/world_generation.py                      # the default world round
  python benchmarks/world_generation.py --cohorts=32,256 --repeats=7 --sizes=tiny,small

The world renders every client's examples on device inside the round
(deterministic from (seed, user, round)). For each (model size, cohort) this
times, interleaved in one session, the jitted round of the default world
federation (`data.source=world`, all its local steps, aggregation and
transforms) and the jitted generation alone: the cohort's training data for
one round (`problem.client_data(world, id, 'train', round)`, vmapped over the
cohort, the same call the round makes), each at a new round index (the round's
own keys). Reports the medians and generation / round; the issue's bound is
15%. Writes RESULTS/world_generation.json and .md.
"""
import json
import os
import platform
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.compose import experiment
from fedxr_jax.configs import default as default_config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  pylint: disable=g-import-not-at-top

_COHORTS = flags.DEFINE_list('cohorts', ['32'], 'Cohort sizes (32: the default round).')
_SIZES = flags.DEFINE_list('sizes', ['tiny'], 'M3T sizes (the world renders at '
                           'data.world.image_size, 16 px by default, whatever the size).')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed repeats of each (median reported).')
_RESULTS = flags.DEFINE_string('results', 'benchmarks/results', 'Where the results go.')
_NOTE = flags.DEFINE_string('note', '', 'A line for the markdown (e.g. the machine load).')

BOUND = 0.15


def _timed(fn, *args) -> float:
  t0 = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - t0


def measure(size: str, cohort: int, repeats: int) -> dict:
  config = default_config.get_config()
  config.data.source = 'world'
  config.model.m3t.size = size
  config.cohort_size = cohort
  config.population_size = max(config.population_size, 4 * cohort)
  exp = experiment.build(config)
  server, clients, frozen = jax.jit(exp.federation.init)(exp.world, exp.key)
  round_fn = jax.jit(exp.federation.round, donate_argnums=(0, 1))
  generate = jax.jit(jax.vmap(
      lambda c, r: exp.problem.client_data(exp.world, c, 'train', r), in_axes=(0, None)))
  plan, _ = exp.plan(0)
  ids = jnp.asarray(plan.cohort, jnp.int32)
  server, clients, metrics = round_fn(server, clients, frozen, exp.world, plan)   # compile
  jax.block_until_ready(metrics)
  examples = jax.block_until_ready(generate(ids, jnp.int32(0)))['examples']['example_mask'].shape[1]
  rounds, gens = [], []
  for r in range(1, repeats + 1):   # interleaved: the machine's load hits both alike
    plan, _ = exp.plan(r)
    t0 = time.perf_counter()
    server, clients, metrics = round_fn(server, clients, frozen, exp.world, plan)
    jax.block_until_ready(metrics)
    rounds.append(time.perf_counter() - t0)
    gens.append(_timed(generate, ids, jnp.int32(r)))
  round_s, gen_s = float(np.median(rounds)), float(np.median(gens))
  return {'size': size, 'cohort': cohort, 'round_s': round_s, 'generation_s': gen_s,
          'share': gen_s / round_s, 'rounds_s': rounds, 'generations_s': gens,
          'examples_per_client': int(examples), 'image_size': int(exp.spec.image_size)}


def write_table(results: dict, path: str) -> None:
  lines = ['# Generating the primitives world, as a share of a round', '',
           f"{results['machine']}; `python benchmarks/world_generation.py "
           f"{results['args']}`; medians of {results['repeats']} interleaved repeats "
           f'(bound: {100 * BOUND:.0f}% of a default round).', '',
           '| model | image px | cohort | examples a client | round (s) | generation (s) | '
           'generation / round |',
           '|---|---|---|---|---|---|---|']
  for r in results['rows']:
    lines.append(f"| m3t-{r['size']} | {r['image_size']} | {r['cohort']} | "
                 f"{r['examples_per_client']} | {r['round_s']:.4f} | "
                 f"{r['generation_s']:.4f} | **{100 * r['share']:.1f}%** |")
  harness.write_markdown(path, lines, results.get('note', ''))


def main(argv):
  del argv
  rows = [measure(size, int(c), _REPEATS.value) for size in _SIZES.value for c in _COHORTS.value]
  results = {'rows': rows, 'repeats': _REPEATS.value, 'note': _NOTE.value,
             'args': ' '.join(sys.argv[1:]),
             'machine': f'{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})'
                        f', {jax.devices()[0].platform}'}
  os.makedirs(_RESULTS.value, exist_ok=True)
  path = os.path.join(_RESULTS.value, 'world_generation.json')
  with open(path, 'w') as f:
    json.dump(results, f, indent=2)
  write_table(results, os.path.splitext(path)[0] + '.md')
  print(open(os.path.splitext(path)[0] + '.md').read())


if __name__ == '__main__':
  app.run(main)
