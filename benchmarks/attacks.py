r"""Attack x defense matrix: clean accuracy and backdoor success under poisoning.

  python benchmarks/attacks.py                                # the sized matrix
  python benchmarks/attacks.py --block=0.2:mean,median:sign_flip,backdoor \
      --rounds=5 --out=/tmp/attacks

A small federation of the default model and data (--population users,
--cohort a round, --rounds rounds, FedAvg), a fixed malicious set of
round(fraction * population) users (attack.fraction), and each server
aggregator (aggregator.name). Attacks:
  sign_flip        attackers upload -update (attack.model=sign_flip)
  gaussian         N(0, 1) noise instead of the update (attack.model=gaussian)
  alie             A Little Is Enough, omniscient (attack.model=alie, z auto)
  ipm              inner-product manipulation, omniscient (attack.model=ipm, eps 0.1)
  label_flip       attackers train on flipped labels (attack.data=label_flip)
  backdoor         a 4x4 trigger patch on the camera frame relabels gesture to
                   class 0 on half the attackers' examples, and the update is
                   scaled by gamma=10 (attack.data=backdoor +
                   attack.model=scaled_replacement)
Defense settings: multi_krum f = ceil(fraction * cohort) (the expected
attackers per cohort); trimmed_mean beta = max(fraction, 0.1);
norm_bounding max_norm and centered_clipping tau = --bound (default: C,
the median honest update norm privacy_utility.py measured on the default
federation). Measured at the last round, with one evaluation of all
population users' held-out data (clean: no trigger, true labels, the same
data for every cell): clean accuracy (mean over tasks) and, for the
backdoor, success = share of triggered held-out frames whose true gesture
is not the target that the model classifies as the target (the backdoor
problem's eval sums attack/backdoor_hits / attack/backdoor_count). The
no-attack column is each defense's clean run (trained under the backdoor
wrapper with no attacker, which leaves training as it is and measures the
trigger's base rate: how often a clean model already puts triggered
frames in the target class). Writes
OUT/attacks.{json,md,png} (a heatmap per fraction).
"""
import json
import math
import os
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

import fedxr_jax
from fedxr_jax.attacks import poisoning
from fedxr_jax.configs import default as default_config
from fedxr_jax.core import compilation_cache
from fedxr_jax.evaluation import evaluator

ATTACKS = {
    'none': {},
    'sign_flip': dict(model='sign_flip'),
    'gaussian': dict(model='gaussian'),
    'alie': dict(model='alie'),
    'ipm': dict(model='ipm'),
    'label_flip': dict(data='label_flip'),
    'backdoor': dict(model='scaled_replacement', data='backdoor'),
}
DEFENSES = ('mean', 'median', 'trimmed_mean', 'multi_krum', 'geometric_median',
            'centered_clipping', 'norm_bounding')

_ROUNDS = flags.DEFINE_integer('rounds', 20, 'Rounds per cell.')
_POPULATION = flags.DEFINE_integer('population', 100, 'Users.')
_COHORT = flags.DEFINE_integer('cohort', 20, 'Users per round.')
# FRACTIONS:DEFENSES:ATTACKS ('all': every one); the union of the blocks runs,
# plus each defense's clean run. The default fits ~30 min of 2-core CPU.
_BLOCKS = flags.DEFINE_multi_string('block', [
    '0.2:all:sign_flip,alie,ipm,backdoor',
    '0.2:mean,median:gaussian,label_flip',
    '0.1,0.3:mean,multi_krum:sign_flip,backdoor',
], 'Cells, FRACTIONS:DEFENSES:ATTACKS (comma lists, or all; attack none: only the '
   'clean runs); repeatable.')
_BOUND = flags.DEFINE_float('bound', 0.0, 'norm_bounding.max_norm = centered_clipping.tau '
                            '(0: the default federation\'s C from OUT/privacy_utility.json).')
_OUT = flags.DEFINE_string('out', 'benchmarks/results', 'Results folder.')
_MERGE = flags.DEFINE_bool('merge', False, 'Keep the cells of an existing OUT/attacks.json '
                           'that this call does not rerun.')


def bound() -> float:
  if _BOUND.value > 0:
    return _BOUND.value
  path = os.path.join(_OUT.value, 'privacy_utility.json')
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)['datasets']['default']['clip_norm']
  return 1.0


