r"""Does a base pretrained on the public corpus transfer to a world it never saw?

  python benchmarks/transfer.py                                # 3 held-out worlds
  python benchmarks/transfer.py --corpus=builtin:m3t-tiny      # the shipped checkpoint
  python benchmarks/transfer.py --seeds=0 --rounds=20 --pretrain_steps=200   # quick look
  python benchmarks/transfer.py --rounds=30 --pretrain_steps=12000 \
      --corpus=builtin:m3t-tiny-codes --pretrain_tasks=gesture,intent,emotion,gaze_point,\
object_box,gesture_code,activity_code,intent_code,emotion_code,keyword_code,scene_code,\
object_code                       # the code-target checkpoint, own world pretrained alike
  python benchmarks/transfer.py ... --federation=warm_start.heads=ridge   # closed-form heads

The pretrain table of `benchmarks/pretrain.py` again, on the primitives world
(data.source=world) and on held-out worlds: for each federation seed (each
its own world, never in the corpus) the default federation trains PEFT
(LoRA, prompts, heads) over a frozen base from
  random   a random base (and encoders): PEFT of an untrained network;
  own      base + encoders pretrained on public users of the held-out world
           itself (`fedxr-pretrain --corpus_worlds=0`): the ceiling;
  corpus   base + encoders pretrained on the public corpus (`--corpus_worlds`
           worlds no federation uses, each with its own heads), or --corpus.
Both pretrainings get the same steps and batch (equal examples seen). Reports
per seed the final mean accuracy (each task's kind's success rate: class,
PCK, IoU >= 0.5) of participants and unseen users, the fraction of the
ceiling's gain the corpus recovers, (corpus - random) / (own - random), and the
corpus run's convergence: the first evaluated round within 0.02 of its
plateau (the mean of its last two evaluations). Writes
RESULTS/transfer.json and RESULTS/transfer.md.
"""
import json
import os
import shutil
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

from fedxr_jax.compose import pretrained
from fedxr_jax.configs import default as default_config
from fedxr_jax.training import loop
from fedxr_jax.training import pretrain

