r"""The accelerator check: throughput at scale, share of peak, W1/W2, sharding.

  python benchmarks/gpu_check.py --out=gpu_check.json            # on a GPU machine
  python benchmarks/gpu_check.py --dry_run --out=/tmp/dry.json   # anywhere, in seconds

(scripts/gpu_check.sh installs `.[cuda]` and runs this.) Steps, each timed
and recorded, each skipped with a reason where it cannot run:
  1. devices and their kinds;
  2. a pretrained base (fedxr-pretrain, a short run) for the LoRA model;
  3. the default XR round (LoRA + prompts over the frozen pretrained base) at
     cohorts 256..16384 (chunked, one warm-up + timed rounds): s/round,
     client-updates/s, and the share of the chip's peak: useful FLOPs per
     round (sum over clients of executed local steps x the plan's FLOPs per
     step from XLA's cost analysis) / s / the device's dense peak;
  4. m3t-small and m3t-base with LoRA (benchmarks/model_sizes.py) at cohorts
     256..16384 (small) and 256 (base), chunked, float32 and bfloat16:
     client-updates/s, memory per client, share of the device's measured
     matmul peak in that dtype;
  5. the peer workloads W1 (mlp, 1024 clients) and W2 (lora, 256) against
     bare-jax in the same process (benchmarks/peer_workloads.py);
  6. with 2 or more devices: a 2-device sharded round equals the 1-device
     round (float32 rounding).
Target on one H100/H200: >= 10^4 clients per round at >= 20% of peak.
"""
import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags
import numpy as np

_OUT = flags.DEFINE_string('out', 'gpu_check.json', 'Where the JSON goes.')
_DRY_RUN = flags.DEFINE_bool('dry_run', False, 'Tiny sizes on any machine (tests the script).')
_COHORTS = flags.DEFINE_list('cohorts', ['256', '1024', '4096', '16384'], 'Cohorts to time.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Timed rounds per cohort.')
_CHUNK = flags.DEFINE_integer('chunk_size', 1024, 'Clients per vmapped chunk.')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Dense peaks (FLOP/s) by device kind: TF32 tensor cores are what XLA uses
# for float32 matmuls at default precision on these chips; bf16 for reference.
PEAKS = {'H100': {'tf32': 494.7e12, 'bf16': 989.4e12, 'fp32': 66.9e12},
         'H200': {'tf32': 494.7e12, 'bf16': 989.4e12, 'fp32': 66.9e12},
         'A100': {'tf32': 156e12, 'bf16': 312e12, 'fp32': 19.5e12}}


def peak_of(kind: str):
  return next((v for k, v in PEAKS.items() if k in kind.upper()), None)


def step(name, fn, results):
  t0 = time.perf_counter()
  try:
    results[name] = fn()
  except Exception as e:  # pylint: disable=broad-except
    results[name] = {'error': f'{type(e).__name__}: {str(e).splitlines()[0][:300]}'}
  results[name + '_s'] = round(time.perf_counter() - t0, 2)
  print(f'{name}: {json.dumps(results[name])[:400]}', flush=True)


def devices():
  import jax   # pylint: disable=g-import-not-at-top
  return {'platform': jax.devices()[0].platform, 'kind': jax.devices()[0].device_kind,
          'count': jax.device_count(), 'jax': jax.__version__}


def pretrain(dry_run: bool):
  if dry_run:
    return {'skipped': 'dry run: the random frozen base (same FLOPs as a pretrained one)'}
  out = os.path.join(REPO, 'runs', 'gpu_check_pretrained')
  cmd = [sys.executable, '-m', 'fedxr_jax.cli.pretrain', f'--output_dir={out}',
         '--steps=300', '--overwrite']
  done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  if done.returncode:
    raise RuntimeError(done.stderr.strip().splitlines()[-1])
  return {'output_dir': out}


def throughput(cohorts, rounds, chunk, pretrained):
  import jax   # pylint: disable=g-import-not-at-top
  from fedxr_jax.configs import default   # pylint: disable=g-import-not-at-top
  from fedxr_jax.compose import experiment   # pylint: disable=g-import-not-at-top
  peak = peak_of(jax.devices()[0].device_kind)
  rows = []
  for cohort in cohorts:
    config = default.get_config()
    config.cohort_size, config.population_size = cohort, max(4 * cohort, 500)
    config.chunk_size = chunk if 0 < chunk < cohort else 0
    if pretrained:
      config.model.pretrained = pretrained
    exp = experiment.build(config)
    fed = exp.federation
    server, clients, frozen = jax.jit(fed.init)(exp.world, exp.key)
    run = jax.jit(fed.round, donate_argnums=(0, 1))
    times, updates = [], []
    for r in range(rounds + 1):
      plan, _ = exp.plan(r)
      t0 = time.perf_counter()
      server, clients, metrics = run(server, clients, frozen, exp.world, plan)
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - t0)
      updates.append(float(metrics['train/mean_local_steps']) * cohort)
    s = float(np.median(times[1:]))
    flops = float(np.median(updates[1:])) * exp.costs.flops_per_step
    row = {'cohort': cohort, 'chunk_size': config.chunk_size, 'warmup_s': times[0],
           's_per_round': s, 'client_updates_per_s': float(np.median(updates[1:])) / s,
           'useful_tflop_per_s': flops / s / 1e12}
    if peak:
      row.update({f'share_of_{k}_peak': flops / s / v for k, v in peak.items()})
    rows.append(row)
    print(f'  cohort {cohort}: {json.dumps(row)}', flush=True)
  return rows


