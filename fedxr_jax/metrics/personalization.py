"""Personalization effectiveness and necessity rate (Table 6).

Effectiveness compares two evaluations of the same clients on the same
test data: with their personal trees (or algorithm's personal model) and
with the global model alone. Necessity asks, per user and per (user, task)
pair, whether the global model is already good enough without adaptation.
"""
from typing import Mapping, Optional, Sequence

import numpy as np

from fedxr_jax.errors import ConfigError
from fedxr_jax.metrics import stats as stats_lib


def effectiveness(personal: Mapping, global_: Mapping, tasks: Sequence[str]) -> dict:
  """Personalized minus global-model accuracy per task, from summed eval stats.

  Both sums must come from the same clients and examples: the label counts
  must match, or the difference would mix populations.
  """
  if not np.array_equal(np.asarray(personal['count']), np.asarray(global_['count'])):
    raise ConfigError('personalization effectiveness needs both evaluations on the same '
                      'clients and examples (their label counts differ)')
  gain = stats_lib.task_accuracy(personal) - stats_lib.task_accuracy(global_)
  return stats_lib.per_task('personalization', 'effectiveness', gain, tasks)


def _check_threshold(threshold: float, relative: Optional[float]) -> None:
  if not 0.0 <= threshold <= 1.0:
    raise ConfigError(f'eval.necessity_threshold must be in [0, 1], got {threshold}')
  if relative is not None and not 0.0 < relative <= 1.0:
    raise ConfigError(f'eval.necessity_relative must be in (0, 1], got {relative}')


def _rates(meets, held, tasks, suffix) -> dict:
  """Rates of pairs, per task, and of users meeting the bar on every task they hold."""
  users = held.any(1)
  user_ok = (meets | ~held).all(1) & users
  out = {f'personalization/necessity_rate{suffix}':
         stats_lib.scalar(stats_lib.ratio(user_ok.sum(), users.sum())),
         f'personalization/necessity_rate_pairs{suffix}':
         stats_lib.scalar(stats_lib.ratio((meets & held).sum(), held.sum()))}
  per_task = stats_lib.ratio((meets & held).sum(0), held.sum(0))
  out.update({f'personalization/{t}/necessity_rate{suffix}': stats_lib.scalar(r)
              for t, r in zip(tasks, per_task)})
  return out


def necessity_rate(correct, count, tasks: Sequence[str], *, threshold: float = 0.9,
                   relative: Optional[float] = 0.9) -> dict:
  """Share of users and of (user, task) pairs the global model already serves.

  correct, count: per-client eval stats of the global model [C, T] (padded
  clients have count 0 and drop out). A pair meets the bar when its accuracy
  is >= `threshold` (absolute) and, for the `_rel` keys, >= `relative` x
  the best user's accuracy on that task. A user meets it when every task it
  holds does. relative=None skips the relative keys.
  """
  _check_threshold(threshold, relative)
  correct, count = np.asarray(correct, np.float64), np.asarray(count, np.float64)
  held = count > 0
  acc = np.where(held, stats_lib.ratio(correct, count), -np.inf)
  out = _rates(acc >= threshold, held, tasks, '')
  if relative is not None:
    best = acc.max(0, initial=-np.inf)
    out.update(_rates(acc >= relative * best[None, :], held, tasks, '_rel'))
  return out
