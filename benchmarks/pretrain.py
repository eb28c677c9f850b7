r"""Federated PEFT from a pretrained base against from scratch, at equal rounds.

  python benchmarks/pretrain.py                         # default federation, 60 rounds
  python benchmarks/pretrain.py --rounds=20 --pretrain_steps=300 --out=/tmp/pt

Pretrains the M3T model once on the public split (users outside the
federation, fedxr-pretrain), then trains the default XR federation from
  pretrained       base frozen + encoders from the checkpoint (the default
                   model.pretrained_roles); LoRA, prompts, heads fresh;
  pretrained_base  only the frozen base from the checkpoint;
  other_world_base only a frozen base pretrained on another synthetic world
                   (seed + 1: other class signatures and user styles), a
                   transfer test;
  scratch_frozen   a random frozen base (PEFT of an untrained network);
  scratch_shared   a random base trained federatedly too (full tuning),
with the same seed, rounds and cohorts. Reports per-task accuracy on held-out
data of participants and of unseen users, trainable parameters and uplink.
Writes RESULTS/pretrain.json and RESULTS/pretrain.md.
"""
import json
import os
import shutil
import time

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np

from fedxr_jax.configs import default as default_config
from fedxr_jax.compose import experiment
from fedxr_jax.training import loop
from fedxr_jax.training import pretrain

_ROUNDS = flags.DEFINE_integer('rounds', 60, 'Federated rounds per variant.')
_PRETRAIN_STEPS = flags.DEFINE_integer('pretrain_steps', 1000, 'Central adam steps.')
_PUBLIC_CLIENTS = flags.DEFINE_integer('public_clients', 512, 'Public users.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 64, 'Pretraining batch.')
_LEARNING_RATE = flags.DEFINE_float('learning_rate', 3e-3, 'Pretraining peak rate.')
_VARIANTS = flags.DEFINE_list(
    'variants', ['pretrained', 'pretrained_base', 'other_world_base', 'scratch_frozen',
                 'scratch_shared'],
    'Variants to train.')
_OUT = flags.DEFINE_string('out', 'runs/bench_pretrain',
                           'Work folder (checkpoint and runs; replaced).')
_RESULTS = flags.DEFINE_string('results', 'benchmarks/results',
                               'Where pretrain.{json,md} go.')

DESCRIPTIONS = {
    'pretrained': 'pretrained base (frozen) + encoders',
    'pretrained_base': 'pretrained base (frozen) only',
    'other_world_base': 'base (frozen) pretrained on another world',
    'scratch_frozen': 'random base (frozen)',
    'scratch_shared': 'random base, trained federatedly',
}


def make_config(variant: str, checkpoints: dict):
  config = default_config.get_config()
  config.num_rounds = config.checkpoint_every = _ROUNDS.value
  config.plot = False
  if variant == 'pretrained':
    config.model.pretrained = checkpoints['same']
    config.model.pretrained_roles = ('base', 'encoders')
  if variant in ('pretrained_base', 'other_world_base'):
    config.model.pretrained = checkpoints[
        'same' if variant == 'pretrained_base' else 'other']
    config.model.pretrained_roles = ('base',)
  if variant == 'scratch_shared':
    config.plan.base = 'shared'
  return config


def trainable_params(config) -> int:
  """Parameters a client trains: shared trees + its personal trees."""
  exp = experiment.build(config)
  server, clients, _ = jax.eval_shape(exp.federation.init, exp.world, exp.key)
  size = lambda tree: int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))
  return size(server.shared) + size(clients.personal) // config.population_size


def train(variant: str, checkpoints: dict, tasks) -> dict:
  config = make_config(variant, checkpoints)
  workdir = os.path.join(_OUT.value, 'runs', variant)
  t0 = time.perf_counter()
  rows = loop.run(config, workdir, progress=False)
  wall = time.perf_counter() - t0
  last = rows[-1]
  return dict(
      variant=variant, description=DESCRIPTIONS[variant], rounds=len(rows),
      trainable_params=trainable_params(config),
      accuracy={t: last[f'eval/{t}/accuracy'] for t in tasks},
      mean_accuracy=last['eval/accuracy'],
      unseen_accuracy={t: last[f'eval_unseen/{t}/accuracy'] for t in tasks},
      unseen_mean_accuracy=last['eval_unseen/accuracy'],
      curve={r['round']: r['eval/accuracy'] for r in rows if 'eval/accuracy' in r},
      uplink_mbit=sum(r['comm/uplink_bits'] for r in rows) / 1e6,
      final_train_loss=last['train/loss'], wall_s=wall)


