r"""Budget-aware scheduling and chunk sizes against the current code, interleaved.

  git archive HEAD | tar -x -C /tmp/old         # the code before the change
  python benchmarks/scheduling.py --parts=xr --baseline=/tmp/old
  python benchmarks/scheduling.py --parts=peer --baseline=/tmp/old --host_devices=2
  python benchmarks/scheduling.py --parts=memory
  python benchmarks/scheduling.py --parts=table     # rewrite the markdown only

Every part merges its results into --json (benchmarks/results/scheduling.json)
and rewrites the markdown next to it (.md).
  xr      the default run and the SHIFT H presets (a deadline with 20%
          stragglers, as benchmarks/shift.py; availability): each variant is
          a compiled round, 1 warm-up then --timed_rounds rounds, round-robin
          over the variants in one process; the old tree's package is loaded
          beside the new one (`Tree`). Variants: `today` (the --baseline
          tree), `off` (new code, no scheduling, chunk 0), `chunk8_off`,
          `on_c{4,8,16}` (sorted chunks), `auto` (chunk_size='auto').
  peer    W1 (mlp, 1024 clients, chunk 32) and W2 (lora, 256, chunk 8) of
          benchmarks/peer_workloads.py: today / scheduler on / off. Their
          budgets are all equal, so scheduling skips the sort.
  memory  XLA's memory analysis: one chunk of k clients of the default model
          (bytes per client), the whole round's peak for --memory_cohorts at
          the auto chunk and at chunk 0, and what 'auto' picks.
Ratios are medians of the interleaved rounds, variant / today.
"""
import importlib
import json
import os
import sys
import time

from absl import app
from absl import flags

_PARTS = flags.DEFINE_list('parts', ['xr'], 'xr | peer | memory | table (markdown only)')
_BASELINE = flags.DEFINE_string('baseline', '', 'Source tree of the old code (no: skip `today`).')
_TIMED = flags.DEFINE_integer('timed_rounds', 8, 'Timed rounds per variant.')
_JSON = flags.DEFINE_string('json', 'benchmarks/results/scheduling.json', 'Results file.')
_HOST_DEVICES = flags.DEFINE_integer('host_devices', 1, 'peer: XLA:CPU host devices (mesh).')
_COHORTS = flags.DEFINE_list('memory_cohorts', ['32', '64', '128', '256', '512', '1024', '2048',
                                         '4096'], 'memory: cohort sizes.')
_WORKLOADS = flags.DEFINE_list('xr_workloads', ['default', 'H_deadline', 'H_availability'],
                               'xr: workloads.')
_VARIANTS = flags.DEFINE_list('xr_variants', [], 'xr: variants of the new code (default all).')
_TAG = flags.DEFINE_string('tag', '', 'Results go under PART + TAG (keeps earlier runs).')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PKG = 'fedxr_jax'


def _set_host_devices(argv):
  """--host_devices must reach XLA before jax starts."""
  for a in argv:
    if a.startswith('--host_devices=') and int(a.split('=')[1]) > 1:
      os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                                 f' --xla_force_host_platform_device_count={a.split("=")[1]}')


_set_host_devices(sys.argv)
import jax  # noqa: E402
import numpy as np  # noqa: E402
import harness  # noqa: E402


class Tree:
  """One source tree's fedxr_jax, importable beside another's in one process.

  `activate` swaps the package's modules in sys.modules; build, compile and
  make the round plans with a tree active, then its compiled rounds run
  whatever is active.
  """
  active = None

  def __init__(self, path):
    self.path, self.modules = os.path.abspath(path), None

  def activate(self):
    ours = lambda: [m for m in sys.modules if m == _PKG or m.startswith(_PKG + '.')]
    if Tree.active is not None:
      Tree.active.modules = {m: sys.modules[m] for m in ours()}
    for name in ours():
      del sys.modules[name]
    if self.modules is None:
      sys.path.insert(0, self.path)
      try:
        importlib.import_module(_PKG)
      finally:
        sys.path.remove(self.path)
    else:
      sys.modules.update(self.modules)
    Tree.active = self
    return self

  def get(self, name):
    assert Tree.active is self, 'activate the tree first'
    return importlib.import_module(name)


