"""Evaluation rows of a round: the metrics the host writes on evaluated rounds.

`Evaluator(exp)(server, clients, frozen, cohort)` evaluates the round's
participants on their held-out data (with their personal trees and models),
users outside the population (as new users), and, where clients keep their
own models, the spread of client accuracy.
"""
import jax
import jax.numpy as jnp
import numpy as np


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


def adaptation_metrics(sums: dict, num_clients: int) -> dict:
  """On-device cost of adapting before evaluation (local FT, TAP), per client."""
  if 'adapt_compute_s' not in sums:
    return {}
  return {'eval/adapt_compute_s': float(sums['adapt_compute_s']) / num_clients,
          'eval/adapt_energy_j': float(sums['adapt_energy_j']) / num_clients}


class Evaluator:
  """Evaluation rows of a round: participants, unseen users, client spread."""

  def __init__(self, exp):
    config, fed = exp.config, exp.federation
    self.exp, self.tasks = exp, exp.spec.tasks
    self.evaluate = jax.jit(fed.evaluate, static_argnames=(
        'split', 'personal_from_population', 'per_client'))
    # Ids past the population are never sampled: new users.
    self.unseen = jnp.arange(config.population_size,
                             config.population_size + config.eval_unseen_clients)

  def __call__(self, server, clients, frozen, cohort) -> dict:
    world, cohort = self.exp.world, jnp.asarray(cohort)
    sums = self.evaluate(server, clients, frozen, world, cohort, 'test')
    row = {**eval_metrics('eval', sums, self.tasks),
           **adaptation_metrics(sums, cohort.shape[0])}
    if self.unseen.shape[0]:
      row.update(eval_metrics('eval_unseen', self.evaluate(
          server, clients, frozen, world, self.unseen, 'test',
          personal_from_population=False), self.tasks))
    if self.exp.federation.topology.own_models is not None:
      row.update(client_spread(self.evaluate(server, clients, frozen, world, cohort,
                                             'test', per_client=True)))
    return row
