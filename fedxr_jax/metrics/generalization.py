"""Cross-context generalization: held-out contexts' accuracy minus the participants'.

Groups (Table 6: "new users or contexts not seen during training"):
  unseen_users           users outside the population (never sampled)
  holdout_environments   users in deployment environments no training client has
  holdout_devices        users on device types no training client has
A negative gap is a drop. Each group's sums are `eval_stats` summed over
its clients; `stats.sums_by_group` splits per-client stats by environment
or device when one evaluation covers several groups.
"""
from typing import Mapping, Sequence

from fedxr_jax.errors import ConfigError
from fedxr_jax.metrics import stats as stats_lib

GROUPS = ('unseen_users', 'holdout_environments', 'holdout_devices')


def gaps(participating: Mapping, held_out: Mapping[str, Mapping],
         tasks: Sequence[str]) -> dict:
  """Per group: its accuracy and its gap to `participating`, per task and mean.

  held_out: {group: summed eval stats}; a group name is one key segment.
  A task a group has no labels for is None, and left out of the means.
  """
  base = stats_lib.task_accuracy(participating)
  out = {}
  for group, sums in held_out.items():
    if not group or '/' in group:
      raise ConfigError(f'a held-out group name must be one word, got {group!r}')
    acc = stats_lib.task_accuracy(sums)
    out[f'generalization/{group}/accuracy'] = stats_lib.mean_defined(acc)
    out.update(stats_lib.per_task(f'generalization/{group}', 'gap', acc - base, tasks))
  return out
