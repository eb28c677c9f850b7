"""Human-readable results: a summary table, the Table 6 headlines, learning curves."""
import os

from fedxr_jax.data import catalog
from fedxr_jax.metrics import report as metrics_report

# Curves of one task share its colour: (prefix, line style, label).
CURVES = (('eval', '-', 'participating'), ('eval_unseen', '--', 'unseen'),
          ('panel', ':', 'panel'))


def _num_classes(tasks, num_classes):
  """Classes per task; None where neither the caller nor the catalog knows."""
  if num_classes:
    return list(num_classes)
  return [catalog.TASKS[t].num_classes if t in catalog.TASKS else None for t in tasks]


def print_summary(rows, tasks, num_classes=None) -> None:
  """num_classes: per task (default: the catalog's, for synthetic tasks)."""
  evaluated = [r for r in rows if 'eval/accuracy' in r]
  if not evaluated:
    return
  last = evaluated[-1]
  print(f"round {last['round']}: train loss {last['train/loss']:.4f}")
  print(f"{'task':<14}{'chance':>8}{'participating':>15}{'unseen users':>14}")
  fmt = lambda v: f'{v:.3f}' if v is not None else '-'
  for t, k in zip(tasks, _num_classes(tasks, num_classes)):
    print(f"{t:<14}{fmt(1.0 / k if k else None):>8}{fmt(last.get(f'eval/{t}/accuracy')):>15}"
          f"{fmt(last.get(f'eval_unseen/{t}/accuracy')):>14}")
  for line in metrics_report.summary_lines(rows):   # every row: per-round means
    print(line)


def curves_figure(rows, tasks, num_classes=None):
  """Loss and per-task accuracy; a task's curves and chance level share a colour."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
  ax_loss.plot([r['round'] for r in rows], [r['train/loss'] for r in rows], '.-')
  rows = [r for r in rows if 'eval/accuracy' in r]
  ax_loss.set(xlabel='round', ylabel='train loss', title='training loss')
  colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
  for i, (t, k) in enumerate(zip(tasks, _num_classes(tasks, num_classes))):
    colour = colours[i % len(colours)]
    for prefix, style, label in CURVES:
      key = f'{prefix}/{t}/accuracy'
      points = [(r['round'], r[key]) for r in rows if r.get(key) is not None]
      if points:   # markers: a run with one evaluation still shows it
        ax_acc.plot(*zip(*points), style, marker='o', markersize=3, color=colour,
                    label=f'{t} ({label})')
    if k:
      ax_acc.axhline(1.0 / k, color=colour, linewidth=0.8, alpha=0.5, linestyle='-.',
                     label=f'{t} (chance)')
  ax_acc.set(xlabel='round', ylabel='accuracy', title='held-out accuracy per task')
  ax_acc.legend(fontsize=6)
  fig.tight_layout()
  return fig


def plot_curves(rows, tasks, path: str, num_classes=None) -> str:
  fig = curves_figure(rows, tasks, num_classes)   # selects the Agg backend first
  import matplotlib.pyplot as plt
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