def make_config(defense: str, attack: str, fraction: float, norm_bound: float):
  config = default_config.get_config()
  config.population_size, config.cohort_size = _POPULATION.value, _COHORT.value
  config.num_rounds = config.eval_every = config.checkpoint_every = _ROUNDS.value
  config.aggregator.name = defense
  f = math.ceil(fraction * config.cohort_size)
  config.aggregator.multi_krum.num_byzantine = config.aggregator.krum.num_byzantine = max(f, 1)
  config.aggregator.trimmed_mean.beta = max(fraction, 0.1)
  config.aggregator.norm_bounding.max_norm = norm_bound
  config.aggregator.centered_clipping.tau = norm_bound
  if attack != 'none':
    config.attack.fraction = fraction
    config.attack.update(ATTACKS[attack])
  else:   # the backdoor wrapper with no attacker: clean training, the trigger's base rate
    config.attack.fraction, config.attack.data = 1e-6, 'backdoor'
  return config


def run_cell(defense: str, attack: str, fraction: float, norm_bound: float) -> dict:
  """Trains one cell (the round loop of `training.loop`, without its evaluations)."""
  config = make_config(defense, attack, fraction, norm_bound)
  t0 = time.perf_counter()
  exp = fedxr_jax.build_experiment(config)
  fed, world = exp.federation, exp.world
  server, clients, frozen = jax.jit(fed.init)(world, exp.key)
  t1 = time.perf_counter()
  round_fn = jax.jit(fed.round, donate_argnums=(0, 1))
  for r in range(config.num_rounds):
    plan, _ = exp.plan(r)
    server, clients, metrics = round_fn(server, clients, frozen, world, plan)
  loss = float(metrics['train/loss'])
  t2 = time.perf_counter()
  evaluate = jax.jit(fed.evaluate, static_argnames=('split',))
  sums = jax.device_get(evaluate(server, clients, frozen, world,
                                 jnp.arange(config.population_size), 'test'))
  t3 = time.perf_counter()
  acc = evaluator.eval_metrics('eval', sums, exp.spec.tasks)['eval/accuracy']
  success = (float(poisoning.success_rate(sums)) if 'attack/backdoor_hits' in sums
             else None)
  return dict(defense=defense, attack=attack, fraction=fraction if attack != 'none' else 0.0,
              accuracy=acc, backdoor_success=success, final_train_loss=loss,
              backdoor_count=(float(sums['attack/backdoor_count'])
                              if success is not None else None),
              wall_s=t3 - t0, setup_s=t1 - t0, train_s=t2 - t1, eval_s=t3 - t2)


def cells() -> list:
  """(defense, attack, fraction) of every cell, clean runs first."""
  out = []
  for block in _BLOCKS.value:
    try:
      fractions, defenses, attacks = block.split(':')
    except ValueError:
      raise app.UsageError(f'--block={block!r}: want FRACTIONS:DEFENSES:ATTACKS') from None
    pick = lambda text, known: list(known) if text == 'all' else text.split(',')
    defenses = pick(defenses, DEFENSES)
    attacks = pick(attacks, [a for a in ATTACKS if a != 'none'])
    unknown = sorted(set(defenses) - set(DEFENSES)) + sorted(set(attacks) - set(ATTACKS))
    if unknown:
      raise app.UsageError(f'--block={block!r}: unknown {unknown}; attacks '
                           f'{list(ATTACKS)}, defenses {list(DEFENSES)}')
    out += [(d, a, 0.0 if a == 'none' else float(f)) for f in fractions.split(',')
            for a in attacks for d in defenses]
  clean = [(d, 'none', 0.0) for d in DEFENSES if any(c[0] == d for c in out)]
  return clean + sorted(set(out) - set(clean), key=out.index)


