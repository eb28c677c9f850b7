r"""The effect of each SHIFT knob on a small XR federation.

  python benchmarks/shift.py                        # every knob, 3 seeds
  python benchmarks/shift.py --seeds=1 --rounds=20 --rows=baseline,S_markov

A baseline (the default data: Table 1 sensors, 10% per-sample dropout,
compute-tier step budgets, user style 0.5) and one row per knob, each
changing only that knob. Every row trains the default model with FedAvg
for --rounds rounds and reports the median over --seeds of: accuracy on
held-out data of all --population users (with their personal trees, if
any) and of --unseen new users; accuracy under round-0 conditions (what
drift made the model forget); mean local steps and participation over the
rounds; and, from the generated data at the last round, the share of
sensor inputs present and of trees a device can train. --million_rounds
also times rounds of a 10^6-user federation against a 500-user one (data
generated on device: memory does not grow with the population). Writes
OUT/shift.json and OUT/shift.md.
"""
import json
import os
import resource
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.configs import default as default_config
from fedxr_jax.data import catalog
from fedxr_jax.data import synthetic
from fedxr_jax.compose import experiment

_SEEDS = flags.DEFINE_integer('seeds', 3, 'Seeds per row (median reported).')
_ROUNDS = flags.DEFINE_integer('rounds', 40, 'Rounds per run.')
_POPULATION = flags.DEFINE_integer('population', 64, 'Users (each trains ~10 times).')
_COHORT = flags.DEFINE_integer('cohort', 16, 'Users per round.')
_UNSEEN = flags.DEFINE_integer('unseen', 64, 'New users evaluated.')
_ROWS = flags.DEFINE_list('rows', [], 'Rows to run (default: all).')
_MILLION_ROUNDS = flags.DEFINE_integer('million_rounds', 3,
                                       'Timed rounds at 10^6 users; 0 to skip.')
_OUT = flags.DEFINE_string('out', 'benchmarks/results', 'Output folder.')

_SCALE = 1e3   # the simulated model stands for one 10^3 times costlier


def _set(**changes):
  """A row's change: dotted config keys -> values."""
  def apply(config):
    for key, value in changes.items():
      node = config
      *path, last = key.split('.')
      for p in path:
        node = node[p]
      node[last] = value
  return apply


def _deadline(config):
  """A deadline just long enough for the reference device (Apple M2) to run
  every local step of a model _SCALE times the simulated one: slower
  devices fit fewer (floor), glasses none (they sit out), stragglers fewer."""
  hw = config.data.hardware
  hw.model_scale, hw.straggler_prob, hw.deadline_s = _SCALE, 0.2, 1.0
  flops_per_step = experiment.make_problem(config)[0].hardware.flops_per_step
  m2 = catalog.DEVICES['apple_vision_pro'].train_flops
  hw.deadline_s = 1.001 * config.local_steps * _SCALE * flops_per_step / m2


def rows(rounds: int) -> list:
  """(name, SHIFT dimension, change as text, config change)."""
  half = rounds // 2
  return [
      ('baseline', '-', 'default data', _set()),
      ('S_all_sensors', 'S', 'sensors.catalog: Table 1 -> every device has every sensor',
       _set(**{'data.sensors.catalog': False})),
      ('S_sample_dropout', 'S', 'modality_dropout 0.1 -> 0.4',
       _set(**{'data.modality_dropout': 0.4})),
      ('S_markov', 'S', 'Markov sensor dropout: 30% of rounds, 5-round bursts',
       _set(**{'data.sensors.markov_rate': 0.3, 'data.sensors.markov_burst_rounds': 5.0})),
      ('H_uniform_steps', 'H', 'compute_budgets off: every device runs all local steps',
       _set(**{'data.hardware.compute_budgets': False})),
      ('H_deadline', 'H', 'deadline = Vision Pro time for all local steps; 20% stragglers '
       '(x4 slower)', _deadline),
      ('H_availability', 'H', 'availability: battery + time of day',
       _set(**{'data.hardware.availability': True})),
      ('H_memory', 'H', f'memory limits: 50% of RAM, model x{_SCALE:g}',
       _set(**{'data.hardware.memory_limits': True, 'data.hardware.model_scale': _SCALE})),
      ('I_no_style', 'I', 'style_scale 0.5 -> 0', _set(**{'data.style_scale': 0.0})),
      ('I_no_style_fedper', 'I', 'style_scale 0 + personal heads (FedPer)',
       _set(**{'data.style_scale': 0.0, 'plan.heads': 'personal'})),
      ('I_strong_style', 'I', 'style_scale 0.5 -> 1.5', _set(**{'data.style_scale': 1.5})),
      ('I_strong_style_fedper', 'I', 'style_scale 1.5 + personal heads (FedPer)',
       _set(**{'data.style_scale': 1.5, 'plan.heads': 'personal'})),
      ('I_style_drift', 'I', 'user style drifts 0.05 rad/round',
       _set(**{'data.interactivity.style_drift': 0.05})),
      ('F_task_subsets', 'F', 'task_keep_prob 1.0 -> 0.5', _set(**{'data.task_keep_prob': 0.5})),
      ('F_task_arrival', 'F', f'emotion labels arrive at round {half}',
       _set(**{'data.functional.arrival_rounds': (0, 0, half)})),
      ('T_drift', 'T', f'linear drift over {rounds} rounds: lighting 0.5, audio noise x2, '
       'tracking noise x2 + bias', _set(**{
           'data.temporal.schedule': 'linear', 'data.temporal.period_rounds': rounds,
           'data.temporal.lighting': 0.5, 'data.temporal.audio_noise': 1.0,
           'data.temporal.sensor_degradation': 1.0})),
  ]


