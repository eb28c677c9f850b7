"""The Table 6 report of one run or several side by side: Markdown, one HTML file, plots.

Reads each workdir's metrics.jsonl (one JSON row per round; null: not
measured), config.json and, where the run wrote one, eval_clients.jsonl
(the per-user table: the panel's worst 10% and per-device accuracy at the
last evaluation). A key logged every round (comm/, cost/) is
reported as its mean per round; any other key as its last logged value.
Metrics a run lacks show '-' and the registry's reason. The Table 7
trade-offs put each run at (final accuracy, run total of energy / uplink
bits / round latency). Damaged rows are skipped with a note, never a
traceback; a workdir without metrics.jsonl is a `FedXRError`.
"""
import base64
import dataclasses
import html
import json
import os
import re
from typing import Mapping, Optional, Sequence

import numpy as np

from fedxr_jax.errors import FedXRError
from fedxr_jax.metrics import clients as clients_lib
from fedxr_jax.metrics import registry

ACCURACY = 'eval/accuracy'
# Table 7 trade-offs a set of runs spans, each a scatter of one point per run:
# (row of Table 7: what is plotted, (y key, y label), (x key, x label, x reduction)).
# 'last': the last logged value; 'total': summed over the run's rounds.
TRADEOFFS = (
    ('Local personalization vs. global generalization: personalized vs. global accuracy',
     ('panel/accuracy', 'panel accuracy, personal models'),
     ('eval_unseen/accuracy', 'accuracy of never-seen users (global model)', 'last')),
    ('Local personalization vs. global generalization: accuracy vs. on-device energy',
     (ACCURACY, 'final accuracy'), ('cost/energy_j', 'total device energy (J)', 'total')),
    ('Update frequency vs. communication overhead: accuracy vs. uplink bits',
     (ACCURACY, 'final accuracy'), ('comm/uplink_bits', 'total uplink (bits)', 'total')),
    ('Centralized vs. decentralized D2D aggregation: accuracy vs. latency',
     (ACCURACY, 'final accuracy'), ('cost/latency_s', 'total round latency (s)', 'total')),
)
# Per-device-class bars: (title, key pattern with {device}, unit).
DEVICE_BARS = (
    ('storage footprint (float32)', 'storage/{device}/bytes_float32', 'bytes'),
    ('modeled inference latency', 'latency/modeled_ms/{device}', 'ms'),
    ('local training time per round', 'train_time/local_training/{device}/seconds', 's'),
    ('panel accuracy (eval_clients.jsonl)', 'clients/{device}/accuracy', 'accuracy'),
)
CONFIG_FIELDS = ('algorithm.name', 'topology.kind', 'num_rounds', 'cohort_size',
                 'population_size', 'local_steps', 'eval.panel_size')


@dataclasses.dataclass
class Run:
  name: str
  workdir: str
  rows: list
  config: dict
  notes: list     # problems met while reading, one line each
  users: dict = dataclasses.field(default_factory=dict)   # clients/* of eval_clients.jsonl

  def column(self, key: str) -> list:
    """(round, value) of every row that logged `key` (not null)."""
    return [(r.get('round'), r[key]) for r in self.rows
            if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]

  def value(self, key: str, per_round: bool = False) -> Optional[float]:
    col = [v for _, v in self.column(key)]
    if not col:
      return self.users.get(key)
    return float(np.mean(col)) if per_round else float(col[-1])

  def total(self, key: str) -> Optional[float]:
    col = [v for _, v in self.column(key)]
    return float(np.sum(col)) if col else None

  def keys(self) -> set:
    return {k for r in self.rows for k, v in r.items() if v is not None} | set(self.users)

  def config_value(self, dotted: str):
    node = self.config
    for part in dotted.split('.'):
      if not isinstance(node, Mapping) or part not in node:
        return None
      node = node[part]
    return node