def write_outputs(meta: dict, results: list, tasks) -> str:
  os.makedirs(_RESULTS.value, exist_ok=True)
  with open(os.path.join(_RESULTS.value, 'pretrain.json'), 'w') as f:
    json.dump({'pretraining': meta, 'results': results}, f, indent=2)
  head = ' | '.join(tasks)
  lines = [f'| variant | trainable params | {head} | mean | unseen {head} | unseen mean '
           '| uplink Mbit | wall s |',
           '|---|---|' + '---|' * (2 * len(tasks) + 4)]
  for r in results:
    accs = ' | '.join(f"{r['accuracy'][t]:.3f}" for t in tasks)
    unseen = ' | '.join(f"{r['unseen_accuracy'][t]:.3f}" for t in tasks)
    lines.append(f"| {r['variant']}: {r['description']} | {r['trainable_params']:,} | "
                 f"{accs} | **{r['mean_accuracy']:.3f}** | {unseen} | "
                 f"**{r['unseen_mean_accuracy']:.3f}** | {r['uplink_mbit']:.0f} | "
                 f"{r['wall_s']:.0f} |")
  rounds = sorted({int(k) for r in results for k in r['curve']})
  lines += ['', '| mean accuracy (participants) at round | ' +
            ' | '.join(map(str, rounds)) + ' |', '|---|' + '---|' * len(rounds)]
  for r in results:
    curve = {int(k): v for k, v in r['curve'].items()}
    lines.append(f"| {r['variant']} | " +
                 ' | '.join(f'{curve[k]:.3f}' if k in curve else '-' for k in rounds) + ' |')
  pub = ', '.join(f'{t} {a:.3f}' for t, a in meta['public_accuracy'].items())
  lines += ['', f"Pretraining: {meta['steps']} adam steps x {meta['batch_size']} examples "
            f"({meta['users_per_batch']} users per batch) on {meta['public_clients']} "
            f"public users, {meta['wall_s']:.0f} s; loss {meta['initial_loss']:.3f} -> "
            f"{meta['final_loss']:.3f}; public test accuracy {pub}.",
            'Accuracy: held-out data of the last round\'s participants with the global '
            'model; unseen: users outside the population. Same seed, rounds and cohorts '
            'in every variant; the pretrained base is frozen like the random one.']
  table = '\n'.join(lines)
  with open(os.path.join(_RESULTS.value, 'pretrain.md'), 'w') as f:
    f.write(table + '\n')
  return table


def main(argv):
  del argv
  unknown = sorted(set(_VARIANTS.value) - set(DESCRIPTIONS))
  if unknown:
    raise app.UsageError(f'unknown variant(s) {unknown}; known: {list(DESCRIPTIONS)}')
  logging.set_verbosity(logging.WARNING)   # orbax logs every save and restore
  shutil.rmtree(_OUT.value, ignore_errors=True)   # fresh runs, not resumes
  settings = pretrain.Settings(
      steps=_PRETRAIN_STEPS.value, public_clients=_PUBLIC_CLIENTS.value,
      batch_size=_BATCH_SIZE.value, learning_rate=_LEARNING_RATE.value)
  config = default_config.get_config()
  checkpoints = {'same': os.path.join(_OUT.value, 'pretrained'),
                 'other': os.path.join(_OUT.value, 'pretrained_other_world')}
  meta = pretrain.run(config, checkpoints['same'], settings)
  print(json.dumps({k: meta[k] for k in ('steps', 'final_loss', 'public_accuracy',
                                         'wall_s')}), flush=True)
  if 'other_world_base' in _VARIANTS.value:
    other = default_config.get_config()
    other.seed = config.seed + 1   # the seed draws the world's class signatures
    pretrain.run(other, checkpoints['other'], settings)
  tasks = tuple(config.data.tasks)
  results = []
  for variant in _VARIANTS.value:
    r = train(variant, checkpoints, tasks)
    print(json.dumps(r), flush=True)
    results.append(r)
  print(write_outputs(meta, results, tasks))


if __name__ == '__main__':
  app.run(main)