def build_experiment(experiment, config, **federation_kwargs):
  """experiment.build (the module's) with build_federation arguments that
  compose/experiment.py does not pass yet (schedule_by_budget,
  chunk_size='auto' and its source): drop once it does."""
  if not federation_kwargs:
    return experiment.build(config)
  round_lib, seen = experiment.round_lib, {}
  make_problem, build_federation = experiment.make_problem, round_lib.build_federation

  def capture(config):
    seen['out'] = make_problem(config)
    return seen['out']

  def build_with(*args, **kwargs):
    kwargs.update(federation_kwargs)
    if kwargs.get('chunk_size') == 'auto':
      kwargs['source'] = seen['out'][1]
    return build_federation(*args, **kwargs)

  experiment.make_problem, round_lib.build_federation = capture, build_with
  try:
    return experiment.build(config)
  finally:
    experiment.make_problem, round_lib.build_federation = make_problem, build_federation


class Runner:
  """A compiled round and its state; step(r) runs round r and returns seconds."""

  def __init__(self, fed, world, plans, frozen_state):
    self.fed, self.world, self.plans = fed, world, plans
    self.server, self.clients, self.frozen = frozen_state
    self.round = jax.jit(fed.round, donate_argnums=(0, 1))
    self.metrics, self.times = [], []

  def step(self, r):
    t = time.perf_counter()
    self.server, self.clients, m = self.round(self.server, self.clients, self.frozen,
                                              self.world, self.plans[r])
    jax.block_until_ready(m)
    seconds = time.perf_counter() - t
    self.metrics.append({k: float(v) for k, v in m.items() if np.ndim(v) == 0})
    return seconds


def xr_runner(tree, change, rounds, **federation_kwargs):
  tree.activate()
  config = tree.get(f'{_PKG}.configs.default').get_config()
  change(tree, config)
  exp = build_experiment(tree.get(f'{_PKG}.training.experiment'), config,
                         **federation_kwargs)
  plans = [exp.plan(r)[0] for r in range(rounds + 1)]
  states = jax.jit(exp.federation.init)(exp.world)
  runner = Runner(exp.federation, exp.world, plans, states)
  runner.chunk_size = getattr(exp.federation, 'chunk_size', config.chunk_size)
  return runner


def _deadline(tree, config):
  """benchmarks/shift.py's H_deadline: the Vision Pro just fits every local
  step of a model 1000x the simulated one; 20% stragglers (x4 slower)."""
  hw = config.data.hardware
  hw.model_scale, hw.straggler_prob, hw.deadline_s = 1000.0, 0.2, 1.0
  experiment = tree.get(f'{_PKG}.training.experiment')
  catalog = tree.get(f'{_PKG}.data.catalog')
  flops = experiment.make_problem(config)[0].hardware.flops_per_step
  hw.deadline_s = (1.001 * config.local_steps * hw.model_scale * flops
                   / catalog.DEVICES['apple_vision_pro'].train_flops)


def _availability(tree, config):
  del tree
  config.data.hardware.availability = True


XR_WORKLOADS = {'default': lambda tree, config: None, 'H_deadline': _deadline,
                'H_availability': _availability}
# name -> (chunk_size, federation kwargs of the new code)
XR_VARIANTS = {'off': (0, dict(schedule_by_budget=False)),
               'chunk8_off': (8, dict(schedule_by_budget=False)),
               'on_c4': (4, {}), 'on_c8': (8, {}), 'on_c16': (16, {}),
               'auto': ('auto', {})}


def interleave(runners, rounds):
  """Warm-up round 0 each, then rounds 1..R round-robin over the runners."""
  warmup = {}
  for name, r in runners.items():
    t = time.perf_counter()
    r.step(0)
    warmup[name] = time.perf_counter() - t
    print(f'  {name}: warm-up {warmup[name]:.1f} s', flush=True)
  for rnd in range(1, rounds + 1):
    for r in runners.values():
      r.times.append(r.step(rnd))
  return warmup


