"""run(config, workdir): the host loop around the compiled round."""
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from fedxr_jax.core import rng
from fedxr_jax.training import checkpoint as checkpoint_lib
from fedxr_jax.training import experiment as experiment_lib
from fedxr_jax.training import metrics_log
from fedxr_jax.training import report

# Keys that may change when a run resumes; every other key must match.
RESUMABLE_KEYS = ('num_rounds', 'eval_every', 'checkpoint_every',
                  'max_checkpoints', 'plot')


def eval_metrics(prefix: str, sums: dict, tasks) -> dict:
  """Per-task accuracy and loss from summed eval stats (None: no labels)."""
  sums = jax.tree.map(np.asarray, sums)
  out, accs = {}, []
  for t, name in enumerate(tasks):
    count = float(sums['count'][t])
    acc = float(sums['correct'][t]) / count if count else None
    out[f'{prefix}/{name}/accuracy'] = acc
    out[f'{prefix}/{name}/loss'] = float(sums['loss_sum'][t]) / count if count else None
    if acc is not None:
      accs.append(acc)
  out[f'{prefix}/accuracy'] = float(np.mean(accs)) if accs else None
  if 'expert_tokens' in sums:
    # Submodule activation: share of each task's tokens routed to each expert
    # ([layer][expert]), and the experts that take >= 5% of them.
    for t, name in enumerate(tasks):
      routed = sums['expert_tokens'][t]
      share = routed / np.maximum(routed.sum(-1, keepdims=True), 1e-9)
      out[f'{prefix}/{name}/expert_share'] = np.round(share, 4).tolist()
      out[f'{prefix}/{name}/experts_active'] = float((share >= 0.05).sum(-1).mean())
  return out


def forgetting(rows: list, row: dict, prefix: str, tasks) -> dict:
  """Forgetting of each task: best past accuracy minus the current one."""
  out = {}
  for name in tasks:
    key = f'{prefix}/{name}/accuracy'
    past = [r[key] for r in rows if r.get(key) is not None]
    if past and row.get(key) is not None:
      out[f'{prefix}/{name}/forgetting'] = max(0.0, max(past) - row[key])
  return out


def client_spread(per_client: dict) -> dict:
  """Spread of per-client accuracy (mean over each client's tasks)."""
  correct, count = np.asarray(per_client['correct']), np.asarray(per_client['count'])
  held = count.sum(-1) > 0
  acc = correct.sum(-1)[held] / count.sum(-1)[held]
  return {'eval/client_accuracy_std': float(acc.std()) if acc.size else None,
          'eval/client_accuracy_min': float(acc.min()) if acc.size else None}


def run(config, workdir: str, progress: bool = True) -> list:
  """Trains (or resumes) the federation described by `config` in `workdir`.

  Returns the rows of metrics.jsonl. Everything is a pure function of the
  config, so a resumed run ends exactly where an uninterrupted one does.
  """
  exp = experiment_lib.build(config)
  os.makedirs(workdir, exist_ok=True)
  lock = checkpoint_lib.lock_workdir(workdir)
  try:
    return _run_locked(exp, config, workdir, progress)
  finally:
    lock.close()


def _run_locked(exp, config, workdir: str, progress: bool) -> list:
  immutable = [k for k in config.keys() if k not in RESUMABLE_KEYS]
  checkpoint_lib.write_run_config(workdir, config.to_json(), immutable)
  fed, world = exp.federation, exp.world

  server, clients, frozen = jax.jit(fed.init)(world)
  ckpts = checkpoint_lib.Checkpoints(os.path.join(workdir, 'checkpoints'),
                                     config.max_checkpoints)
  start = ckpts.latest_round() or 0
  if start:
    state = ckpts.restore(start, {'server': server, 'clients': clients})
    server, clients = state['server'], state['clients']
  log = metrics_log.MetricsLog(os.path.join(workdir, 'metrics.jsonl'), start)

  round_fn = jax.jit(fed.round, donate_argnums=(0, 1))
  evaluate = jax.jit(fed.evaluate, static_argnames=(
      'split', 'personal_from_population', 'per_client'))
  seed_key = jax.random.key(config.seed)
  cohort_of = jax.jit(lambda r: rng.sample_cohort(
      seed_key, r, config.population_size, config.cohort_size))
  # Ids past the population are never sampled: new users.
  unseen = jnp.arange(config.population_size,
                      config.population_size + config.eval_unseen_clients)
  tasks = exp.spec.tasks

  if start >= config.num_rounds:
    print(f'{workdir}: already trained {start} rounds (num_rounds='
          f'{config.num_rounds}); raise --config.num_rounds to continue.')
  bar = tqdm.tqdm(range(start, config.num_rounds), initial=start,
                  total=config.num_rounds, desc='rounds', unit='round',
                  disable=not progress, file=sys.stderr)
  round_seconds = []
  for r in bar:
    topo, graph_stats = exp.layout(r)
    t0 = time.perf_counter()
    server, clients, metrics = round_fn(server, clients, frozen, world, topo)
    jax.block_until_ready(metrics)
    round_seconds.append(time.perf_counter() - t0)
    done = r + 1
    row = {'round': done, **graph_stats}
    row.update({k: float(v) for k, v in metrics.items()})
    if done % config.eval_every == 0 or done == config.num_rounds:
      row.update(eval_metrics('eval', evaluate(
          server, clients, frozen, world, cohort_of(r), 'test'), tasks))
      row.update(forgetting(log.rows, row, 'eval', tasks))
      if config.eval_unseen_clients:
        row.update(eval_metrics('eval_unseen', evaluate(
            server, clients, frozen, world, unseen, 'test',
            personal_from_population=False), tasks))
      if fed.coordination.own_models is not None:
        row.update(client_spread(evaluate(server, clients, frozen, world,
                                          cohort_of(r), 'test', per_client=True)))
      bar.set_postfix(loss=f"{row['train/loss']:.3f}",
                      acc=f"{row['eval/accuracy'] or 0:.3f}")
    log.append(row)
    if done % config.checkpoint_every == 0 or done == config.num_rounds:
      ckpts.save(done, {'server': server, 'clients': clients})
  bar.close()
  ckpts.close()

  if round_seconds:
    # The first round includes compilation.
    steady = round_seconds[1:] or round_seconds
    print(f'{len(round_seconds)} rounds: first (with compile) '
          f'{round_seconds[0]:.2f} s, then median {np.median(steady):.3f} s/round '
          f'({config.cohort_size} clients x {config.local_steps} local steps)')
  report.print_summary(log.rows, tasks, exp.spec.num_classes)
  if config.plot and log.rows:
    path = report.plot_curves(log.rows, tasks, os.path.join(workdir, 'curves.png'))
    print(f'curves: {path}')
  return log.rows
