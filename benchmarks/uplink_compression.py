r"""Uplink compression and event-triggered uploads: accuracy against bits sent
(the paper's Table 7, update-frequency row).

  python benchmarks/uplink_compression.py                       # every variant, 60 rounds
  python benchmarks/uplink_compression.py --variants=none,topk_1 --rounds=10 --out=/tmp/comp

Each variant trains the default XR federation (--population users,
--cohort a round, FedAvg) with one `compression` setting, evaluating every
--eval_every rounds. Top-k, QSGD and sign keep an error-feedback residual
per client (their defaults). The event trigger uploads only when the
norm of a client's update plus what it has not sent yet reaches a
threshold T (compression.event_threshold, accumulate=True); T = C, the
median over rounds of the cohort's mean update norm that
privacy_utility.py measured on this federation (--threshold overrides),
the norm a typical upload has, so that about half are skipped (measured:
'update/event_trigger/sent').
comm/uplink_bits counts what is sent (values, indices, scales; nothing for
a skipped upload). Writes OUT/uplink_compression.{json,md,png}: accuracy
(eval/accuracy, the participants' held-out data) against cumulative
uplink bits.
"""
import json
import os
import shutil
import time

from absl import app
from absl import flags
import numpy as np

import fedxr_jax
from fedxr_jax.configs import default as default_config
from fedxr_jax.core import compilation_cache

EVENT = object()   # stands for the event threshold, set at run time

# name -> (label, compression overrides)
VARIANTS = {
    'none': ('no compression', {}),
    'topk_10': ('top-k 10%', dict(name='topk', topk=dict(fraction=0.1))),
    'topk_1': ('top-k 1%', dict(name='topk', topk=dict(fraction=0.01))),
    'qsgd_4': ('QSGD 4 bits', dict(name='qsgd', qsgd=dict(bits=4))),
    'qsgd_2': ('QSGD 2 bits', dict(name='qsgd', qsgd=dict(bits=2))),
    'sign': ('scaled sign', dict(name='sign')),
    'event': ('event trigger', dict(event_threshold=EVENT)),
    'event_topk_10': ('event trigger + top-k 10%',
                      dict(name='topk', topk=dict(fraction=0.1), event_threshold=EVENT)),
}

_ROUNDS = flags.DEFINE_integer('rounds', 60, 'Rounds per variant.')
_POPULATION = flags.DEFINE_integer('population', 500, 'Users.')
_COHORT = flags.DEFINE_integer('cohort', 32, 'Users per round.')
_EVAL_EVERY = flags.DEFINE_integer('eval_every', 10, 'Rounds between evaluations.')
_VARIANTS = flags.DEFINE_list('variants', list(VARIANTS), 'Variants to run.')
_THRESHOLD = flags.DEFINE_float('threshold', 0.0, 'Event threshold (0: the default '
                                'federation\'s C from OUT/privacy_utility.json).')
_OUT = flags.DEFINE_string('out', 'benchmarks/results', 'Results folder.')
_WORK = flags.DEFINE_string('workdir', 'runs/bench_compression', 'Run folders.')
_MERGE = flags.DEFINE_bool('merge', False, 'Keep the variants of an existing '
                           'OUT/uplink_compression.json that this call does not rerun.')


def threshold() -> float:
  if _THRESHOLD.value > 0:
    return _THRESHOLD.value
  with open(os.path.join(_OUT.value, 'privacy_utility.json')) as f:
    return json.load(f)['datasets']['default']['clip_norm']


def make_config(overrides: dict, event_threshold: float):
  config = default_config.get_config()
  config.population_size, config.cohort_size = _POPULATION.value, _COHORT.value
  config.num_rounds = config.checkpoint_every = _ROUNDS.value
  config.eval_every = _EVAL_EVERY.value
  config.eval.measure_latency = config.eval.tensorboard = config.eval.client_table = False
  config.plot = False
  for key, value in overrides.items():
    if isinstance(value, dict):
      config.compression[key].update(value)
    else:
      config.compression[key] = event_threshold if value is EVENT else value
  return config