def max_rel_diff(a_rows, b_rows):
  """{key: max |a - b| / max(|a|, tiny)} over rounds, keys the rows share."""
  out = {}
  for a, b in zip(a_rows, b_rows):
    for k in set(a) & set(b):
      if np.isfinite(a[k]) and np.isfinite(b[k]):
        d = abs(a[k] - b[k]) / max(abs(a[k]), 1e-30)
        out[k] = max(out.get(k, 0.0), d)
  return out


def paired_ratio(times, reference_times):
  """Median of round-by-round ratios: round i of each variant ran back to back."""
  return float(np.median(np.divide(times, reference_times)))


def summarize(runners, warmup, reference):
  res = {}
  ref = runners.get(reference)
  for name, r in runners.items():
    med = float(np.median(r.times))
    res[name] = {'median_s_per_round': med, 'round_times_s': [round(t, 4) for t in r.times],
                 'warmup_s': warmup[name], 'chunk_size': getattr(r, 'chunk_size', None),
                 'loss': [m.get('train/loss') for m in r.metrics],
                 'mean_local_steps': r.metrics[-1].get('train/mean_local_steps')}
    if ref is not None:
      res[name]['ratio'] = med / float(np.median(ref.times))
      res[name]['paired_ratio'] = paired_ratio(r.times, ref.times)
      diffs = max_rel_diff(ref.metrics, r.metrics)
      res[name]['metrics_max_rel_diff'] = max(diffs.values()) if diffs else 0.0
      res[name]['metrics_differing'] = sorted(k for k, v in diffs.items() if v > 0)
  return res


def run_xr(rounds):
  new = Tree(REPO)
  old = Tree(_BASELINE.value) if _BASELINE.value else None
  results = {}
  for workload in _WORKLOADS.value:
    change = XR_WORKLOADS[workload]
    print(f'{workload}:', flush=True)
    runners = {}
    if old is not None:
      runners['today'] = xr_runner(old, change, rounds)
    for name, (chunk, kwargs) in XR_VARIANTS.items():
      if (name not in _VARIANTS.value if _VARIANTS.value else
          workload != 'default' and name in ('on_c4', 'on_c16')):
        continue   # the chunk sweep runs on the default workload only
      change_chunk = (lambda c: lambda tree, config: (change(tree, config), setattr(
          config, 'chunk_size', 0 if c == 'auto' else c)))(chunk)
      kw = dict(kwargs, chunk_size='auto') if chunk == 'auto' else kwargs
      runners[name] = xr_runner(new, change_chunk, rounds, **kw)
    warmup = interleave(runners, rounds)
    results[workload] = summarize(runners, warmup, 'today' if old else 'off')
    for name, r in results[workload].items():
      print(f"  {name:11s} {r['median_s_per_round']:.4f} s/round  ratio "
            f"{r.get('ratio', float('nan')):.3f}  max rel diff "
            f"{r.get('metrics_max_rel_diff', float('nan')):.2e}", flush=True)
  return results