def make_config(change, seed: int):
  config = default_config.get_config()
  config.seed = seed
  config.population_size = _POPULATION.value
  config.cohort_size = _COHORT.value
  config.num_rounds = _ROUNDS.value
  config.eval_unseen_clients = _UNSEEN.value
  config.plot = False
  change(config)
  return config


def data_stats(exp, round_idx: int) -> dict:
  """Shares of present sensor inputs, trainable trees, availability, budgets."""
  spec, world = exp.spec, exp.world
  data = jax.jit(jax.vmap(lambda c: synthetic.client_data(
      world, c, 'train', spec, round_idx=round_idx)))(jnp.arange(256))
  ex = data['examples']
  valid = np.asarray(ex['example_mask'])
  out = {'sensors_present': float(np.asarray(ex['modality_mask'])[valid].mean()),
         'step_budget': float(np.asarray(data['step_budget']).mean()),
         'available': float(np.asarray(data.get('available', True)).mean())}
  if 'trainable' in data:
    out['trainable'] = float(np.mean([np.asarray(v).mean()
                                      for v in data['trainable'].values()]))
  return out


def train(name, change, seed: int) -> dict:
  config = make_config(change, seed)
  t0 = time.perf_counter()
  exp = experiment.build(config)
  fed, world = exp.federation, exp.world
  server, clients, frozen = jax.jit(fed.init)(world, exp.key)
  round_fn = jax.jit(fed.round, donate_argnums=(0, 1))
  steps, participation = [], []
  for r in range(config.num_rounds):
    topo, _ = exp.layout(r)
    server, clients, m = round_fn(server, clients, frozen, world, topo)
    steps.append(float(m['train/mean_local_steps']))
    participation.append(float(m['train/participation']))
  evaluate = jax.jit(fed.evaluate, static_argnames=('split', 'personal_from_population'))
  population = jnp.arange(config.population_size)
  unseen = jnp.arange(config.population_size,
                      config.population_size + config.eval_unseen_clients)

  def accuracy(server_state, ids, personal=True):
    sums = jax.tree.map(np.asarray, evaluate(server_state, clients, frozen, world, ids,
                                             'test', personal_from_population=personal))
    per_task = {t: float(sums['correct'][i] / sums['count'][i])
                for i, t in enumerate(exp.spec.tasks) if sums['count'][i]}
    return float(np.mean(list(per_task.values()))), per_task

  acc, per_task = accuracy(server, population)
  # The same model on the data of round 0 (before any drift or arrival).
  acc0, _ = accuracy(server.replace(round=jnp.zeros_like(server.round)), population)
  unseen_acc, _ = accuracy(server, unseen, personal=False)
  return dict(row=name, seed=seed, accuracy=acc, unseen_accuracy=unseen_acc,
              round0_accuracy=acc0, per_task=per_task,
              mean_local_steps=float(np.mean(steps)),
              participation=float(np.mean(participation)),
              **data_stats(exp, config.num_rounds - 1),
              wall_s=time.perf_counter() - t0)


