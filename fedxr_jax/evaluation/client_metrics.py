"""Table 6 metrics of one evaluation, from per-client stats (host-side numpy).

`core.evaluate` with per_client=True gives each client's eval stats [C, ...]
and, on request, the global model's ('global') and per-example losses;
these functions turn them into metrics.jsonl keys and eval_clients.jsonl
records. Sums over clients are added here, so any chunking agrees.
"""
from typing import Mapping, Optional, Sequence

import jax
import numpy as np

from fedxr_jax.data import catalog
from fedxr_jax.metrics import activation
from fedxr_jax.metrics import latency
from fedxr_jax.metrics import personalization
from fedxr_jax.metrics import privacy
from fedxr_jax.metrics import qoe
from fedxr_jax.metrics import stats as stats_lib
from fedxr_jax.metrics import training_time
from fedxr_jax.privacy import membership

# Per-client outputs of core.evaluate that are not eval_stats sums.
EXTRAS = ('device', 'environment', 'train_flops', 'global', 'train_losses', 'train_valid',
          'test_losses', 'test_valid')


def sums(per_client: Mapping) -> dict:
  """The eval stats of per-client outputs summed over clients."""
  return {k: jax.tree.map(lambda x: np.sum(np.asarray(x, np.float64), axis=0), v)
          for k, v in per_client.items() if k not in EXTRAS}


def budgets(tasks: Sequence[str], classes: Sequence[tuple] = ()):
  """(budget ms [T], latency classes) of Table 2, or None if a task has no class."""
  classes = dict(classes)
  if any(t not in catalog.TASKS and t not in classes for t in tasks):
    return None
  return latency.budgets(tasks, classes)


def client_latency_ms(facts, precision: str, device, train_flops) -> np.ndarray:
  """Each client's modeled forward latency [C]: its device's, x its straggler slowdown."""
  per_device = latency.device_latency_ms(facts.flops_per_example, facts.devices,
                                         precision=precision, scale=facts.scale)
  nominal = np.array([d.train_flops for d in facts.devices])
  idx = np.maximum(np.asarray(device), 0)
  return per_device[idx] * nominal[idx] / np.asarray(train_flops, np.float64)


def personalization_metrics(per_client: Mapping, tasks, protocol) -> dict:
  """Effectiveness (personal - global, same clients) and the global model's necessity."""
  glob = {k: np.asarray(v, np.float64) for k, v in per_client['global'].items()
          if k != 'tasks'}   # the kind-specific sums: the accuracy of every kind is enough
  out = personalization.effectiveness(sums(per_client), {k: v.sum(0) for k, v in glob.items()},
                                      tasks)
  out.update(personalization.necessity_rate(
      glob['correct'], glob['count'], tasks, threshold=protocol.necessity_threshold,
      relative=protocol.necessity_relative))
  return out


def latency_qoe_metrics(per_client: Mapping, latency_ms, budget, ids, key, tasks,
                        protocol) -> dict:
  """Budget violations per task and class, and both QoE models, per (client, task)."""
  budget_ms, classes = budget
  correct, count = np.asarray(per_client['correct']), np.asarray(per_client['count'])
  out = latency.violation_metrics(latency.violation_stats(latency_ms, count > 0, budget_ms),
                                  tasks, classes)
  reported = qoe.user_reported_stats(key, correct, count, latency_ms, budget_ms,
                                     np.asarray(ids), protocol.user)
  inferred = qoe.inferred_stats(correct, count, latency_ms, budget_ms, protocol.behaviour)
  out.update(qoe.user_reported_metrics({k: np.asarray(v) for k, v in reported.items()}, tasks))
  out.update(qoe.inferred_metrics({k: np.asarray(v) for k, v in inferred.items()}, tasks))
  return out


def activation_metrics(summed: Mapping, spec, facts, protocol) -> dict:
  """The modules each task runs, from summed per-task modality and routing stats."""
  return activation.activation_metrics(
      summed['count'], spec.tasks, modalities=spec.modalities,
      modality_examples=summed.get('modality_examples'),
      expert_tokens=summed.get('expert_tokens'), lora_rank_sum=summed.get('lora_rank_sum'),
      lora_rank_max=facts.lora_rank, expert_threshold=protocol.expert_threshold,
      param_counts=facts.param_counts)


def before_arrival_metrics(summed: Mapping, tasks) -> dict:
  """Accuracy on tasks whose labels have not arrived yet (data.functional.arrival_rounds)."""
  if 'count_before_arrival' not in summed:
    return {}
  count = np.asarray(summed['count_before_arrival'])
  acc = stats_lib.ratio(summed['correct_before_arrival'], count)
  return {f'generalization/before_arrival/{t}/accuracy': float(a)
          for t, a, n in zip(tasks, acc, count) if n > 0}


def fine_tuning_metrics(per_client: Mapping, facts) -> dict:
  """On-device time of adapting before evaluation (local FT, TAP), per device class."""
  if 'adapt_compute_s' not in per_client:
    return {}
  return training_time.client_event_metrics(
      'fine_tuning', per_client['adapt_compute_s'], per_client['adapt_energy_j'],
      per_client['device'], facts.devices)


def membership_metrics(per_client: Mapping, members) -> dict:
  """Loss-threshold attack AUC: members' training examples vs their test examples.

  members [C]: the clients whose training examples the model has seen.
  """
  m = np.asarray(members, bool)
  if not m.any():
    return {}
  pick = lambda name: np.asarray(per_client[f'{name}_losses'])[m][
      np.asarray(per_client[f'{name}_valid'], bool)[m]]
  auc = membership.roc_auc(np.asarray(membership.loss_score(pick('train'))),
                           np.asarray(membership.loss_score(pick('test'))))
  return privacy.privacy_metrics(mia_auc=auc)


def records(group: str, ids, per_client: Mapping, tasks, facts,
            latency_ms: Optional[np.ndarray] = None) -> list:
  """eval_clients.jsonl records: one per client, accuracy per task and overall."""
  correct, count = np.asarray(per_client['correct']), np.asarray(per_client['count'])
  loss = np.asarray(per_client['loss_sum'])
  glob = per_client.get('global')
  out = []
  for i, c in enumerate(np.asarray(ids)):
    dev, env = int(per_client['device'][i]), int(per_client['environment'][i])
    rec = {'group': group, 'client': int(c),
           'device': facts.devices[dev].name if dev >= 0 else None,
           'environment': facts.environments[env] if 0 <= env < len(facts.environments)
           else None,
           'accuracy': stats_lib.scalar(stats_lib.ratio(correct[i].sum(), count[i].sum()))}
    if glob is not None:
      rec['global_accuracy'] = stats_lib.scalar(stats_lib.ratio(
          np.sum(glob['correct'][i]), np.sum(glob['count'][i])))
    if latency_ms is not None:
      rec['latency_ms'] = float(latency_ms[i])
    for t, name in enumerate(tasks):
      rec[f'{name}/count'] = float(count[i, t])
      rec[f'{name}/accuracy'] = stats_lib.scalar(stats_lib.ratio(correct[i, t], count[i, t]))
      rec[f'{name}/loss'] = stats_lib.scalar(stats_lib.ratio(loss[i, t], count[i, t]))
    out.append(rec)
  return out
