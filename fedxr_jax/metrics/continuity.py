"""Task-specific continuity: forgetting and backward transfer on a fixed panel.

The history is a sequence of evaluations of the SAME clients (a fixed
panel), oldest first; on changing cohorts a drop in accuracy would mix
forgetting with who was evaluated. Each entry maps a task to its accuracy
(None or missing: not evaluated yet, e.g. the task had not arrived).

  forgetting_t = max(past accuracies of t) - current, clipped at 0
                 (Chaudhry et al. 2018, "Riemannian Walk", ECCV)
  BWT_t        = current - accuracy at the end of t's training phase
                 (Lopez-Paz & Ranzato 2017, GEM, NeurIPS)
The phase of a task ends with the last evaluation before the next task
arrives (the first evaluation where a new task has a value); tasks in the
last phase have no backward transfer yet.
"""
from typing import Mapping, Optional, Sequence

from fedxr_jax.metrics import stats as stats_lib


def _value(entry: Mapping, task: str) -> Optional[float]:
  v = entry.get(task)
  return None if v is None else float(v)


def forgetting(history: Sequence[Mapping], tasks: Sequence[str]) -> dict:
  """Forgetting per task of the last evaluation in `history`, and its mean."""
  values = []
  for t in tasks:
    past = [v for v in (_value(e, t) for e in history[:-1]) if v is not None]
    now = _value(history[-1], t) if history else None
    values.append(max(0.0, max(past) - now) if past and now is not None else None)
  return stats_lib.per_task('continuity', 'forgetting', values, tasks)


def _arrivals(history, tasks) -> dict:
  """Index of the first evaluation with a value, per task that has one."""
  out = {}
  for t in tasks:
    for i, e in enumerate(history):
      if _value(e, t) is not None:
        out[t] = i
        break
  return out


def backward_transfer(history: Sequence[Mapping], tasks: Sequence[str],
                      learned_at: Optional[Mapping[str, int]] = None) -> dict:
  """Backward transfer per task, and its mean over the tasks that have one.

  learned_at: {task: index into history} of the evaluation that ends each
  task's phase (default: the last one before the next task arrives).
  """
  first = _arrivals(history, tasks)
  if learned_at is None:
    starts = sorted(set(first.values()))
    learned_at = {}
    for t, i in first.items():
      later = [s for s in starts if s > i]
      if later:
        learned_at[t] = later[0] - 1
  values = []
  for t in tasks:
    then = _value(history[learned_at[t]], t) if t in learned_at else None
    now = _value(history[-1], t) if history else None
    values.append(now - then if then is not None and now is not None else None)
  return stats_lib.per_task('continuity', 'backward_transfer', values, tasks)


def continuity_metrics(history: Sequence[Mapping], tasks: Sequence[str]) -> dict:
  return {**forgetting(history, tasks), **backward_transfer(history, tasks)}


def panel_history(rows: Sequence[Mapping], tasks: Sequence[str],
                  prefix: str = 'panel') -> list:
  """The history from metrics.jsonl rows holding `<prefix>/<task>/accuracy`."""
  keys = [f'{prefix}/{t}/accuracy' for t in tasks]
  return [{t: r.get(k) for t, k in zip(tasks, keys)} for r in rows
          if any(k in r for k in keys)]