def time_million() -> dict:
  """Round time and peak RSS: 500 users, then 10^6 (same cohort of 32)."""
  out = {}
  for population in (500, 1_000_000):
    config = default_config.get_config()
    config.population_size = population
    exp = experiment.build(config)
    server, clients, frozen = jax.jit(exp.federation.init)(exp.world, exp.key)
    round_fn = jax.jit(exp.federation.round, donate_argnums=(0, 1))
    times = []
    for r in range(_MILLION_ROUNDS.value + 1):
      topo, _ = exp.layout(r)
      t0 = time.perf_counter()
      server, clients, m = round_fn(server, clients, frozen, exp.world, topo)
      jax.block_until_ready(m)
      times.append(time.perf_counter() - t0)
    out[population] = dict(
        round_s=float(np.median(times[1:])),
        world_bytes=int(sum(x.nbytes for x in jax.tree.leaves(exp.world))),
        client_state_bytes=int(sum(x.nbytes for x in jax.tree.leaves(clients))),
        max_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
  return out


def write_outputs(results: list, million) -> None:
  os.makedirs(_OUT.value, exist_ok=True)
  by_row = {}
  for r in results:
    by_row.setdefault(r['row'], []).append(r)
  med = lambda runs, key: (float(np.median([x[key] for x in runs]))
                           if all(key in x for x in runs) else None)
  table = []
  for name, dim, text, _ in rows(_ROUNDS.value):
    if name not in by_row:
      continue
    runs = by_row[name]
    table.append({'row': name, 'dimension': dim, 'change': text, 'seeds': len(runs),
                  **{k: med(runs, k) for k in (
                      'accuracy', 'unseen_accuracy', 'round0_accuracy', 'mean_local_steps',
                      'participation', 'sensors_present', 'trainable', 'step_budget')}})
  base = next((t['accuracy'] for t in table if t['row'] == 'baseline'), None)
  with open(os.path.join(_OUT.value, 'shift.json'), 'w') as f:
    json.dump({'settings': {'seeds': _SEEDS.value, 'rounds': _ROUNDS.value,
                            'population': _POPULATION.value, 'cohort': _COHORT.value,
                            'unseen': _UNSEEN.value},
               'rows': table, 'runs': results, 'million': million}, f, indent=2)
  fmt = lambda v, spec='.3f': '-' if v is None else format(v, spec)
  lines = ['| SHIFT | change | accuracy | vs baseline | unseen users | round-0 conditions | '
           'mean local steps | participation | sensor inputs present | trainable trees |',
           '|---|---|---|---|---|---|---|---|---|---|']
  for t in table:
    delta = None if base is None or t['accuracy'] is None else t['accuracy'] - base
    lines.append(
        f"| {t['dimension']} | {t['change']} | {fmt(t['accuracy'])} | "
        f"{fmt(delta, '+.3f')} | {fmt(t['unseen_accuracy'])} | {fmt(t['round0_accuracy'])} | "
        f"{fmt(t['mean_local_steps'], '.2f')} | {fmt(t['participation'], '.2f')} | "
        f"{fmt(t['sensors_present'], '.2f')} | {fmt(t['trainable'], '.2f')} |")
  lines += ['', f"Median of {_SEEDS.value} seed(s); {_POPULATION.value} users, "
            f"{_COHORT.value} a round, {_ROUNDS.value} rounds, the default model "
            "(LoRA + prompts + encoders + heads over a frozen base), FedAvg. Accuracy: "
            "mean over tasks on held-out data of every user at the last round; round-0 "
            "conditions: the same model on the data before drift / arrival."]
  arrival = [r for r in results if r['row'] == 'F_task_arrival']
  base_runs = [r for r in results if r['row'] == 'baseline']
  if arrival and base_runs:
    late = lambda runs: np.median([r['per_task'].get('emotion', np.nan) for r in runs])
    lines += ['', f"Task arrival: emotion accuracy {late(arrival):.3f} with its labels from "
              f"round {_ROUNDS.value // 2}, {late(base_runs):.3f} with them from round 0."]
  if million:
    small, big = million[500], million[1_000_000]
    lines += ['', f"10^6 users vs 500 (default config, 32 a round): round "
              f"{big['round_s']:.3f} s vs {small['round_s']:.3f} s; world "
              f"{big['world_bytes'] / 1e3:.0f} kB in both; per-user state "
              f"{big['client_state_bytes']} B vs {small['client_state_bytes']} B; peak RSS "
              f"{big['max_rss_mb']:.0f} MB."]
  text = '\n'.join(lines)
  with open(os.path.join(_OUT.value, 'shift.md'), 'w') as f:
    f.write(text + '\n')
  print(text)


def main(argv):
  del argv
  results = []
  wanted = set(_ROWS.value)
  for name, _, _, change in rows(_ROUNDS.value):
    if wanted and name not in wanted:
      continue
    for seed in range(_SEEDS.value):
      r = train(name, change, seed)
      print(json.dumps(r), flush=True)
      results.append(r)
  million = time_million() if _MILLION_ROUNDS.value else None
  write_outputs(results, million)


if __name__ == '__main__':
  app.run(main)
