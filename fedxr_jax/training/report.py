"""Human-readable results: a summary table, the Table 6 headlines, learning curves."""
import os

import numpy as np

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


def sweep_by_value(overrides, finals, keys) -> list:
  """Per swept value (over its seeds): the mean and spread of each final metric."""
  by_value = {}
  for value, final in zip(overrides, finals):
    by_value.setdefault(value, []).append(final)
  out = []
  for value, group in by_value.items():
    entry = {'overrides': dict(value), 'seeds': len(group)}
    for key in keys:
      values = [f[key] for f in group if f.get(key) is not None]
      entry[key] = {'mean': float(np.mean(values)) if values else None,
                    'std': float(np.std(values)) if values else None}
    out.append(entry)
  return out


def print_sweep(summary: dict, keys) -> None:
  """A sweep's programs, each lane's final metrics and the mean over seeds per value."""
  print(f"sweep: {len(summary['lanes'])} lane(s), {len(summary['groups'])} program(s), "
        f"{summary['round_compiles']} round compile(s), "
        f"{summary['compiles']['xla']} XLA compiles in all, {summary['wall_s']:.1f} s")
  for group in summary['groups']:
    note = f" ({group['why']})" if group['why'] else ''
    print(f"  {group['mode']}: {len(group['lanes'])} lane(s){note}")
  width = max(len(n) for n in summary['lanes'])
  print(f"{'lane':<{width}}  " + '  '.join(f'{k:>14}' for k in keys))
  for name, lane in summary['lanes'].items():
    cells = [('diverged' if lane['stopped'] else '-') if lane['final'].get(k) is None
             else f"{lane['final'][k]:.4f}" for k in keys]
    print(f'{name:<{width}}  ' + '  '.join(f'{c:>14}' for c in cells))
  if any(v['seeds'] > 1 for v in summary['by_value']):
    print('mean +- std over seeds:')
    for v in summary['by_value']:
      cells = [f"{k} {v[k]['mean']:.4f}+-{v[k]['std']:.4f}" if v[k]['mean'] is not None
               else f'{k} -' for k in keys]
      print(f"  {v['overrides']}: " + ', '.join(cells))
