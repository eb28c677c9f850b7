"""Pareto plots of a track: the primary metric against one cost metric, as SVG.

Points are labelled by rank, never by a submitted string, and text is drawn
as paths (svg.fonttype='path'): the file holds no text from any submission.
The output is byte-stable (fixed hash salt, no date).
"""
import io
from typing import Sequence

import matplotlib
from matplotlib.figure import Figure

from fedxr_jax.bench import ranking

_FRONT, _OTHER = '#c0392b', '#7f8c8d'


def pareto_svg(ranked: Sequence, primary: str, cost: str, higher_is_better: bool,
               title: str) -> bytes:
  """ranked: validate.Submission best first; entries lacking either metric are left out."""
  points = []
  for rank, s in enumerate(ranked, 1):
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
    ax.set_xlabel(f'{cost} (lower is better)')
    ax.set_ylabel(f'{primary} ({"higher" if higher_is_better else "lower"} is better)')
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='svg', metadata={'Date': None})
  return buf.getvalue()
