r"""A refactor changes no number: record a fixed set of runs, compare two records.

  python benchmarks/same_numbers.py record --out=/tmp/before      # on the old commit
  python benchmarks/same_numbers.py record --out=/tmp/after       # on the new one
  python benchmarks/same_numbers.py compare /tmp/before /tmp/after

`record` trains each variant below (the default XR federation, 8 rounds,
seed 0, evaluated every 4 rounds) and keeps its metrics.jsonl as
OUT/<variant>.jsonl. `compare` checks every key of every row bit for bit
(floats compared by their exact value) and lists each difference; keys
that a change alters on purpose are named with --allow=KEY_PATTERN (fnmatch
patterns such as 'cost/*' or 'eval/*/forgetting'). It exits non-zero on any
difference that is not allowed, and prints the old and new values of the
allowed ones so they can go into BUILD_NOTES.md.

Keys that measure the machine rather than the run (wall times: 'time/*'
in every row, the forward timed on the host: 'latency/measured_*') are
skipped unless --ignore is given another list (--ignore= compares them too).

Runs with a different layout (chunk size, devices) are the same math but
not bit-identical (XLA:CPU blocks batched matmuls by batch size), so both
records must come from the same machine and flags.
"""
import fnmatch
import json
import math
import os
import sys
import time

from absl import app
from absl import flags

from fedxr_jax.training import metrics_log

# Wall-clock keys: different on every run, never part of the math.
MACHINE_KEYS = metrics_log.MACHINE_KEYS

_OUT = flags.DEFINE_string('out', 'runs/same_numbers', 'record: output folder.')
_VARIANTS = flags.DEFINE_list('variants', [], 'record: variants to run (default: all).')
_ALLOW = flags.DEFINE_list('allow', [], 'compare: key patterns allowed to differ.')
_IGNORE = flags.DEFINE_list('ignore', list(MACHINE_KEYS),
                            'compare: key patterns not compared at all (machine-dependent).')
_ROUNDS = flags.DEFINE_integer('rounds', 8, 'record: rounds per variant.')
_ADDED = flags.DEFINE_bool('added_keys_differ', False,
                           'compare: a key only the new record has counts as a difference '
                           '(default: listed once as added; new metrics change no number).')
_SET = flags.DEFINE_list('set', [], 'record: KEY=VALUE for every variant, e.g. chunk_size=0 '
                         '(the default before chunk_size=auto) to compare with older code.')

# name -> {dotted config key: value}, applied to the default config. A key
# 'a|b' sets the first of a, b the config has (keys renamed between versions).
VARIANTS = {
    'default': {},
    'hierarchical': {'topology.kind': 'hierarchical'},
    'semi': {'topology.kind': 'semi', 'topology.semi.fallback|topology.d2d_fallback': 'ring'},
    'decentralized': {'topology.kind': 'decentralized', 'population_size': 32},
    'tree': {'topology.kind': 'tree'},
    'scaffold': {'algorithm.name': 'scaffold'},
    'ditto': {'algorithm.name': 'ditto'},
    'fedrep': {'algorithm.name': 'fedrep', 'plan.heads': 'personal'},
    'tap': {'algorithm.name': 'tap'},
    'lora_exact': {'lora.rule': 'exact'},
    'moe': {'plan.lora': 'frozen', 'plan.prompts': 'frozen', 'plan.experts': 'shared',
            'model.m3t.num_experts': 4, 'model.m3t.expert_top_k': 2},
    'hetlora': {'lora.device_ranks': (4, 4, 4, 1, 2, 1), 'lora.hetlora_weights': True},
    # Features and cadences the house refactor (issue 18) reshaped.
    'sign_flip_median': {'attack.fraction': 0.2, 'attack.model': 'sign_flip',
                         'aggregator.name': 'median'},
    'alie': {'attack.fraction': 0.2, 'attack.model': 'alie'},
    'backdoor_dp': {'attack.fraction': 0.2, 'attack.data': 'backdoor',
                    'privacy.noise_multiplier': 0.5, 'privacy.delta': 1e-5},
    'example_dp': {'privacy.mode': 'example', 'privacy.noise_multiplier': 0.5,
                   'privacy.delta': 1e-5},
    'topk': {'compression.name': 'topk'},
    'fedadam_momentum': {'algorithm.name': 'fedadam',
                         'client_optimizer.sgd.momentum|client_optimizer.momentum': 0.9},
    'rounds_per_call': {'rounds_per_call': 4},
}
EXTRA = ('sign_flip_median', 'alie', 'backdoor_dp', 'example_dp', 'topk', 'fedadam_momentum',
         'rounds_per_call')


def variant_config(name: str, num_rounds: int):
  from fedxr_jax.configs import default
  config = default.get_config()
  config.num_rounds = num_rounds
  config.eval_every = 4
  config.checkpoint_every = 4
  config.plot = False
  common = dict(_parsed(kv) for kv in _SET.value)
  for keys, value in {**VARIANTS[name], **common}.items():
    for key in keys.split('|'):
      *parents, leaf = key.split('.')
      block = config
      try:
        for p in parents:
          block = block[p]
        block[leaf]
      except (KeyError, AttributeError):
        continue
      block[leaf] = value
      break
    else:
      raise KeyError(f'none of {keys} is a config key')
  return config


