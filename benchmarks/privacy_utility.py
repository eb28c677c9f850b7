r"""Client-level DP's privacy-utility trade-off (the paper's Table 7, privacy row).

  python benchmarks/privacy_utility.py                        # default + HAPT, eps 1..inf
  python benchmarks/privacy_utility.py --datasets=default --eps=4,inf --rounds=10

Per dataset (the default XR federation: 500 users, 32 a round, 60 rounds;
UCI HAPT: 25 users, 10 a round, 60 rounds) one calibration run and one run
per epsilon. The calibration run clips at an unreachable norm
(privacy.mode=client, clip_norm=1e6: nothing clipped, no noise) to read
the clients' update norms ('update/clip/norm': the cohort's mean pre-clip
L2 norm over all shared trees, per round); C = their median over rounds,
so about half the updates are clipped at the start (Andrew et al. 2021
aim adaptive clipping at the median). Each epsilon then runs DP-FedAvg
(privacy.target_epsilon=eps, delta=1e-5, clip_norm=C; the accountant
calibrates sigma for the run's rounds, cohort and population); inf is the
plain run without DP. Reports the last round's accuracy (eval/accuracy:
held-out data of its participants; eval_unseen/accuracy: new users), the
noise multiplier, the epsilon spent, and the membership-inference AUC the
evaluation logs (privacy/mia_auc: loss-threshold attack at the final
model on the fixed panel's users that trained, their training examples vs
their own held-out ones; 0.5 = no leakage). Writes
OUT/privacy_utility.{json,md,png}.
"""
import json
import math
import os
import shutil
import time

from absl import app
from absl import flags
import numpy as np

import fedxr_jax
from fedxr_jax.configs import default as default_config
from fedxr_jax.configs.real import hapt as hapt_config
from fedxr_jax.core import compilation_cache
from fedxr_jax.compose import pipeline

_DATASETS = flags.DEFINE_list('datasets', ['default', 'hapt'], 'Federations to run.')
_EPS = flags.DEFINE_list('eps', ['1', '2', '4', '8', 'inf'], 'Epsilons (inf: no DP).')
_ROUNDS = flags.DEFINE_integer('rounds', 0, 'Rounds (0: the config\'s).')
_POPULATION = flags.DEFINE_integer('population', 0, 'Population of the default '
                                   'federation (0: the config\'s; HAPT has its 25 users).')
_COHORT = flags.DEFINE_integer('cohort', 0, 'Cohort size of the default federation (0: '
                               'the config\'s).')
_DELTA = flags.DEFINE_float('delta', 1e-5, 'DP delta.')
_OUT = flags.DEFINE_string('out', 'benchmarks/results', 'Results folder.')
_WORK = flags.DEFINE_string('workdir', 'runs/bench_privacy_utility', 'Run folders.')
_REPLOT = flags.DEFINE_bool('replot', False, 'Only redraw from OUT/privacy_utility.json.')

DATASETS = {'default': default_config.get_config, 'hapt': hapt_config.get_config}


def make_config(dataset: str):
  config = DATASETS[dataset]()
  config.num_rounds = _ROUNDS.value or config.num_rounds
  if dataset == 'default':
    config.population_size = _POPULATION.value or config.population_size
    config.cohort_size = _COHORT.value or config.cohort_size
  config.eval_every = config.checkpoint_every = config.num_rounds
  config.eval.panel_size = min(config.eval.panel_size, config.population_size)
  config.eval.measure_latency = config.eval.tensorboard = config.eval.client_table = False
  config.plot = False
  return config


def train(config, name: str) -> tuple:
  workdir = os.path.join(_WORK.value, name)
  shutil.rmtree(workdir, ignore_errors=True)   # a fresh run, never a resume
  t0 = time.perf_counter()
  rows = fedxr_jax.run(config, workdir, progress=False)
  return rows, time.perf_counter() - t0


def clip_norm(dataset: str) -> dict:
  """The calibration run: clients' update norms, nothing clipped, no noise."""
  config = make_config(dataset)
  config.privacy.mode, config.privacy.clip_norm = 'client', 1e6
  rows, wall = train(config, f'{dataset}/calibrate')
  norms = [r['update/clip/norm'] for r in rows]
  return dict(clip_norm=float(np.median(norms)), norm_first=norms[0], norm_last=norms[-1],
              norm_min=float(np.min(norms)), norm_max=float(np.max(norms)),
              calibration_accuracy=rows[-1]['eval/accuracy'], calibration_wall_s=wall)


def run_eps(dataset: str, eps: float, c: float) -> dict:
  config = make_config(dataset)
  if math.isfinite(eps):
    config.privacy.target_epsilon, config.privacy.delta = eps, _DELTA.value
    config.privacy.clip_norm = c
  privacy = pipeline.make_privacy(config)   # the sigma the run's pipeline calibrates
  rows, wall = train(config, f'{dataset}/eps_{eps:g}')
  last = rows[-1]
  mean = lambda key: (float(np.mean([r[key] for r in rows])) if key in last else None)
  return dict(
      dataset=dataset, eps=eps if math.isfinite(eps) else None, rounds=len(rows),
      accuracy=last['eval/accuracy'], unseen_accuracy=last.get('eval_unseen/accuracy'),
      mia_auc=last.get('privacy/mia_auc'),
      noise_multiplier=privacy.noise_multiplier if privacy else 0.0,
      epsilon_spent=(privacy.epsilon_per_round[-1] if privacy and privacy.epsilon_per_round
                     else None),
      clip_norm=c if privacy else None, clipped_fraction=mean('update/clip/clipped'),
      wall_s=wall)