def _read_rows(path: str, notes: list) -> list:
  rows = []
  with open(path, errors='replace') as f:
    for lineno, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        notes.append(f'{path}:{lineno}: damaged row skipped (invalid JSON at column {e.colno})')
        continue
      if not isinstance(row, dict):
        notes.append(f'{path}:{lineno}: row is not a JSON object, skipped')
        continue
      rows.append(row)
  return rows


def load_run(workdir: str, name: Optional[str] = None) -> Run:
  """Reads a workdir; problems that leave something to report become notes."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.isdir(workdir):
    raise FedXRError(f'{workdir}: no such workdir')
  if not os.path.isfile(path):
    raise FedXRError(f'{workdir}: no metrics.jsonl (is it a fedxr-train workdir?)')
  notes = []
  try:
    rows = _read_rows(path, notes)
  except OSError as e:
    raise FedXRError(f'{path}: cannot be read ({e.strerror})')
  if not rows:
    notes.append(f'{path}: no rows to report')
  config = {}
  config_path = os.path.join(workdir, 'config.json')
  try:
    with open(config_path) as f:
      config = json.load(f)
  except FileNotFoundError:
    notes.append(f'{workdir}: no config.json; the run settings are not shown')
  except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
    notes.append(f'{config_path}: unreadable ({type(e).__name__}); settings not shown')
  if not isinstance(config, dict):
    config = {}
  name = name or os.path.basename(os.path.normpath(workdir)) or workdir
  users = clients_lib.distribution(clients_lib.read(os.path.join(workdir, clients_lib.FILE)))
  return Run(name, workdir, rows, config, notes, users)


def load_runs(workdirs: Sequence[str]) -> list:
  runs = [load_run(w) for w in workdirs]
  names = [r.name for r in runs]
  for r in runs:   # two workdirs with one basename: show the paths as given
    if names.count(r.name) > 1:
      r.name = os.path.normpath(r.workdir)
  return runs


# ---- formatting -------------------------------------------------------------

_SI = ((1e12, 'T'), (1e9, 'G'), (1e6, 'M'), (1e3, 'k'))


def fmt(value: Optional[float], unit: str = '') -> str:
  """A value for a table cell in its unit ('-' when missing)."""
  if value is None:
    return '-'
  if unit in ('bits', 'bytes', 'FLOP'):
    short = {'bits': 'bit', 'bytes': 'B', 'FLOP': 'FLOP'}[unit]
    for scale, prefix in _SI:
      if abs(value) >= scale:
        return f'{value / scale:.3g} {prefix}{short}'
    return f'{value:.3g} {short}'
  if abs(value) >= 1e4 or (value and abs(value) < 1e-3):
    return f'{value:.3e}'
  return f'{value:.4g}'


def _unit(key: registry.Key) -> str:
  return f'{key.unit} / round' if key.per_round else key.unit


# ---- tables -----------------------------------------------------------------

def table6(runs: Sequence[Run]) -> list:
  """One row per headline key of each Table 6 metric: cells per run and the note."""
  out = []
  for m in registry.metrics():
    for pattern in m.headline:
      key = _concrete(m, pattern)
      values = [r.value(pattern, key.per_round) for r in runs]
      note = registry.missing_reason(m) if any(v is None for v in values) else ''
      out.append({'metric': m.name, 'shift': '-'.join(m.shift), 'key': pattern,
                  'unit': _unit(key), 'cells': [fmt(v, key.unit) for v in values],
                  'values': values, 'note': note})
  return out


def _concrete(metric, key: str) -> registry.Key:
  """The Key a concrete headline key is (or instantiates)."""
  for k in metric.keys:
    if k.regex.match(key):
      return k
  raise ValueError(f'{metric.slug}: headline {key!r} matches none of its keys')


def details(runs: Sequence[Run]) -> list:
  """(metric, [(key, unit, cells)]) for every concrete key any run logged."""
  logged = set().union(*(r.keys() for r in runs)) if runs else set()
  out = []
  for m in registry.metrics():
    rows = []
    for key in sorted(logged):
      hit = registry.lookup(key)
      if hit and hit[0] is m and key not in m.headline:
        k = hit[1]
        rows.append((key, _unit(k), [fmt(r.value(key, k.per_round), k.unit) for r in runs]))
    if rows:
      out.append((m, rows))
  return out


def tradeoffs(runs: Sequence[Run]) -> list:
  """Per Table 7 trade-off: title, (y label, x label) and (run, y, x) points."""
  out = []
  for title, (y_key, y_label), (x_key, x_label, reduce) in TRADEOFFS:
    x_of = (lambda r, k=x_key: r.total(k)) if reduce == 'total' else (
        lambda r, k=x_key: r.value(k))
    out.append((title, (y_label, x_label), [(r.name, r.value(y_key), x_of(r)) for r in runs]))
  return out


# A DP run's bounds on epsilon, side by side: the accountant's (an upper bound) and,
# with privacy.audit.canaries, the audited one (a lower bound at its confidence).
UPPER, LOWER = 'privacy/epsilon', 'privacy/audit_epsilon'


def _last_text(run: Run, key: str) -> Optional[str]:
  col = [r[key] for r in run.rows if isinstance(r.get(key), str)]
  return col[-1] if col else None


def privacy_bounds(runs: Sequence[Run]) -> list:
  """[setting, cells per run] of each run's epsilon bounds ([]: no run logged an epsilon).

  A lower bound above the upper one is a note on its run: the audit's
  1 - confidence chance, or a wrong accountant.
  """
  if not any(r.column(UPPER) or r.column(LOWER) for r in runs):
    return []
  for r in runs:
    upper, lower = r.value(UPPER), r.value(LOWER)
    note = (f'{r.name}: the audited epsilon {lower:.4g} exceeds the accountant\'s '
            f'{upper:.4g} (an event of probability <= 1 - privacy.audit.confidence, or an '
            'accountant that does not bound this run)' if upper is not None
            and lower is not None and lower > upper else None)
    if note and note not in r.notes:
      r.notes.append(note)
  text = lambda key: [_last_text(r, key) or '-' for r in runs]
  config = lambda key: [str(r.config_value(key)) if r.config_value(key) is not None else '-'
                        for r in runs]
  return [['epsilon (accountant, upper bound)'] + [fmt(r.value(UPPER)) for r in runs],
          ['accountant'] + text('privacy/accountant'),
          ['sampling'] + text('privacy/sampling'),
          ['mechanism'] + text('privacy/mechanism'),
          ['delta'] + config('privacy.delta'),
          ['audited epsilon (lower bound)'] + [fmt(r.value(LOWER)) for r in runs],
          ['audit canaries'] + config('privacy.audit.canaries'),
          ['audit confidence'] + config('privacy.audit.confidence')]


def _user_rows(runs) -> list:
  """clients/* rows: the distribution of accuracy over the panel's users."""
  keys = sorted(set().union(*(r.users for r in runs)), key=lambda k: (k.count('/'), k))
  return [[k] + [fmt(r.users.get(k)) for r in runs] for k in keys]


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list:
  cell = lambda s: str(s).replace('|', '\\|')
  lines = ['| ' + ' | '.join(cell(h) for h in header) + ' |',
           '|' + '|'.join('---' for _ in header) + '|']
  lines += ['| ' + ' | '.join(cell(c) for c in row) + ' |' for row in rows]
  return lines


def _flat(config, prefix: str = '') -> dict:
  out = {}
  for key, value in (config or {}).items():
    if isinstance(value, Mapping):
      out.update(_flat(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


def differing_settings(runs: Sequence[Run]) -> list:
  """The config keys whose values differ between the runs (what the comparison is about)."""
  flats = [_flat(r.config) for r in runs]
  keys = sorted(set().union(*flats)) if flats else []
  return [k for k in keys if len({repr(f.get(k)) for f in flats}) > 1]


def _settings_rows(runs):
  shown = list(CONFIG_FIELDS) + [k for k in differing_settings(runs) if k not in CONFIG_FIELDS]
  return [[f] + [str(r.config_value(f)) if r.config_value(f) is not None else '-'
                 for r in runs] for f in shown] + [
      ['rows logged'] + [str(len(r.rows)) for r in runs],
      [ACCURACY + ' (last)'] + [fmt(r.value(ACCURACY)) for r in runs]]


def markdown(runs: Sequence[Run], images: Mapping[str, str] = None) -> str:
  """The report as Markdown; `images` maps a caption to a PNG path relative to it."""
  names = [r.name for r in runs]
  lines = ['# Table 6 evaluation metrics', '',
           'Per-round keys: mean per round. Other keys: last logged value. '
           "'-': not in this run (see note).", '', '## Runs', '']
  lines += _md_table(['setting'] + names, _settings_rows(runs))
  lines += ['', '## Table 6', '']
  lines += _md_table(['metric', 'SHIFT', 'key', 'unit'] + names + ['note'],
                     [[t['metric'], t['shift'], t['key'], t['unit']] + t['cells'] + [t['note']]
                      for t in table6(runs)])
  bounds = privacy_bounds(runs)
  if bounds:
    lines += ['', '## Privacy: the accountant\'s epsilon and the audited one', '']
    lines += _md_table(['bound'] + names, bounds)
  for m, rows in details(runs):
    lines += ['', f'### {m.name}: all keys', '']
    lines += _md_table(['key', 'unit'] + names, [[k, u] + c for k, u, c in rows])
  user_rows = _user_rows(runs)
  if user_rows:
    lines += ['', '## Users (panel, last evaluation, eval_clients.jsonl)', '']
    lines += _md_table(['key'] + names, user_rows)
  lines += ['', '## Table 7 trade-offs', '']
  for title, (y_label, x_label), points in tradeoffs(runs):
    lines += [f'**{title}**', '']
    lines += _md_table(['run', y_label, x_label], [[n, fmt(y), fmt(x)] for n, y, x in points])
    lines += ['']
  for caption, path in (images or {}).items():
    lines += [f'![{caption}]({path})', '']
  notes = [n for r in runs for n in r.notes]
  if notes:
    lines += ['## Notes', ''] + [f'- {n}' for n in notes] + ['']
  return '\n'.join(lines)


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f0f0f0}td.missing{color:#999}img{max-width:100%}
.note{color:#666;font-size:12px}"""


def _html_table(header, rows) -> str:
  e = html.escape
  head = ''.join(f'<th>{e(str(h))}</th>' for h in header)
  body = ''.join('<tr>' + ''.join(
      f'<td class="missing">{e(str(c))}</td>' if c == '-' else f'<td>{e(str(c))}</td>'
      for c in row) + '</tr>' for row in rows)
  return f'<table><tr>{head}</tr>{body}</table>'


def html_report(runs: Sequence[Run], images: Mapping[str, bytes] = None) -> str:
  """One self-contained HTML file: inline CSS, PNGs embedded as base64."""
  e = html.escape
  names = [r.name for r in runs]
  parts = ['<!DOCTYPE html><html><head><meta charset="utf-8">',
           '<title>Table 6 evaluation metrics</title>', f'<style>{_CSS}</style></head><body>',
           '<h1>Table 6 evaluation metrics</h1>',
           '<p class="note">Per-round keys: mean per round. Other keys: last logged value. '
           "'-': not in this run (see note).</p>", '<h2>Runs</h2>',
           _html_table(['setting'] + names, _settings_rows(runs)), '<h2>Table 6</h2>',
           _html_table(['metric', 'SHIFT', 'key', 'unit'] + names + ['note'],
                       [[t['metric'], t['shift'], t['key'], t['unit']] + t['cells']
                        + [t['note']] for t in table6(runs)])]
  bounds = privacy_bounds(runs)
  if bounds:
    parts += ['<h2>Privacy: the accountant\'s epsilon and the audited one</h2>',
              _html_table(['bound'] + names, bounds)]
  for m, rows in details(runs):
    parts += [f'<h3>{e(m.name)}: all keys</h3>',
              _html_table(['key', 'unit'] + names, [[k, u] + c for k, u, c in rows])]
  user_rows = _user_rows(runs)
  if user_rows:
    parts += ['<h2>Users (panel, last evaluation, eval_clients.jsonl)</h2>',
              _html_table(['key'] + names, user_rows)]
  parts.append('<h2>Table 7 trade-offs</h2>')
  for title, (y_label, x_label), points in tradeoffs(runs):
    parts += [f'<h4>{e(title)}</h4>', _html_table(['run', y_label, x_label],
                                                  [[n, fmt(y), fmt(x)] for n, y, x in points])]
  for caption, png in (images or {}).items():
    data = base64.b64encode(png).decode('ascii')
    parts.append(f'<figure><img alt="{e(caption)}" src="data:image/png;base64,{data}">'
                 f'<figcaption>{e(caption)}</figcaption></figure>')
  notes = [n for r in runs for n in r.notes]
  if notes:
    parts += ['<h2>Notes</h2><ul>'] + [f'<li>{e(n)}</li>' for n in notes] + ['</ul>']
  parts.append('</body></html>')
  return '\n'.join(parts)


# ---- plots ------------------------------------------------------------------

def _pyplot():
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  return plt


def _save(fig, path: str) -> str:
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  _pyplot().close(fig)
  return path


CURVES = (('held-out accuracy', ACCURACY, False), ('training loss', 'train/loss', False),
          ('uplink bits (cumulative)', 'comm/uplink_bits', True),
          ('device energy, J (cumulative)', 'cost/energy_j', True))


def plot_curves(runs: Sequence[Run], path: str) -> Optional[str]:
  """Curves over rounds of every run; None when no run logged any of them."""
  panels = [c for c in CURVES if any(r.column(c[1]) for r in runs)]
  if not panels:
    return None
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
  for ax, (title, key, cumulative) in zip(axes[0], panels):
    for r in runs:
      col = r.column(key)
      if col:
        x, y = zip(*col)
        ax.plot(x, np.cumsum(y) if cumulative else y, '.-', label=r.name)
    ax.set(title=title, xlabel='round')
  axes[0][0].legend(fontsize=7)
  return _save(fig, path)


VIRTUAL = 'time/virtual_s'


def virtual_times(run: Run) -> dict:
  """{round: virtual seconds at its end}: the row's `time/virtual_s` (server steps and
  rounds log it), else the sum of `cost/latency_s` so far (rows written before it)."""
  out, total = {}, 0.0
  for r in sorted((r for r in run.rows if isinstance(r.get('round'), int)),
                  key=lambda r: r['round']):
    latency = r.get('cost/latency_s')
    total += latency if isinstance(latency, (int, float)) else 0.0
    logged = r.get(VIRTUAL)
    out[r['round']] = float(logged) if isinstance(logged, (int, float)) else total
  return out


def plot_virtual_time(runs: Sequence[Run], path: str) -> Optional[str]:
  """Held-out accuracy against the cost model's clock, synchronous rounds and
  asynchronous server steps side by side; None unless a run logged the clock
  (runs from before it are drawn beside one that did)."""
  if not any(r.column(VIRTUAL) for r in runs):
    return None
  curves = []
  for r in runs:
    clock = virtual_times(r)
    points = [(clock[n], v) for n, v in r.column(ACCURACY) if n in clock]
    if points and any(VIRTUAL in row or 'cost/latency_s' in row for row in r.rows):
      curves.append((r, points))
  if not curves:
    return None
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5.5, 3.6))
  for r, points in curves:
    kind = r.config_value('asynchrony.kind')
    label = r.name if kind in (None, 'none') else f'{r.name} ({kind})'
    x, y = zip(*points)
    ax.plot(x, y, '.-', label=label)
  ax.set(title='held-out accuracy vs. virtual time', xlabel='virtual seconds (cost model)',
         ylabel='accuracy')
  ax.legend(fontsize=7)
  return _save(fig, path)


def _device_values(runs, pattern):
  rx = re.compile(re.escape(pattern).replace(re.escape('{device}'), '([^/]+)') + '$')
  devices = sorted({m.group(1) for r in runs for k in r.keys() for m in [rx.match(k)] if m})
  return devices, [[r.value(pattern.format(device=d)) for d in devices] for r in runs]


def plot_devices(runs: Sequence[Run], path: str) -> Optional[str]:
  """Grouped bars per device class (one bar per run) of the per-device keys."""
  panels = [(t, p, u) + _device_values(runs, p) for t, p, u in DEVICE_BARS]
  panels = [p for p in panels if p[3]]
  if not panels:
    return None
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
  width = 0.8 / max(len(runs), 1)
  for ax, (title, _, unit, devices, values) in zip(axes[0], panels):
    x = np.arange(len(devices))
    for i, (r, vals) in enumerate(zip(runs, values)):
      ax.bar(x + i * width, [np.nan if v is None else v for v in vals], width, label=r.name)
    ax.set_xticks(x + width * (len(runs) - 1) / 2, devices, rotation=45, ha='right',
                  fontsize=7)
    ax.set(title=title, ylabel=unit)
  axes[0][0].legend(fontsize=7)
  return _save(fig, path)


def plot_tradeoffs(runs: Sequence[Run], path: str) -> Optional[str]:
  """Table 7 scatters: one point per run with both coordinates."""
  panels = [(t, l, [p for p in pts if p[1] is not None and p[2] is not None])
            for t, l, pts in tradeoffs(runs)]
  panels = [p for p in panels if p[2]]
  if not panels:
    return None
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
  for ax, (title, (y_label, x_label), points) in zip(axes[0], panels):
    for name, y, x in points:
      ax.scatter([x], [y])
      ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords='offset points')
    ax.set(xlabel=x_label, ylabel=y_label)
    ax.set_title(title.replace(': ', ':\n'), fontsize=7)
  return _save(fig, path)


# ---- entry points -----------------------------------------------------------

@dataclasses.dataclass
class Written:
  markdown: str
  html: str
  images: dict     # caption -> PNG path
  notes: list


def write_report(workdirs: Sequence[str], out_dir: str) -> Written:
  """Writes report.md, report.html and the PNGs into `out_dir`."""
  if not workdirs:
    raise FedXRError('give at least one workdir')
  runs = load_runs(workdirs)
  os.makedirs(out_dir, exist_ok=True)
  images = {}
  for caption, plot, name in (('curves', plot_curves, 'curves.png'),
                              ('per device class', plot_devices, 'devices.png'),
                              ('Table 7 trade-offs', plot_tradeoffs, 'tradeoffs.png'),
                              ('accuracy vs. virtual time', plot_virtual_time,
                               'virtual_time.png')):
    path = plot(runs, os.path.join(out_dir, name))
    if path:
      images[caption] = path
  md_path = os.path.join(out_dir, 'report.md')
  with open(md_path, 'w') as f:
    f.write(markdown(runs, {c: os.path.basename(p) for c, p in images.items()}))
  pngs = {}
  for caption, path in images.items():
    with open(path, 'rb') as f:
      pngs[caption] = f.read()
  html_path = os.path.join(out_dir, 'report.html')
  with open(html_path, 'w') as f:
    f.write(html_report(runs, pngs))
  return Written(md_path, html_path, images, [n for r in runs for n in r.notes])


def summary_lines(rows: Sequence[Mapping], name: str = 'run') -> list:
  """Short text of the Table 6 headline values of one run, for fedxr-train to print."""
  run = Run(name, '', list(rows), {}, [])
  lines, missing = ['Table 6 metrics (per-round keys: mean per round):'], []
  by_metric = {}
  for t in table6([run]):
    by_metric.setdefault(t['metric'], []).append(t)
  for metric, entries in by_metric.items():
    shown = [f"{t['key']} {t['cells'][0]}" for t in entries if t['values'][0] is not None]
    if shown:
      lines.append(f'  {metric:<32}' + '; '.join(shown))
    else:
      missing.append(metric)
  if missing:
    lines.append(f'  {registry.MISSING}: ' + ', '.join(missing))
  return lines
