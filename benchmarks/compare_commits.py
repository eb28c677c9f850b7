r"""Two source trees timed interleaved in one session: is the new one slower?

  git worktree add /tmp/old HEAD~3
  python benchmarks/compare_commits.py --old=/tmp/old --new=. --repeats=3 \
      --workloads=default,w1,w2 --out=benchmarks/results/compare_commits.json

Each repeat runs every workload once with the old tree and once with the new
(in alternating order, each in a fresh process with PYTHONPATH at its tree,
sharing the persistent XLA cache), so machine load hits both alike. A
workload's figure is its median steady-state s/round:
  default  the embedded default XR federation, 1 warm-up + --rounds timed
           rounds of the compiled round (no evaluation, no checkpoints);
  w1, w2   benchmarks/peer_workloads.py (mlp, 1024 clients, chunk 32 / lora,
           256 clients, chunk 8; 2 host devices), which also times peerbench's
           bare-jax reference in the same process.
Prints old, new and new/old per workload (median over repeats).
"""
import json
import os
import subprocess
import sys

from absl import app
from absl import flags
import numpy as np

_OLD = flags.DEFINE_string('old', None, 'Old source tree (a git worktree).')
_NEW = flags.DEFINE_string('new', '.', 'New source tree.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Interleaved repeats.')
_ROUNDS = flags.DEFINE_integer('rounds', 8, 'Timed rounds of the default run.')
_WORKLOADS = flags.DEFINE_list('workloads', ['default', 'w1', 'w2'], 'What to time.')
_OUT = flags.DEFINE_string('out', '', 'Write the results here as JSON.')

# Times the default federation's round in either API (a plan, or topo arrays).
DEFAULT_TIMER = r'''
import json, sys, time
import jax, numpy as np
from fedxr_jax.configs import default
from fedxr_jax.core import compilation_cache
try:   # the composition root moved from training/ to compose/ (issue 18)
  from fedxr_jax.compose import experiment
except ImportError:
  from fedxr_jax.training import experiment
compilation_cache.enable()
exp = experiment.build(default.get_config())
fed = exp.federation
# The seed's key became an argument of init (issue 18: the seed is data).
init_args = (exp.world, exp.key) if hasattr(exp, 'key') else (exp.world,)
server, clients, frozen = jax.jit(fed.init)(*init_args)
step = jax.jit(fed.round, donate_argnums=(0, 1))
plan = (lambda r: exp.plan(r)[0]) if hasattr(exp, 'plan') else (lambda r: exp.layout(r)[0])
times = []
for r in range(int(sys.argv[1]) + 1):
  p = plan(r)
  t0 = time.perf_counter()
  server, clients, metrics = step(server, clients, frozen, exp.world, p)
  jax.block_until_ready(metrics)
  times.append(time.perf_counter() - t0)
print(json.dumps({'median_s_per_round': float(np.median(times[1:]))}))
'''
PEER = {'w1': ['--workload=mlp', '--clients=1024', '--chunk_size=32', '--cpu_devices=2'],
        'w2': ['--workload=lora', '--clients=256', '--chunk_size=8', '--cpu_devices=2']}


def run_once(tree: str, workload: str, rounds: int) -> dict:
  env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
  if workload == 'default':
    cmd = [sys.executable, '-c', DEFAULT_TIMER, str(rounds)]
  else:
    cmd = [sys.executable, os.path.join(os.path.abspath(tree), 'benchmarks',
                                        'peer_workloads.py'), *PEER[workload]]
  out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tree, timeout=1800)
  if out.returncode:
    raise RuntimeError(f'{tree} {workload} failed:\n{out.stderr[-2000:]}')
  result = json.loads(out.stdout.strip().splitlines()[-1])
  keep = ('median_s_per_round', 'bare_jax_median_s_per_round', 'ratio_vs_bare_jax')
  return {k: result[k] for k in keep if k in result}


def main(argv):
  del argv
  trees = {'old': _OLD.value, 'new': _NEW.value}
  runs = {w: {'old': [], 'new': []} for w in _WORKLOADS.value}
  for i in range(_REPEATS.value):
    order = ('old', 'new') if i % 2 == 0 else ('new', 'old')
    for w in _WORKLOADS.value:
      for which in order:
        runs[w][which].append(run_once(trees[which], w, _ROUNDS.value))
        print(f'repeat {i} {w} {which}: {runs[w][which][-1]}', flush=True)
  summary = {}
  for w, by_tree in runs.items():
    med = {k: float(np.median([r['median_s_per_round'] for r in v])) for k, v in by_tree.items()}
    summary[w] = {'old_s_per_round': med['old'], 'new_s_per_round': med['new'],
                  'new_over_old': med['new'] / med['old'], 'runs': by_tree}
    print(f"{w}: old {med['old']:.4f} s/round, new {med['new']:.4f} s/round, "
          f"new/old {med['new'] / med['old']:.3f}")
  if _OUT.value:
    with open(_OUT.value, 'w') as f:
      json.dump(summary, f, indent=1)


if __name__ == '__main__':
  flags.mark_flag_as_required('old')
  app.run(main)