def _parsed(assignment: str):
  key, _, text = assignment.partition('=')
  for kind in (int, float):
    try:
      return key, kind(text)
    except ValueError:
      pass
  return key, text


def record(out: str, names, num_rounds: int) -> None:
  import fedxr_jax
  from fedxr_jax.core import compilation_cache
  compilation_cache.enable()
  os.makedirs(out, exist_ok=True)
  for name in names:
    workdir = os.path.join(out, 'work', name)
    if os.path.exists(workdir):
      raise SystemExit(f'{workdir} exists: record into a new --out')
    t0 = time.perf_counter()
    rows = fedxr_jax.run(variant_config(name, num_rounds), workdir, progress=False)
    with open(os.path.join(out, f'{name}.jsonl'), 'w') as f:
      for row in rows:
        f.write(json.dumps(row, sort_keys=True) + '\n')
    print(f'{name}: {len(rows)} rows in {time.perf_counter() - t0:.1f} s', flush=True)


def _same(a, b) -> bool:
  if isinstance(a, float) and isinstance(b, float):
    return a == b or (math.isnan(a) and math.isnan(b))
  if isinstance(a, list) and isinstance(b, list):
    return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
  return a == b


def compare_rows(old_rows, new_rows, allow=(), ignore=MACHINE_KEYS):
  """[(round, key, old, new, allowed)] for every differing key of every row.

  Keys matching `ignore` are not compared (wall times differ on every run).
  """
  diffs = []
  allowed = lambda key: any(fnmatch.fnmatch(key, p) for p in allow)
  ignored = lambda key: any(fnmatch.fnmatch(key, p) for p in ignore)
  old_by_round = {r['round']: r for r in old_rows}
  new_by_round = {r['round']: r for r in new_rows}
  for rnd in sorted(set(old_by_round) | set(new_by_round)):
    old, new = old_by_round.get(rnd, {}), new_by_round.get(rnd, {})
    for key in sorted(k for k in set(old) | set(new) if not ignored(k)):
      a, b = old.get(key, '<missing>'), new.get(key, '<missing>')
      if not _same(a, b):
        diffs.append((rnd, key, a, b, allowed(key)))
  return diffs


def compare(old_dir: str, new_dir: str, allow, ignore=MACHINE_KEYS) -> int:
  names = sorted(f[:-6] for f in os.listdir(old_dir) if f.endswith('.jsonl'))
  bad = 0
  for name in names:
    path_new = os.path.join(new_dir, f'{name}.jsonl')
    if not os.path.exists(path_new):
      print(f'{name}: missing in {new_dir}')
      bad += 1
      continue
    load = lambda p: [json.loads(line) for line in open(p) if line.strip()]
    diffs = compare_rows(load(os.path.join(old_dir, f'{name}.jsonl')), load(path_new), allow,
                         ignore)
    if not _ADDED.value:
      added = sorted({d[1] for d in diffs if d[2] == '<missing>'})
      if added:
        print(f'{name}: {len(added)} key(s) added: {", ".join(added)}')
      diffs = [d for d in diffs if d[2] != '<missing>']
    refused = [d for d in diffs if not d[4]]
    bad += len(refused)
    status = 'identical' if not diffs else (
        f'{len(diffs) - len(refused)} allowed difference(s)' if not refused
        else f'{len(refused)} DIFFERENCE(S)')
    print(f'{name}: {status}')
    by_key = {}
    for rnd, key, a, b, ok in diffs:
      by_key.setdefault(key, []).append((rnd, a, b, ok))
    for key, rows in by_key.items():
      rnd, a, b, ok = rows[0]
      more = f' (and {len(rows) - 1} more rounds)' if len(rows) > 1 else ''
      print(f"  {'allowed' if ok else 'DIFFERS'} {key}: round {rnd} {a} -> {b}{more}")
  print('same numbers' if not bad else f'{bad} unexpected difference(s)')
  return 1 if bad else 0


def main(argv):
  if len(argv) < 2 or argv[1] not in ('record', 'compare'):
    raise app.UsageError('usage: same_numbers.py record --out=DIR | compare OLD NEW')
  if argv[1] == 'record':
    names = _VARIANTS.value or list(VARIANTS)
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
      raise app.UsageError(f'unknown variants {unknown}; known: {list(VARIANTS)}')
    record(_OUT.value, names, _ROUNDS.value)
    return 0
  if len(argv) != 4:
    raise app.UsageError('usage: same_numbers.py compare OLD_DIR NEW_DIR')
  sys.exit(compare(argv[2], argv[3], _ALLOW.value, _IGNORE.value))


if __name__ == '__main__':
  app.run(main)
