"""A track's plots as SVG: Pareto fronts of the primary metric against a cost
metric, and learning curves beside the track's reference (FedAvg) curve.

Points and curves are labelled by rank or seed number, never by a submitted
string, and text is drawn as paths (svg.fonttype='path'): the file holds no
text from any submission. The output is byte-stable (fixed hash salt, no
date).
"""
import io
from typing import Optional, Sequence

import matplotlib
from matplotlib.figure import Figure

from fedxr_jax.bench import ranking

_FRONT, _OTHER = '#c0392b', '#7f8c8d'


def _svg(fig) -> bytes:
  buf = io.BytesIO()
  fig.savefig(buf, format='svg', metadata={'Date': None})
  return buf.getvalue()


def pareto_svg(ranked: Sequence, primary: str, cost: str, higher_is_better: bool,
               title: str, cost_label: str = '', primary_label: str = '') -> bytes:
  """ranked: [(rank, validate.Submission)] best first; entries lacking either
  metric are left out."""
  points = []
  for rank, s in ranked:
    p, c = s.stat(primary), s.stat(cost)
    if p and c and p['mean'] is not None and c['mean'] is not None:
      points.append((rank, c['mean'], p['mean'], p['std'] or 0.0))
  front = ranking.pareto_front([(c, y) for _, c, y, _ in points], higher_is_better)
  with matplotlib.rc_context({'svg.hashsalt': 'fedxr_jax', 'svg.fonttype': 'path'}):
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    for (rank, x, y, err), on_front in zip(points, front):
      color = _FRONT if on_front else _OTHER
      ax.errorbar([x], [y], yerr=[err], fmt='o' if on_front else 's', color=color,
                  ms=7 if on_front else 5, capsize=2)
      ax.annotate(str(rank), (x, y), textcoords='offset points', xytext=(5, 4),
                  fontsize=8, color=color)
    edge = sorted((x, y) for (_, x, y, _), f in zip(points, front) if f)
    if edge:
      ax.step([x for x, _ in edge], [y for _, y in edge], where='post', color=_FRONT,
              lw=1, alpha=0.6, label='Pareto front')
      ax.legend(fontsize=8, loc='best')
    ax.set_xlabel(f'{cost_label or cost} (lower is better)')
    ax.set_ylabel(f'{primary_label or primary} '
                  f'({"higher" if higher_is_better else "lower"} is better)')
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _svg(fig)


def curves_svg(series: Sequence[tuple], reference: Optional[Sequence], metric_label: str,
               title: str, target: Optional[float] = None) -> bytes:
  """series: [(label, [(round, value)])] (labels: ranks or seeds, made by the
  caller from numbers); reference: [(round, value)] of the track's reference
  entry, drawn dashed black; target: a horizontal line."""
  with matplotlib.rc_context({'svg.hashsalt': 'fedxr_jax', 'svg.fonttype': 'path'}):
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    for label, points in series:
      if points:
        ax.plot([r for r, _ in points], [v for _, v in points], marker='o', ms=3, lw=1.2,
                label=label)
    if reference:
      ax.plot([r for r, _ in reference], [v for _, v in reference], 'k--', lw=1.6,
              label='reference (FedAvg mean)')
    if target is not None:
      ax.axhline(target, color=_FRONT, lw=0.8, alpha=0.7, label=f'target {target:g}')
    ax.set_xlabel('round')
    ax.set_ylabel(metric_label)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7, loc='best')
    fig.tight_layout()
    return _svg(fig)