def run_variant(name: str, event_threshold: float) -> dict:
  label, overrides = VARIANTS[name]
  config = make_config(overrides, event_threshold)
  workdir = os.path.join(_WORK.value, name)
  shutil.rmtree(workdir, ignore_errors=True)   # a fresh run, never a resume
  t0 = time.perf_counter()
  rows = fedxr_jax.run(config, workdir, progress=False)
  wall = time.perf_counter() - t0
  bits = np.cumsum([r['comm/uplink_bits'] for r in rows])
  curve = [dict(round=r['round'], uplink_bits=float(b), accuracy=r['eval/accuracy'])
           for r, b in zip(rows, bits) if r.get('eval/accuracy') is not None]
  sent = [r['update/event_trigger/sent'] for r in rows if 'update/event_trigger/sent' in r]
  last = rows[-1]
  return dict(variant=name, label=label, rounds=len(rows), accuracy=last['eval/accuracy'],
              unseen_accuracy=last.get('eval_unseen/accuracy'),
              uplink_bits=float(bits[-1]), sent_fraction=float(np.mean(sent)) if sent else 1.0,
              event_threshold=event_threshold if 'event_threshold' in overrides else None,
              curve=curve, wall_s=wall)


def write_outputs(results: list, settings: dict) -> None:
  os.makedirs(_OUT.value, exist_ok=True)
  with open(os.path.join(_OUT.value, 'uplink_compression.json'), 'w') as f:
    json.dump({'settings': settings, 'variants': results}, f, indent=2)
  base = next((r['uplink_bits'] for r in results if r['variant'] == 'none'), None)
  lines = ['| variant | accuracy | unseen acc | uplink Mbit (all rounds) | x fewer bits | '
           'uploads sent | wall s |', '|---|---|---|---|---|---|---|']
  for r in results:
    ratio = f"{base / r['uplink_bits']:.1f}" if base and r['uplink_bits'] else '-'
    lines.append(f"| {r['label']} | {r['accuracy']:.3f} | {r['unseen_accuracy']:.3f} | "
                 f"{r['uplink_bits'] / 1e6:.1f} | {ratio} | {r['sent_fraction']:.2f} | "
                 f"{r['wall_s']:.0f} |")
  s = settings
  lines += ['', f"The default federation: {s['population']} users, {s['cohort']} a round, "
            f"{s['rounds']} rounds, FedAvg. Accuracy: mean over tasks on held-out data of the "
            f"last round's participants; unseen: users outside the population. Event "
            f"threshold {s['event_threshold']:.3g} (C of privacy_utility.py: median over rounds of the cohort's mean update norm); uploads sent: "
            "share of the cohort's uploads the trigger let through. Top-k / QSGD / sign with "
            "error feedback; bits as comm/uplink_bits counts them."]
  text = '\n'.join(lines)
  with open(os.path.join(_OUT.value, 'uplink_compression.md'), 'w') as f:
    f.write(text + '\n')
  print(text)

  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for r in results:
    xs = [p['uplink_bits'] for p in r['curve']]
    ax.plot(xs, [p['accuracy'] for p in r['curve']], 'o-', ms=3, label=r['label'])
  ax.set(xscale='log', xlabel='cumulative uplink bits (all clients)',
         ylabel='accuracy (participants)',
         title=f"Compression on the default federation, {s['rounds']} rounds")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(_OUT.value, 'uplink_compression.png'), dpi=100)


def main(argv):
  del argv
  compilation_cache.enable()
  unknown = sorted(set(_VARIANTS.value) - set(VARIANTS))
  if unknown:
    raise app.UsageError(f'unknown variants {unknown}; known: {list(VARIANTS)}')
  event_threshold = threshold()
  results = []
  path = os.path.join(_OUT.value, 'uplink_compression.json')
  if _MERGE.value and os.path.exists(path):
    with open(path) as f:
      results = [r for r in json.load(f)['variants'] if r['variant'] not in _VARIANTS.value]
  for name in _VARIANTS.value:
    r = run_variant(name, event_threshold)
    print(json.dumps({k: v for k, v in r.items() if k != 'curve'}), flush=True)
    results.append(r)
  order = list(VARIANTS)
  settings = dict(population=_POPULATION.value, cohort=_COHORT.value, rounds=_ROUNDS.value,
                  eval_every=_EVAL_EVERY.value, event_threshold=event_threshold)
  write_outputs(sorted(results, key=lambda r: order.index(r['variant'])), settings)


if __name__ == '__main__':
  app.run(main)