def write_outputs(results: list, settings: dict) -> None:
  os.makedirs(_OUT.value, exist_ok=True)
  with open(os.path.join(_OUT.value, 'attacks.json'), 'w') as f:
    json.dump({'settings': settings, 'cells': results}, f, indent=2)
  clean = {r['defense']: r for r in results if r['attack'] == 'none'}
  attacks = [a for a in ATTACKS if a != 'none' and any(r['attack'] == a for r in results)]
  defenses = [d for d in DEFENSES if any(r['defense'] == d for r in results)]
  fractions = sorted({r['fraction'] for r in results if r['attack'] != 'none'})
  get = {(r['defense'], r['attack'], r['fraction']): r for r in results}
  lines = []
  for frac in fractions:
    here = [a for a in attacks if any((d, a, frac) in get for d in defenses)]
    lines += [f"**{frac:.0%} malicious** (clean accuracy; no attack and backdoor: "
              "accuracy / backdoor success)", '',
              '| defense | no attack | ' + ' | '.join(here) + ' |',
              '|---|---|' + '---|' * len(here)]
    for d in defenses:
      c = clean.get(d)
      row = ['-' if c is None else f"{c['accuracy']:.3f}" if c['backdoor_success'] is None
             else f"{c['accuracy']:.3f} / {c['backdoor_success']:.2f}"]
      for a in here:
        r = get.get((d, a, frac))
        if r is None:
          row.append('-')
        elif r['backdoor_success'] is not None:
          row.append(f"{r['accuracy']:.3f} / {r['backdoor_success']:.2f}")
        else:
          row.append(f"{r['accuracy']:.3f}")
      if any(v != '-' for v in row[1:]):
        lines.append(f'| {d} | ' + ' | '.join(row) + ' |')
    lines.append('')
  s = settings
  lines.append(
      f"{s['population']} users, {s['cohort']} a round, {s['rounds']} rounds, the default "
      f"model and data, FedAvg. Accuracy: mean over tasks on held-out data of all users at "
      f"the last round. Backdoor success: triggered held-out camera frames (true gesture "
      f"not the target) classified as the target; in the no-attack column, the same rate "
      f"of the cleanly trained model (the trigger's base rate). multi_krum f = ceil(fraction x cohort); "
      f"trimmed_mean beta = max(fraction, 0.1); norm_bounding / centered_clipping bound "
      f"{s['bound']:.3g}. {s['cells']} cells, {s['wall_s'] / 60:.0f} min.")
  text = '\n'.join(lines)
  with open(os.path.join(_OUT.value, 'attacks.md'), 'w') as f:
    f.write(text + '\n')
  print(text)

  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  cols = ['none'] + attacks + (['backdoor success'] if 'backdoor' in attacks else [])
  fig, axes = plt.subplots(1, len(fractions), figsize=(1.1 * len(cols) * len(fractions) + 2,
                                                        0.5 * len(defenses) + 2),
                           squeeze=False)
  for ax, frac in zip(axes[0], fractions):
    grid = np.full((len(defenses), len(cols)), np.nan)
    for i, d in enumerate(defenses):
      for j, a in enumerate(cols):
        r = (get.get((d, 'none', 0.0)) if a == 'none' else
             get.get((d, 'backdoor', frac)) if a == 'backdoor success' else get.get((d, a, frac)))
        if r is not None:
          grid[i, j] = r['backdoor_success'] if a == 'backdoor success' else r['accuracy']
    success = np.full_like(grid, np.nan)
    if cols[-1] == 'backdoor success':   # red = the attack wins, in both colourings
      success[:, -1], grid[:, -1] = grid[:, -1], np.nan
    im = ax.imshow(grid, cmap='RdYlGn', vmin=0, vmax=1, aspect='auto')
    ax.imshow(success, cmap='RdYlGn_r', vmin=0, vmax=1, aspect='auto')
    grid = np.where(np.isnan(grid), success, grid)
    for (i, j), v in np.ndenumerate(grid):
      if not np.isnan(v):
        ax.text(j, i, f'{v:.2f}', ha='center', va='center', fontsize=7)
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha='right', fontsize=8)
    ax.set_yticks(range(len(defenses)), defenses, fontsize=8)
    ax.set_title(f'{frac:.0%} malicious: clean accuracy (backdoor success: red = high)',
                 fontsize=9)
  fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
  fig.savefig(os.path.join(_OUT.value, 'attacks.png'), dpi=100, bbox_inches='tight')


def main(argv):
  del argv
  compilation_cache.enable()
  norm_bound = bound()
  todo = cells()
  results = []
  path = os.path.join(_OUT.value, 'attacks.json')
  if _MERGE.value and os.path.exists(path):
    with open(path) as f:
      keys = {(d, a, frac) for d, a, frac in todo}
      results = [r for r in json.load(f)['cells']
                 if (r['defense'], r['attack'], r['fraction']) not in keys]
  for i, (d, a, frac) in enumerate(todo):
    r = run_cell(d, a, frac, norm_bound)
    print(f'[{i + 1}/{len(todo)}]', json.dumps(r), flush=True)
    results.append(r)
  settings = dict(population=_POPULATION.value, cohort=_COHORT.value, rounds=_ROUNDS.value,
                  bound=norm_bound, cells=len(results),
                  wall_s=sum(r['wall_s'] for r in results))   # every cell's, merged too
  write_outputs(results, settings)


if __name__ == '__main__':
  app.run(main)
