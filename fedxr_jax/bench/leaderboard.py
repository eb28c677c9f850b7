"""The leaderboard: a static HTML site ranking the valid submissions of each track.

  build_site(submissions_dir, out_dir, tracks) -> Board

Every `*.json` in `submissions_dir` (not `*.verified.json`) is validated
(validate.py); invalid files are listed with their one-line reason on
invalid.html and never ranked. Each track is ranked by its primary metric
(mean ± std over seeds, ties broken by ranking.sort_key), with its cost
metrics beside it ('-' where an entry does not report one), Pareto plots of
the primary metric against each cost metric (plots/*.svg, front in red),
and a "verified" badge where `verification.status` says so. Pages:
index.html (every track and its ranked rows), track-ID-vN.html (details,
frozen and open parts, plots), invalid.html; entries/*.json are the valid
files as published. Plain HTML with inline CSS: no scripts, no fonts or
styles from the network; every string from a file is HTML-escaped.
"""
import dataclasses
import glob
import hashlib
import html
import os
import re
from typing import Optional

from fedxr_jax.bench import canonical
from fedxr_jax.bench import files
from fedxr_jax.bench import plots
from fedxr_jax.bench import ranking
from fedxr_jax.bench import submission as submission_lib
from fedxr_jax.bench import track as track_lib
from fedxr_jax.bench import validate
from fedxr_jax.bench import verification
from fedxr_jax.bench.errors import SubmissionError
from fedxr_jax.errors import FedXRError

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2em auto;
max-width:72em;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border-bottom:1px solid #ddd;padding:.3em .7em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;font-size:.75em;padding:.05em .5em;border-radius:.8em;
margin-left:.4em}
.verified{background:#1e8449;color:#fff}.failed{background:#c0392b;color:#fff}
.muted{color:#777}code{font-size:.9em;word-break:break-all}
img.plot{max-width:100%;border:1px solid #eee;margin:.4em .4em 0 0}
"""


@dataclasses.dataclass(frozen=True)
class Entry:
  submission: validate.Submission
  rank: int
  verification: str          # verification.status: verified | failed | stale | invalid | none
  verification_detail: str


@dataclasses.dataclass(frozen=True)
class Invalid:
  file: str
  reason: str


@dataclasses.dataclass(frozen=True)
class Board:
  tracks: dict               # (id, version) -> Track, registry order
  entries: dict              # (id, version) -> [Entry] best first
  invalid: tuple             # Invalid, by file name


def submission_files(folder: str) -> list:
  paths = sorted(glob.glob(os.path.join(glob.escape(folder), '*.json')))
  return [p for p in paths if not verification.is_sidecar(p)]


def collect(submissions_dir: str, tracks) -> Board:
  """Validates every submission file and ranks the valid ones per track."""
  registry = track_lib.index(tracks)
  valid, invalid, seen = {k: [] for k in registry}, [], {}
  for path in submission_files(submissions_dir):
    name = os.path.basename(path)
    try:
      s = validate.validate_file(path, registry)
    except FedXRError as e:
      invalid.append(Invalid(name, str(e)))
      continue
    if s.content_sha256 in seen:
      invalid.append(Invalid(name, f'the same content as {seen[s.content_sha256]}'))
      continue
    seen[s.content_sha256] = name
    valid[s.track.key].append(s)
  entries = {}
  for key, subs in valid.items():
    t = registry[key]
    ranked = ranking.rank(subs, t.primary_metric, t.higher_is_better)
    entries[key] = [Entry(s, i, *verification.status(s.path, s.content_sha256)[:2])
                    for i, s in enumerate(ranked, 1)]
  return Board(registry, entries, tuple(invalid))


# ---------------------------------------------------------------------------
# HTML


def _e(value) -> str:
  return html.escape(str(value), quote=True)


def fmt(value: Optional[float]) -> str:
  if value is None:
    return '-'
  if value == 0:
    return '0'
  if not 1e-3 <= abs(value) < 1e6:
    return f'{value:.3e}'
  if abs(value) < 1:
    return f'{value:.4f}'
  return f'{value:.4g}' if abs(value) < 1e4 else f'{value:.0f}'


def _mean_std(stat: Optional[dict]) -> str:
  if not stat or stat['mean'] is None:
    return '-'
  return fmt(stat['mean']) + (f' ± {fmt(stat["std"])}' if stat['std'] is not None else '')


def track_page(t: track_lib.Track) -> str:
  return f'track-{t.id}-v{t.version}.html'


def entry_file(s: validate.Submission) -> str:
  return f'entries/{s.content_sha256[:16]}.json'


def _badge(entry: Entry) -> str:
  if entry.verification == 'verified':
    return f'<span class="badge verified" title="{_e(entry.verification_detail)}">verified</span>'
  if entry.verification == 'failed':
    return (f'<span class="badge failed" title="{_e(entry.verification_detail)}">'
            're-run differs</span>')
  return ''


def _page(title: str, body: str) -> str:
  return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
          f'<meta name="viewport" content="width=device-width, initial-scale=1">'
          f'<title>{_e(title)}</title><style>{CSS}</style></head>\n'
          f'<body>\n{body}\n</body></html>\n')


def board_table(t: track_lib.Track, entries: list) -> str:
  """The ranked rows: rank, method (+ badge), primary mean ± std, seeds, costs."""
  if not entries:
    return '<p class="muted empty">No valid entries yet.</p>'
  head = ''.join(f'<th>{_e(c)}</th>' for c in t.cost_metrics)
  rows = []
  for entry in entries:
    s = entry.submission
    costs = ''.join(f'<td class="num cost" data-metric="{_e(c)}">{_e(_mean_std(s.stat(c)))}</td>'
                    for c in t.cost_metrics)
    rows.append(
        f'<tr class="entry" data-rank="{entry.rank}" data-verified="{_e(entry.verification)}">'
        f'<td class="num rank">{entry.rank}</td>'
        f'<td class="method">{_e(s.method)}{_badge(entry)}</td>'
        f'<td class="num primary">{_e(_mean_std(s.stat(t.primary_metric)))}</td>'
        f'<td class="num seeds">{len(s.seeds)}</td>{costs}</tr>')
  return (f'<table class="board" data-track="{_e(t.name)}"><thead><tr><th>#</th>'
          f'<th>method</th><th>{_e(t.primary_metric)} '
          f'({"higher" if t.higher_is_better else "lower"} is better)</th><th>seeds</th>'
          f'{head}</tr></thead><tbody>\n' + '\n'.join(rows) + '\n</tbody></table>')


def render_index(board: Board) -> str:
  count = sum(len(v) for v in board.entries.values())
  parts = ['<h1>fedxr_jax leaderboard</h1>',
           f'<p>{count} ranked entries in {len(board.tracks)} tracks; '
           f'<a href="invalid.html">{len(board.invalid)} invalid files</a> '
           '(listed, never ranked). Scores are the mean ± unbiased std over the '
           "track's seeds.</p>"]
  for key, t in board.tracks.items():
    parts.append(f'<section class="track" id="{_e(t.id)}-v{t.version}">'
                 f'<h2><a href="{_e(track_page(t))}">{_e(t.name)}</a></h2>'
                 f'<p>{_e(t.description)}</p>{board_table(t, board.entries[key])}</section>')
  return _page('fedxr_jax leaderboard', '\n'.join(parts))


def _details(t: track_lib.Track, entries: list) -> str:
  rows = []
  for entry in entries:
    s, d = entry.submission, entry.submission.doc
    v, hw, method = d['versions'], d['hardware'], d['method']
    url = method.get('url', '')
    link = f' <a href="{_e(url)}">code</a>' if url.startswith('https://') else ''
    commit = (v['git_commit'] or '-')[:12] + (' (dirty)' if v['git_dirty'] else '')
    rows.append(
        f'<tr class="detail" data-rank="{entry.rank}"><td class="num">{entry.rank}</td>'
        f'<td>{_e(s.method)}{link}<br><span class="muted">{_e(method.get("description", ""))}'
        f'</span><br><code>{_e(method.get("command", ""))}</code></td>'
        f'<td>{_e(hw["device_count"])} x {_e(hw["device_kind"])}<br>'
        f'<span class="muted">{_e(hw["cpu_model"] or "-")}</span></td>'
        f'<td>fedxr_jax {_e(v["fedxr_jax"])}<br><code>{_e(commit)}</code></td>'
        f'<td class="num">{_e(fmt(d["timing"]["wall_s"]))} s</td>'
        f'<td><a href="{_e(entry_file(s))}">{_e(os.path.basename(s.path))}</a><br>'
        f'<code>{_e(s.content_sha256[:16])}</code><br>{_e(d["created_utc"])}</td>'
        f'<td>{_e(entry.verification)}<br><span class="muted">'
        f'{_e(entry.verification_detail)}</span></td></tr>')
  return ('<table class="details"><thead><tr><th>#</th><th>method</th><th>hardware</th>'
          '<th>software</th><th>wall</th><th>file</th><th>verification</th></tr></thead>'
          '<tbody>\n' + '\n'.join(rows) + '\n</tbody></table>')


def _config_tables(t: track_lib.Track) -> str:
  frozen = ''.join(f'<tr><td><code>{_e(k)}</code></td><td><code>'
                   f'{_e(canonical.canonical(v).decode())}</code></td></tr>'
                   for k, v in sorted(t.frozen_json.items()))
  opened = ''.join(f'<tr><td><code>{_e(k)}</code></td><td>{_e(t.open[k].describe())}</td></tr>'
                   for k in sorted(t.open))
  return (f'<h2>Frozen config</h2><p class="muted">sha256 <code>{t.frozen_sha256}</code>; '
          'an entry that changes any of these is refused.</p>'
          f'<table class="frozen">{frozen}</table>'
          f'<h2>Open config</h2><table class="open">{opened or "<tr><td>none</td></tr>"}</table>'
          f'<p>Seeds: {_e(", ".join(map(str, t.seeds)))}. Requires: '
          f'{_e(", ".join(t.requires) or "nothing")}.</p>')


def plot_file(t: track_lib.Track, metric: str) -> str:
  slug = re.sub(r'[^A-Za-z0-9]+', '_', metric).strip('_')
  return f'plots/{t.id}-v{t.version}-{slug}-{hashlib.sha256(metric.encode()).hexdigest()[:6]}.svg'


def render_track(t: track_lib.Track, entries: list, plot_paths: dict) -> str:
  figures = ''.join(f'<img class="plot" src="{_e(p)}" alt="{_e(t.primary_metric)} vs '
                    f'{_e(m)}">' for m, p in plot_paths.items())
  body = (f'<p><a href="index.html">all tracks</a></p><h1>{_e(t.name)}</h1>'
          f'<p>{_e(t.description)}</p>{board_table(t, entries)}'
          + (f'<h2>Pareto fronts</h2><p class="muted">Red: entries no other entry beats '
             f'on both axes; numbers are ranks.</p>{figures}' if figures else '')
          + (f'<h2>Entries</h2>{_details(t, entries)}' if entries else '')
          + _config_tables(t))
  return _page(f'{t.name} - fedxr_jax leaderboard', body)


def render_invalid(board: Board) -> str:
  rows = ''.join(f'<tr class="invalid"><td><code>{_e(i.file)}</code></td>'
                 f'<td class="reason">{_e(i.reason)}</td></tr>' for i in board.invalid)
  body = ('<p><a href="index.html">all tracks</a></p><h1>Invalid files</h1>'
          '<p>These files failed validation and are not ranked.</p>'
          + (f'<table class="invalid"><thead><tr><th>file</th><th>reason</th></tr></thead>'
             f'<tbody>{rows}</tbody></table>' if rows else '<p class="muted">None.</p>'))
  return _page('invalid files - fedxr_jax leaderboard', body)


def build_site(submissions_dir: str, out_dir: str, tracks) -> Board:
  """Writes the site into out_dir (existing files of other names are kept)."""
  if not os.path.isdir(submissions_dir):
    raise SubmissionError(f'{submissions_dir!r} is not a folder')
  board = collect(submissions_dir, tracks)
  write = lambda rel, data: files.atomic_write(os.path.join(out_dir, rel), data)
  for key, t in board.tracks.items():
    entries = board.entries[key]
    ranked = [e.submission for e in entries]
    plot_paths = {}
    for metric in t.cost_metrics:
      if any(s.stat(metric) and s.stat(metric)['mean'] is not None for s in ranked):
        plot_paths[metric] = plot_file(t, metric)
        write(plot_paths[metric], plots.pareto_svg(ranked, t.primary_metric, metric,
                                                   t.higher_is_better, t.name))
    for s in ranked:
      write(entry_file(s), submission_lib.dumps(s.doc))
    write(track_page(t), render_track(t, entries, plot_paths))
  write('invalid.html', render_invalid(board))
  write('index.html', render_index(board))
  return board