def run_peer(rounds):
  sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
  import optax  # pylint: disable=g-import-not-at-top
  new = Tree(REPO).activate()
  peer = importlib.import_module('peer_workloads')
  pb = peer.import_peerbench()[1:]
  old = Tree(_BASELINE.value) if _BASELINE.value else None
  results = {}
  for name, workload, clients, chunk in (('W1', 'mlp', 1024, 32), ('W2', 'lora', 256, 8)):
    print(f'{name}:', flush=True)
    wl = peer.PeerWorkload(pb, workload, clients, 'reference')
    runners = {}
    for variant, tree, kwargs in (('today', old, {}), ('on', new, {}),
                                  ('off', new, dict(schedule_by_budget=False))):
      if tree is None:
        continue
      tree.activate()
      vectorize = tree.get(f'{_PKG}.core.vectorize')
      mesh = (vectorize.client_mesh(jax.devices()[:_HOST_DEVICES.value])
              if _HOST_DEVICES.value > 1 else None)
      topology = tree.get(f'{_PKG}.topology').make({'kind': 'centralized'}, facts=None,
                                                   geography=None, channel=None)
      w = wl.spec
      fed = tree.get(f'{_PKG}.core.round').build_federation(
          wl.problem(), wl.plan, seed=0, population_size=clients, cohort_size=clients,
          local_steps=w['steps'], batch_size=w['batch'], client_optimizer=optax.sgd(w['lr']),
          server_optimizer=optax.sgd(1.0), topology=topology, chunk_size=chunk,
          shuffle=False, mesh=mesh, **kwargs)
      plan = tree.get(f'{_PKG}.core.round_plan').RoundPlan(
          cohort=jax.numpy.arange(clients, dtype=jax.numpy.int32), topo={})
      runners[variant] = Runner(fed, wl.source, [plan] * (rounds + 1), fed.init(wl.source))
    warmup = interleave(runners, rounds)
    for r in runners.values():   # the peers' global loss after the last round
      r.metrics[-1]['global_loss'] = float(wl.global_loss({**r.frozen, **r.server.shared})[0])
    results[name] = summarize(runners, warmup, 'today' if old else 'off')
    for v, r in results[name].items():
      print(f"  {v:6s} {r['median_s_per_round']:.4f} s/round  ratio "
            f"{r.get('ratio', float('nan')):.3f}  max rel diff "
            f"{r.get('metrics_max_rel_diff', float('nan')):.2e}", flush=True)
  return {'host_devices': _HOST_DEVICES.value, **results}


def run_memory():
  tree = Tree(REPO).activate()
  chunking = tree.get(f'{_PKG}.core.chunking')
  round_lib = tree.get(f'{_PKG}.core.round')
  default = tree.get(f'{_PKG}.configs.default')

  def setup_of(exp):
    return next(c.cell_contents for c in exp.federation.round.__closure__
                if isinstance(c.cell_contents, round_lib.RoundSetup))

  experiment = tree.get(f'{_PKG}.training.experiment')
  exp = build_experiment(experiment, default.get_config())
  stage, states = setup_of(exp).stage, jax.eval_shape(exp.federation.init, exp.world)
  chunk = {k: chunking.chunk_memory(stage, states, exp.world, k) for k in (1, 2, 4, 8, 16, 32)}
  per_client = (chunk[32]['temp'] - chunk[8]['temp']) / 24
  bound_one = chunking.chunk_bytes_bound(stage, states, exp.world, 1)
  print(f'bytes per client: {per_client / 2**20:.2f} MiB (bound {bound_one / 2**20:.1f})')
  rounds = {}
  for cohort in map(int, _COHORTS.value):
    row = {}
    for label, chunk_size in (('auto', 'auto'), ('whole', 0)):
      config = default.get_config()
      config.cohort_size, config.population_size = cohort, max(4 * cohort, 500)
      t = time.perf_counter()
      e = build_experiment(experiment, config, chunk_size=chunk_size)
      s, c, f = jax.eval_shape(e.federation.init, e.world)
      spec = lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype)
      plan = jax.tree.map(spec, e.plan(0)[0])
      m = jax.jit(e.federation.round).lower(s, c, f, jax.tree.map(spec, e.world),
                                            plan).compile().memory_analysis()
      row[label] = {'chunk_size': e.federation.chunk_size,
                    'peak_bytes': m.argument_size_in_bytes + m.output_size_in_bytes
                    + m.temp_size_in_bytes - m.alias_size_in_bytes,
                    'temp_bytes': m.temp_size_in_bytes,
                    'argument_bytes': m.argument_size_in_bytes, 'compile_s':
                    time.perf_counter() - t}
      print(f"  cohort {cohort} {label} chunk {row[label]['chunk_size']}: peak "
            f"{row[label]['peak_bytes'] / 2**20:.1f} MiB", flush=True)
    gpu_budget = 139 * 2**30 - row['auto']['argument_bytes']   # an idle H200's memory
    row['auto_on_h200_would_pick'] = chunking.auto_chunk_size(
        cohort, platform='gpu', budget_bytes=gpu_budget, bound=lambda n: n * bound_one,
        measure=lambda n: chunk[1]['temp'] + per_client * (n - 1))
    rounds[str(cohort)] = row
  return {'chunk_temp_bytes': {str(k): v['temp'] for k, v in chunk.items()},
          'bytes_per_client': per_client, 'bound_bytes_per_client': bound_one,
          'cpu_free_bytes': chunking.free_bytes(jax.devices()[0]), 'rounds': rounds}


