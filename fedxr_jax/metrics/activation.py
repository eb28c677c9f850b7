"""Submodule activation efficiency: the modules each task actually runs (Table 6).

Per task, from summed eval stats:
  encoders    modalities present in more than `min_modality_share` of the
              task's labeled examples (default: in any) (modality_examples [T, M])
  experts     (layer, expert) pairs taking at least `expert_threshold` of the
              task's tokens in their layer (expert_tokens [T, L, E])
  lora_rank   mean LoRA rank over the task's examples (lora_rank_sum [T] =
              sum over examples of their client's rank)
  heads       the task's head (1)
`modules` counts the selectable ones (encoders + experts + heads); the
backbone runs for every task. `param_fraction` is the share of the whole
model's parameters the task runs, from a {module: parameter count} map:
  'encoder/<modality>'  one modality encoder
  'head/<task>'         one task head
  'expert'              one expert MLP of one layer
  'lora_rank'           one rank component summed over every LoRA factor
  any other key         always active (frozen base, prompts, gates, ...)
"""
from typing import Mapping, Optional, Sequence

import numpy as np

from fedxr_jax.metrics import stats as stats_lib


def _encoders(modality_examples, count, min_share):
  return np.nan_to_num(stats_lib.ratio(modality_examples, count[:, None])) > min_share


def _experts(expert_tokens, threshold):
  tokens = np.asarray(expert_tokens, np.float64)
  share = stats_lib.ratio(tokens, tokens.sum(-1, keepdims=True))
  return (np.nan_to_num(share) >= threshold) & (tokens > 0)   # [T, L, E]


def _fraction(param_counts, tasks, modalities, enc, experts, rank, lora_rank_max,
              num_slots):
  counts = dict(param_counts)
  need = [f'encoder/{m}' for m in modalities] + [f'head/{t}' for t in tasks]
  need += ['expert'] * bool(num_slots) + ['lora_rank'] * bool(lora_rank_max)
  lacking = sorted(set(need) - set(counts))
  if lacking:
    raise ValueError(f'param_counts lacks {lacking}')
  selectable = set(need)
  always = sum(v for k, v in counts.items() if k not in selectable)
  total = (always + sum(counts[f'encoder/{m}'] for m in modalities)
           + sum(counts[f'head/{t}'] for t in tasks)
           + num_slots * counts.get('expert', 0.0)
           + lora_rank_max * counts.get('lora_rank', 0.0))
  out = []
  for i, t in enumerate(tasks):
    active = (always + counts[f'head/{t}']
              + sum(counts[f'encoder/{m}'] for j, m in enumerate(modalities) if enc[i, j])
              + experts[i] * counts.get('expert', 0.0)
              + np.nan_to_num(rank[i]) * counts.get('lora_rank', 0.0))
    out.append(active / total if total else np.nan)
  return np.array(out)


def activation_metrics(count, tasks: Sequence[str], *, modalities: Sequence[str] = (),
                       modality_examples=None, expert_tokens=None, lora_rank_sum=None,
                       lora_rank_max: int = 0, expert_threshold: float = 0.05,
                       min_modality_share: float = 0.0,
                       param_counts: Optional[Mapping[str, float]] = None) -> dict:
  """activation/<task>/* counts and parameter fractions, and their means over tasks.

  count [T]: labeled examples per task (tasks without any are None). Absent
  inputs count zero modules of their kind (no MoE: no experts); without
  lora_rank_sum every example runs the full `lora_rank_max`.
  """
  count = np.asarray(count, np.float64)
  num_tasks = len(tasks)
  held = count > 0
  enc = (_encoders(np.asarray(modality_examples, np.float64), count, min_modality_share)
         if modality_examples is not None else np.zeros((num_tasks, len(modalities)), bool))
  if expert_tokens is not None:
    active = _experts(expert_tokens, expert_threshold)
    experts, per_layer, slots = active.sum((1, 2)), active.sum(2).mean(1), active[0].size
  else:
    experts = per_layer = np.zeros(num_tasks)
    slots = 0
  rank = (stats_lib.ratio(lora_rank_sum, count) if lora_rank_sum is not None
          else np.full(num_tasks, float(lora_rank_max)))
  heads = np.ones(num_tasks)
  columns = {'encoders': enc.sum(1).astype(np.float64), 'experts': experts.astype(np.float64),
             'experts_per_layer': per_layer, 'lora_rank': rank, 'heads': heads}
  columns['modules'] = columns['encoders'] + columns['experts'] + heads
  if param_counts is not None:
    columns['param_fraction'] = _fraction(param_counts, tasks, modalities, enc, experts,
                                          rank, lora_rank_max, slots)
  out = {}
  for name, values in columns.items():
    values = np.where(held, values, np.nan)
    task_keys = stats_lib.per_task('activation', name, values, tasks)
    if name not in ('modules', 'param_fraction'):   # means only for the headline keys
      task_keys.pop(f'activation/{name}')
    out.update(task_keys)
  return out