# SIZE:COHORT:DTYPE runs of step 4 (dry run: the sizes at a cohort of 2, one dtype each).
SIZES = [f'{s}:{c}:{d}' for s, cohorts in (('small', (256, 1024, 4096, 16384)),
                                          ('base', (256,)))
         for c in cohorts for d in ('bfloat16', 'float32')]
SIZES_DRY = ['small:2:bfloat16', 'base:2:bfloat16']


def sizes(dry_run: bool, chunk: int):
  out = f'/tmp/gpu_check_sizes_{os.getpid()}'
  args = [f"--runs={','.join(SIZES_DRY if dry_run else SIZES)}", f'--chunk_size={chunk}',
          f'--rounds={1 if dry_run else 2}', f'--results={out}',
          f'--peak_n={256 if dry_run else 8192}']
  done = subprocess.run([sys.executable, os.path.join(REPO, 'benchmarks', 'model_sizes.py'),
                         *args], cwd=REPO, capture_output=True, text=True, timeout=3000)
  if done.returncode:
    raise RuntimeError(done.stderr.strip().splitlines()[-1])
  with open(os.path.join(out, 'model_sizes.json')) as f:
    return json.load(f)


def peer(workload, clients, chunk, dry_run):
  args = [f'--workload={workload}', f'--clients={clients}', f'--chunk_size={chunk}',
          f'--rounds={1 if dry_run else 5}']
  done = subprocess.run([sys.executable, os.path.join(REPO, 'benchmarks', 'peer_workloads.py'),
                         *args], cwd=REPO, capture_output=True, text=True, timeout=900)
  if done.returncode:
    raise RuntimeError(done.stderr.strip().splitlines()[-1])
  result = json.loads(done.stdout.strip().splitlines()[-1])
  return {k: result.get(k) for k in ('median_s_per_round', 'bare_jax_median_s_per_round',
                                     'ratio_vs_bare_jax', 'client_updates_per_s',
                                     'max_loss_diff_vs_bare_jax')}


SHARDING = r'''
import sys, jax, numpy as np
sys.path.insert(0, 'tests')
from helpers import run_rounds
from fedxr_jax.configs import test as test_config
from fedxr_jax.compose import experiment
server, _, _ = run_rounds(experiment.build(test_config.get_config()), 2)
leaves = jax.tree_util.tree_leaves_with_path(server.shared)
np.savez(sys.argv[1], **{jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves})
print(jax.device_count())
'''


def sharding():
  import jax   # pylint: disable=g-import-not-at-top
  if jax.device_count() < 2:
    return {'skipped': f'{jax.device_count()} device: needs 2'}
  out = {}
  for n in (1, 2):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=','.join(map(str, range(n))))
    path = f'/tmp/gpu_check_shard{n}.npz'
    done = subprocess.run([sys.executable, '-c', SHARDING, path], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode:
      raise RuntimeError(done.stderr.strip().splitlines()[-1])
    out[n] = np.load(path)
  diff = max(float(np.max(np.abs(out[1][k] - out[2][k]))) for k in out[1].files)
  return {'max_abs_diff_1_vs_2_devices': diff, 'equal_to_float32_rounding': diff < 1e-5}


def main(argv):
  del argv
  from fedxr_jax.core import compilation_cache   # pylint: disable=g-import-not-at-top
  compilation_cache.enable()
  dry = _DRY_RUN.value
  cohorts = [16, 32] if dry else [int(c) for c in _COHORTS.value]
  rounds = 1 if dry else _ROUNDS.value
  results = {'dry_run': dry}
  step('devices', devices, results)
  step('pretrain', lambda: pretrain(dry), results)
  pretrained = results['pretrain'].get('output_dir')
  step('throughput', lambda: throughput(cohorts, rounds, 8 if dry else _CHUNK.value,
                                        pretrained), results)
  step('sizes', lambda: sizes(dry, 8 if dry else _CHUNK.value), results)
  step('w1', lambda: peer('mlp', 64 if dry else 1024, 0 if dry else 128, dry), results)
  step('w2', lambda: peer('lora', 16 if dry else 256, 0 if dry else 64, dry), results)
  step('sharding', sharding, results)
  with open(_OUT.value, 'w') as f:
    json.dump(results, f, indent=1)
  print(f'wrote {_OUT.value}')


if __name__ == '__main__':
  app.run(main)