_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Federation seeds (held-out worlds).')
_ROUNDS = flags.DEFINE_integer('rounds', 60, 'Federated rounds per run.')
_EVAL_EVERY = flags.DEFINE_integer('eval_every', 5, 'Rounds between evaluations.')
_PRETRAIN_STEPS = flags.DEFINE_integer('pretrain_steps', 1500, 'Adam steps of each pretraining.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 64, 'Pretraining examples per step.')
_CORPUS_WORLDS = flags.DEFINE_integer('corpus_worlds', 16, 'Public-corpus worlds.')
_CORPUS_CLIENTS = flags.DEFINE_integer('corpus_clients', 64, 'Public users per corpus world.')
_OWN_CLIENTS = flags.DEFINE_integer('own_clients', 512,
                                    'Public users of the held-out world (the ceiling).')
_CORPUS = flags.DEFINE_string('corpus', '', 'Use this corpus checkpoint (a directory or '
                              'builtin:NAME) instead of pretraining one.')
_FEDERATION = flags.DEFINE_list(
    'federation', [], 'KEY=VALUE config overrides for every federation (all three arms), '
    'e.g. client_optimizer.name=adam,client_optimizer.learning_rate=0.003.')
_PRETRAIN_TASKS = flags.DEFINE_list(
    'pretrain_tasks', [], 'data.world.tasks of both pretrainings (own world and corpus; '
    'empty: the federation\'s), e.g. the federation\'s plus the block codes '
    '(gesture_code, ...: data.world.tasks.CODE_TASKS). Heads are not kept, so the '
    'federation reads the base with its own tasks.')
_OWN_FROM = flags.DEFINE_string(
    'own_from', '', 'Read each seed\'s own-world base from DIR/own_SEED (an earlier run\'s '
    '--out, made with the same --pretrain_steps and --pretrain_tasks) instead of '
    'pretraining it again.')
_OUT = flags.DEFINE_string('out', 'runs/bench_transfer', 'Work folder (replaced).')
_RESULTS = flags.DEFINE_string('results', 'benchmarks/results', 'Where transfer.* go.')
_TOLERANCE = 0.02
VARIANTS = ('random', 'own', 'corpus')


def base_config(seed: int):
  config = default_config.get_config()
  config.data.source = 'world'
  config.seed = seed
  config.num_rounds = config.checkpoint_every = _ROUNDS.value
  config.eval_every = _EVAL_EVERY.value
  config.plot = False
  return config


def pretrain_config(seed: int):
  config = base_config(seed)
  if _PRETRAIN_TASKS.value:
    config.data.world.tasks = tuple(_PRETRAIN_TASKS.value)
  return config


def federation_config(seed: int):
  """base_config with --federation's overrides (an unknown key is one line)."""
  from fedxr_jax.bench import run as run_lib   # pylint: disable=g-import-not-at-top
  overrides = run_lib.parse_overrides([f'--config.{o}' for o in _FEDERATION.value])
  try:
    return run_lib.apply(base_config(seed), overrides)
  except run_lib.TrackError as e:
    raise SystemExit(f'transfer: --federation: {e}') from None


def settings(public_clients: int, corpus_worlds: int) -> pretrain.Settings:
  return pretrain.Settings(steps=_PRETRAIN_STEPS.value, public_clients=public_clients,
                           batch_size=_BATCH_SIZE.value, corpus_worlds=corpus_worlds)


def convergence(curve: dict) -> dict:
  rounds = sorted(curve)
  plateau = float(np.mean([curve[r] for r in rounds[-2:]]))
  first = next(r for r in rounds if curve[r] >= plateau - _TOLERANCE)
  return {'plateau': plateau, 'round_within_tolerance': first}


def train(config, workdir: str) -> dict:
  t0 = time.perf_counter()
  rows = loop.run(config, workdir, progress=False)
  last = rows[-1]
  curve = {r['round']: r['eval/accuracy'] for r in rows if 'eval/accuracy' in r}
  return {'accuracy': last['eval/accuracy'], 'unseen_accuracy': last['eval_unseen/accuracy'],
          'tasks': {k.split('/')[1]: v for k, v in last.items()
                    if k.startswith('eval/') and k.endswith('/accuracy') and k.count('/') == 2},
          'curve': curve, 'wall_s': time.perf_counter() - t0}


def gain_fraction(r: dict, key: str) -> float:
  return (r['corpus'][key] - r['random'][key]) / (r['own'][key] - r['random'][key])


def summary(per_seed: dict) -> dict:
  out = {}
  for key in ('accuracy', 'unseen_accuracy'):
    fractions = [gain_fraction(r, key) for r in per_seed.values()]
    out[key] = {'gain_fraction_mean': float(np.mean(fractions)),
                'gain_fraction_min': float(np.min(fractions)),
                'gain_fraction_max': float(np.max(fractions)),
                'gain_fraction_std': float(np.std(fractions))}
  return out


def write_outputs(record: dict) -> str:
  os.makedirs(_RESULTS.value, exist_ok=True)
  with open(os.path.join(_RESULTS.value, 'transfer.json'), 'w') as f:
    json.dump(record, f, indent=2)
  lines = ['| seed | random | own world (ceiling) | corpus | gain recovered | unseen: random '
           '| own | corpus | gain recovered | corpus within 0.02 of plateau at round |',
           '|---|---|---|---|---|---|---|---|---|---|']
  for seed, r in record['per_seed'].items():
    conv = r['corpus_convergence']
    lines.append(
        f"| {seed} | {r['random']['accuracy']:.3f} | {r['own']['accuracy']:.3f} | "
        f"{r['corpus']['accuracy']:.3f} | **{gain_fraction(r, 'accuracy'):.2f}** | "
        f"{r['random']['unseen_accuracy']:.3f} | {r['own']['unseen_accuracy']:.3f} | "
        f"{r['corpus']['unseen_accuracy']:.3f} | "
        f"**{gain_fraction(r, 'unseen_accuracy'):.2f}** | "
        f"{conv['round_within_tolerance']} (plateau {conv['plateau']:.3f}) |")
  s = record['summary']
  for key, name in (('accuracy', 'participants'), ('unseen_accuracy', 'unseen users')):
    v = s[key]
    lines.append(f"\nGain recovered ({name}): mean {v['gain_fraction_mean']:.2f}, "
                 f"range {v['gain_fraction_min']:.2f}-{v['gain_fraction_max']:.2f}, "
                 f"std {v['gain_fraction_std']:.2f} over {len(record['per_seed'])} seeds.")
  lines.append(f"\nCorpus: {record['corpus']}. Each pretraining {_PRETRAIN_STEPS.value} adam "
               f'steps x {_BATCH_SIZE.value} examples; federations: default config, '
               f"data.source=world, {_ROUNDS.value} rounds"
               + (f", {', '.join(_FEDERATION.value)}" if _FEDERATION.value else '')
               + (f"; pretraining tasks {', '.join(_PRETRAIN_TASKS.value)}"
                  if _PRETRAIN_TASKS.value else '') + '.')
  table = '\n'.join(lines)
  with open(os.path.join(_RESULTS.value, 'transfer.md'), 'w') as f:
    f.write(table + '\n')
  return table


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)   # orbax logs every save and restore
  if _OWN_FROM.value and os.path.abspath(_OWN_FROM.value) == os.path.abspath(_OUT.value):
    raise SystemExit('transfer: --own_from must not be --out (which is replaced)')
  shutil.rmtree(_OUT.value, ignore_errors=True)   # fresh runs, not resumes
  seeds = [int(s) for s in _SEEDS.value]
  t0 = time.perf_counter()
  corpus = _CORPUS.value
  corpus_meta = {'path': corpus}
  if not corpus:
    corpus = os.path.join(_OUT.value, 'corpus')
    meta = pretrain.run(pretrain_config(seeds[0]), corpus,
                        settings(_CORPUS_CLIENTS.value, _CORPUS_WORLDS.value))
    corpus_meta = {k: meta[k] for k in ('corpus_world_seeds', 'public_clients', 'steps',
                                        'batch_size', 'final_loss', 'wall_s')}
    print(json.dumps(corpus_meta), flush=True)
  per_seed = {}
  for seed in seeds:
    own = os.path.join(_OUT.value, f'own_{seed}')
    if _OWN_FROM.value:
      own = os.path.join(_OWN_FROM.value, f'own_{seed}')
      recorded = pretrained.read_metadata(own)
      if (recorded['steps'], recorded['data']['world']['tasks']) != (
          _PRETRAIN_STEPS.value, list(pretrain_config(seed).data.world.tasks)):
        raise SystemExit(f'transfer: {own} was pretrained with other steps or tasks')
    else:
      pretrain.run(pretrain_config(seed), own, settings(_OWN_CLIENTS.value, 0))
    results = {}
    for variant, checkpoint in zip(VARIANTS, ('', own, corpus)):
      config = federation_config(seed)
      config.model.pretrained = checkpoint
      # Federations apart from the pretrained bases (own_SEED is one).
      results[variant] = train(config, os.path.join(_OUT.value, 'runs', f'{variant}_{seed}'))
      print(json.dumps({'seed': seed, 'variant': variant,
                        **{k: v for k, v in results[variant].items() if k != 'curve'}}),
            flush=True)
    results['corpus_convergence'] = convergence(results['corpus']['curve'])
    per_seed[str(seed)] = results
  record = {'corpus': corpus_meta, 'per_seed': per_seed, 'summary': summary(per_seed),
            'settings': {'rounds': _ROUNDS.value, 'pretrain_steps': _PRETRAIN_STEPS.value,
                         'pretrain_tasks': _PRETRAIN_TASKS.value, 'own_from': _OWN_FROM.value,
                         'batch_size': _BATCH_SIZE.value, 'own_clients': _OWN_CLIENTS.value,
                         'federation': _FEDERATION.value},
            'wall_s': time.perf_counter() - t0}
  print(write_outputs(record))


if __name__ == '__main__':
  app.run(main)