def write_outputs(results: dict) -> None:
  os.makedirs(_OUT.value, exist_ok=True)
  with open(os.path.join(_OUT.value, 'privacy_utility.json'), 'w') as f:
    json.dump(results, f, indent=2)
  fmt = lambda v, spec='.3f': '-' if v is None else format(v, spec)
  lines = ['| dataset | epsilon | noise multiplier | accuracy | unseen acc | MIA AUC | '
           'clipped share | wall s |', '|---|---|---|---|---|---|---|---|']
  notes = []
  for name, d in results['datasets'].items():
    for r in d['runs']:
      lines.append(f"| {name} | {fmt(r['eps'], 'g') if r['eps'] else 'inf (no DP)'} | "
                   f"{fmt(r['noise_multiplier'])} | {fmt(r['accuracy'])} | "
                   f"{fmt(r['unseen_accuracy'])} | {fmt(r['mia_auc'])} | "
                   f"{fmt(r['clipped_fraction'], '.2f')} | {r['wall_s']:.0f} |")
    s = d['settings']
    notes.append(
        f"{name}: {s['population']} users, {s['cohort']} a round, {s['rounds']} rounds; "
        f"C = {d['clip_norm']:.3g} = median over rounds of the mean update norm of a "
        f"no-clip run ({d['norm_min']:.3g}..{d['norm_max']:.3g}; round 1 "
        f"{d['norm_first']:.3g}, last {d['norm_last']:.3g}); that run's accuracy "
        f"{d['calibration_accuracy']:.3f} (DP's uniform weights, nothing clipped).")
  lines += [''] + notes + [
      '', f"Client-level DP-FedAvg, delta={_DELTA.value:g}, sigma calibrated by the RDP "
      "accountant for fixed-size cohorts. Accuracy: mean over tasks on held-out data of the "
      "last round's participants; unseen: users outside the population. MIA AUC: "
      "loss-threshold attack at the final model, training vs held-out examples of the "
      "panel users that trained (privacy/mia_auc). Clipped share: mean over rounds of the "
      "cohort share clipped."]
  text = '\n'.join(lines)
  with open(os.path.join(_OUT.value, 'privacy_utility.md'), 'w') as f:
    f.write(text + '\n')
  print(text)

  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for name, d in results['datasets'].items():
    runs = d['runs']
    finite = [r['eps'] for r in runs if r['eps']]
    inf_x = 2 * max(finite) if finite else 16.0   # 'inf' drawn right of the largest eps
    xs = [r['eps'] or inf_x for r in runs]
    for ax, key in ((axes[0], 'accuracy'), (axes[1], 'mia_auc')):
      ys = [r[key] if r[key] is not None else np.nan for r in runs]
      ax.plot(xs, ys, 'o-', label=name)
  ticks = sorted({r['eps'] for d in results['datasets'].values() for r in d['runs']
                  if r['eps']})
  for ax, label in ((axes[0], 'accuracy (participants)'), (axes[1], 'MIA AUC (loss threshold)')):
    ax.set(xscale='log', xlabel='epsilon', ylabel=label)
    ax.set_xticks(ticks + [inf_x], [f'{t:g}' for t in ticks] + ['inf\n(no DP)'])
    ax.minorticks_off()
    ax.legend()
  axes[1].axhline(0.5, color='gray', lw=0.8, ls='--')
  fig.suptitle(f'Client-level DP, delta={_DELTA.value:g}')
  fig.tight_layout()
  fig.savefig(os.path.join(_OUT.value, 'privacy_utility.png'), dpi=100)


def main(argv):
  del argv
  if _REPLOT.value:
    with open(os.path.join(_OUT.value, 'privacy_utility.json')) as f:
      return write_outputs(json.load(f))
  compilation_cache.enable()
  unknown = sorted(set(_DATASETS.value) - set(DATASETS))
  if unknown:
    raise app.UsageError(f'unknown datasets {unknown}; known: {list(DATASETS)}')
  epsilons = sorted((float(e) for e in _EPS.value), key=lambda e: (math.isinf(e), e))
  results = {'delta': _DELTA.value, 'datasets': {}}
  for name in _DATASETS.value:
    config = make_config(name)
    d = clip_norm(name)
    d['settings'] = dict(population=config.population_size, cohort=config.cohort_size,
                         rounds=config.num_rounds)
    d['runs'] = []
    for eps in epsilons:
      r = run_eps(name, eps, d['clip_norm'])
      print(json.dumps(r), flush=True)
      d['runs'].append(r)
    results['datasets'][name] = d
  write_outputs(results)


if __name__ == '__main__':
  app.run(main)