def write_markdown(results, path):
  lines = ['# Budget-aware scheduling and chunk sizes', '',
           'Generated by benchmarks/scheduling.py (see its docstring for the commands). '
           'Ratio: median s/round over `today` (the code before the change), rounds '
           'interleaved in one process; paired ratio: the median of round-by-round ratios '
           '(round i of every variant ran back to back). Max rel diff: the largest relative '
           'difference of any scalar metric of any round from `today`.', '']
  for part in sorted(results):
    if 'loadavg_start_end' in results[part]:
      load = results[part]['loadavg_start_end']
      lines.append(f'{part}: load average {load[0][0]:.1f} at the start, {load[1][0]:.1f} at '
                   f"the end (2 cores); jax {results[part]['jax']}.")
  lines.append('')
  for part in sorted(k for k in results if k.startswith(('xr', 'peer'))):
    for workload, variants in results[part].items():
      if not isinstance(variants, dict):
        continue
      ref = next(iter(variants.values()))['round_times_s']
      lines += [f'## {part}: {workload}', '',
                '| variant | chunk | s/round | ratio | paired ratio | max rel diff | warm-up s |',
                '|---|---|---|---|---|---|---|']
      for name, r in variants.items():
        lines.append(f"| {name} | {r.get('chunk_size')} | {r['median_s_per_round']:.4f} | "
                     f"{r.get('ratio', float('nan')):.3f} | "
                     f"{paired_ratio(r['round_times_s'], ref):.3f} | "
                     f"{r.get('metrics_max_rel_diff', float('nan')):.1e} | "
                     f"{r['warmup_s']:.1f} |")
      lines.append('')
  mem = results.get('memory')
  if mem:
    lines += ['## Memory (XLA memory analysis, default model)', '',
              f"One chunk: {mem['bytes_per_client'] / 2**20:.2f} MiB of temporaries per "
              f"client (bound without buffer reuse: {mem['bound_bytes_per_client'] / 2**20:.1f}"
              f" MiB); free host memory {mem['cpu_free_bytes'] / 1e9:.1f} GB.", '',
              '| cohort | auto chunk (CPU) | peak MiB | chunk 0 peak MiB | auto on an H200 |',
              '|---|---|---|---|---|']
    for cohort, row in mem['rounds'].items():
      lines.append(f"| {cohort} | {row['auto']['chunk_size']} | "
                   f"{row['auto']['peak_bytes'] / 2**20:.1f} | "
                   f"{row['whole']['peak_bytes'] / 2**20:.1f} | "
                   f"{row['auto_on_h200_would_pick']} |")
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')


def main(argv):
  del argv
  results = harness.load_results(_JSON.value, {})
  for part in _PARTS.value:
    if part == 'table':   # only rewrite the markdown
      continue
    load = os.getloadavg()
    out = {'xr': run_xr, 'peer': run_peer, 'memory': lambda _: run_memory()}[part](
        _TIMED.value)
    results[part + _TAG.value] = {**out, 'loadavg_start_end': [load, os.getloadavg()],
                     'jax': jax.__version__, 'devices': str(jax.devices())}
  os.makedirs(os.path.dirname(os.path.abspath(_JSON.value)), exist_ok=True)
  with open(_JSON.value, 'w') as f:
    json.dump(results, f, indent=1)
  write_markdown(results, os.path.splitext(_JSON.value)[0] + '.md')


if __name__ == '__main__':
  app.run(main)
