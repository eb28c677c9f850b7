"""Human-readable results: a summary table and learning curves."""
import os

from fedxr_jax.data import catalog


def print_summary(rows, tasks, num_classes=None) -> None:
  """num_classes: per task (default: the catalog's, for synthetic tasks)."""
  rows = [r for r in rows if 'eval/accuracy' in r]
  if not rows:
    return
  last = rows[-1]
  print(f"round {last['round']}: train loss {last['train/loss']:.4f}")
  print(f"{'task':<14}{'chance':>8}{'participating':>15}{'unseen users':>14}")
  fmt = lambda v: f'{v:.3f}' if v is not None else '-'
  num_classes = num_classes or [catalog.TASKS[t].num_classes for t in tasks]
  for t, k in zip(tasks, num_classes):
    chance = 1.0 / k
    print(f"{t:<14}{chance:>8.3f}{fmt(last.get(f'eval/{t}/accuracy')):>15}"
          f"{fmt(last.get(f'eval_unseen/{t}/accuracy')):>14}")


def plot_curves(rows, tasks, path: str) -> str:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
  ax_loss.plot([r['round'] for r in rows], [r['train/loss'] for r in rows])
  rows = [r for r in rows if 'eval/accuracy' in r]
  rounds = [r['round'] for r in rows]
  ax_loss.set(xlabel='round', ylabel='train loss', title='training loss')
  for t in tasks:
    for prefix, style in (('eval', '-'), ('eval_unseen', '--')):
      key = f'{prefix}/{t}/accuracy'
      if any(r.get(key) is not None for r in rows):
        ax_acc.plot(rounds, [r.get(key) for r in rows], style,
                    label=f"{t} ({'participating' if prefix == 'eval' else 'unseen'})")
  ax_acc.set(xlabel='round', ylabel='accuracy', title='held-out accuracy per task')
  ax_acc.legend(fontsize=7)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
