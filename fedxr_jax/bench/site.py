"""The leaderboard as static HTML: pages from a `leaderboard.Board`.

  index.html              every track: status, tier, its ranked rows
  track-ID-vN.html        what is frozen (resolved: no dormant keys) and open, the
                          rules (seeds, tier, budget, target, rounds rule), the
                          board with per-task, unseen-user and time-to-accuracy
                          columns, the unranked entries, learning curves beside
                          the reference, Pareto plots on axes that vary
  entry-HASH.html         one entry: its curves (each seed, and the reference),
                          per-seed finals, model facts, provenance, verification
  entries/HASH.json       the valid files as published
  invalid.html            files refused, duplicates, unreadable records
  submit.html             how to submit, command by command

Plain HTML with inline CSS: no scripts, no fonts or styles from the
network; every string from a file is HTML-escaped; plots hold no submitted
text (plots.py).
"""
import hashlib
import html
import os
import re
from typing import Optional

from fedxr_jax.bench import canonical
from fedxr_jax.bench import columns
from fedxr_jax.bench import files
from fedxr_jax.bench import plateau
from fedxr_jax.bench import plots
from fedxr_jax.bench import ranking
from fedxr_jax.bench import submission as submission_lib
from fedxr_jax.bench import track as track_lib
from fedxr_jax.bench.tracks import common
from fedxr_jax.bench.tracks import resolve

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2em auto;
max-width:80em;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;font-size:.75em;padding:.05em .5em;border-radius:.8em;
margin-left:.4em}
.verified{background:#1e8449;color:#fff}.failed{background:#c0392b;color:#fff}
.partial{background:#ddd;color:#333}.provisional{background:#f5b041;color:#222}
.archived{background:#aab7b8;color:#222}.gpu{background:#5d6d7e;color:#fff}
.note{background:#fef9e7;border-left:4px solid #f5b041;padding:.5em 1em}
.muted{color:#777}code,pre{font-size:.9em;word-break:break-all}
pre{background:#f6f6f6;padding:.6em;white-space:pre-wrap}
img.plot{max-width:100%;border:1px solid #eee;margin:.4em .4em 0 0}
nav a{margin-right:1em}
"""

NAV = ('<nav><a href="index.html">all tracks</a><a href="submit.html">how to submit</a>'
       '<a href="invalid.html">invalid files</a></nav>')


def _e(value) -> str:
  return html.escape(str(value), quote=True)


def _page(title: str, body: str) -> str:
  return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
          f'<meta name="viewport" content="width=device-width, initial-scale=1">'
          f'<title>{_e(title)}</title><style>{CSS}</style></head>\n'
          f'<body>\n{NAV}\n{body}\n</body></html>\n')


def track_page(t: track_lib.Track) -> str:
  return f'track-{t.id}-v{t.version}.html'


def entry_id(s) -> str:
  return s.content_sha256[:16]


def entry_file(s) -> str:
  return f'entries/{entry_id(s)}.json'


def entry_page(s) -> str:
  return f'entry-{entry_id(s)}.html'


def _slug(text: str) -> str:
  return re.sub(r'[^A-Za-z0-9]+', '_', text).strip('_')


def plot_file(t: track_lib.Track, name: str) -> str:
  digest = hashlib.sha256(name.encode()).hexdigest()[:6]
  return f'plots/{t.id}-v{t.version}-{_slug(name)}-{digest}.svg'


# ---------------------------------------------------------------------------
# Pieces

def _badge(entry) -> str:
  v = entry.verification
  if v.state == 'verified':
    return f'<span class="badge verified" title="{_e(v.detail)}">verified</span>'
  if v.state == 'partial':
    return f'<span class="badge partial" title="not the final evaluation">{_e(v.detail)}</span>'
  if v.state == 'failed':
    return f'<span class="badge failed" title="{_e(v.detail)}">re-run differs</span>'
  return ''


def _status_badges(t: track_lib.Track) -> str:
  out = ''
  if t.status != 'published':
    out += f'<span class="badge {t.status}" title="{_e(t.note)}">{_e(t.status)}</span>'
  if t.tier == 'gpu':
    out += '<span class="badge gpu">gpu tier</span>'
  return out


def _target_heads(t: track_lib.Track) -> list:
  if t.target is None:
    return []
  return [f'rounds to {t.primary_metric} \u2265 {t.target:g} (rounds)',
          f'time to {t.primary_metric} \u2265 {t.target:g} (simulated s)']


def _target_cells(entry) -> str:
  tt = entry.to_target
  if tt is None:
    return ''
  if tt['rounds'] is None:
    shown = f'{tt["reached"]}/{tt["n"]} seeds' if tt['n'] else '-'
    return (f'<td class="num to-target" data-reached="{tt["reached"]}">{_e(shown)}</td>'
            f'<td class="num to-target-s">-</td>')
  return (f'<td class="num to-target" data-reached="{tt["reached"]}">'
          f'{_e(columns.fmt(tt["rounds"]))}</td>'
          f'<td class="num to-target-s">{_e(columns.fmt(tt["seconds"]))}</td>')


def _stat_cell(s, col: columns.Column, css: str) -> str:
  return (f'<td class="num {css}" data-metric="{_e(col.key)}">'
          f'{_e(columns.mean_std(s.stat(col.key), col.scale))}</td>')


def board_columns(t: track_lib.Track, entries: list, full: bool) -> tuple:
  """(task columns, cost columns) shown for a track's entries."""
  keys = {k for e in entries for k in e.submission.doc['summary']}
  tasks = columns.task_columns(keys, t.primary_metric.split('/')[0]) if full else []
  return tasks, [columns.column(c) for c in t.cost_metrics]


def board_table(t: track_lib.Track, entries: list, full: bool = False) -> str:
  """The ranked rows: rank, method (+ badge), primary mean ± std, seeds, [per-task,
  unseen users], [time to target], costs, [trainable parameters]."""
  if not entries:
    return '<p class="muted empty">No valid entries yet.</p>'
  primary = columns.column(t.primary_metric)
  tasks, costs = board_columns(t, entries, full)
  params = full and any(e.submission.doc['schema_version'] >= 2 for e in entries)
  heads = ([f'{primary.heading}, {"higher" if t.higher_is_better else "lower"} is better',
            'seeds'] + [c.heading for c in tasks] + _target_heads(t)
           + [f'{c.heading}, lower is better' for c in costs]
           + (['trainable parameters (count)'] if params else []))
  rows = []
  for row, entry in enumerate(entries, 1):
    s = entry.submission
    facts = s.doc.get('model_facts')
    rank = '-' if entry.rank is None else entry.rank
    rows.append(
        f'<tr class="entry" data-rank="{rank}" data-verified="{_e(entry.verification.state)}">'
        + (f'<td class="num row">{row}</td>' if full else '')
        + f'<td class="num rank">{rank}</td>'
        f'<td class="method"><a href="{_e(entry_page(s))}">{_e(s.method)}</a>{_badge(entry)}</td>'
        + _stat_cell(s, primary, 'primary')
        + f'<td class="num seeds">{len(s.seeds)}</td>'
        + ''.join(_stat_cell(s, c, 'task') for c in tasks)
        + _target_cells(entry)
        + ''.join(_stat_cell(s, c, 'cost') for c in costs)
        + (f'<td class="num params">{_e(facts["params_trainable"] if facts else "-")}</td>'
           if params else '') + '</tr>')
  head = ''.join(f'<th>{_e(h)}</th>' for h in heads)
  row_head = '<th title="labels the plots">row</th>' if full else ''
  return (f'<table class="board" data-track="{_e(t.name)}"><thead><tr>{row_head}'
          f'<th title="rank: overlapping 95% intervals share one">#</th>'
          f'<th>method</th>{head}</tr></thead><tbody>\n' + '\n'.join(rows)
          + '\n</tbody></table>')


def unranked_table(t: track_lib.Track, entries: list) -> str:
  rows = ''.join(
      f'<tr class="unranked"><td class="method"><a href="{_e(entry_page(e.submission))}">'
      f'{_e(e.submission.method)}</a>{_badge(e)}</td><td>{_e(e.verification.detail)}</td>'
      f'<td class="num">{_e(columns.mean_std(e.submission.stat(t.primary_metric)))}</td></tr>'
      for e in entries)
  return ('<h2>Unranked: the re-run differs</h2><p>A maintainer re-ran these entries and got '
          'other numbers; the first difference is shown.</p><table class="unranked">'
          '<thead><tr><th>method</th><th>first differing seed, round, key</th>'
          f'<th>submitted {_e(t.primary_metric)}</th></tr></thead><tbody>{rows}</tbody></table>')


# ---------------------------------------------------------------------------
# Pages

def render_index(board) -> str:
  count = sum(len(v) for v in board.entries.values())
  parts = ['<h1>fedxr_jax leaderboard</h1>',
           f'<p>{count} ranked entries in {len(board.tracks)} tracks; '
           f'<a href="invalid.html">{len(board.invalid)} invalid files</a> '
           '(listed, never ranked). Scores are the mean ± unbiased std over the track\'s '
           'seeds; entries whose 95% intervals overlap share a rank, and no entry ranks above '
           'one with a better mean. "verified": a maintainer '
           're-ran the entry\'s final evaluation and got the same numbers.</p>']
  for key, t in board.tracks.items():
    parts.append(f'<section class="track" id="{_e(t.id)}-v{t.version}">'
                 f'<h2><a href="{_e(track_page(t))}">{_e(t.name)}</a>{_status_badges(t)}</h2>'
                 f'<p>{_e(t.description)}</p>{board_table(t, board.entries[key])}'
                 + (f'<p class="muted">{len(board.apart[key])} ranked apart: '
                    f'{_e(t.rank_apart)}</p>' if board.apart[key] else '')
                 + (f'<p class="muted">{len(board.unranked[key])} unranked (re-run differs)'
                    '</p>' if board.unranked[key] else '') + '</section>')
  return _page('fedxr_jax leaderboard', '\n'.join(parts))


def _frozen_rows(t: track_lib.Track) -> tuple:
  """(rows, hidden): the frozen keys a run reads; dormant ones (unused blocks) hidden."""
  frozen = t.frozen_json
  shown = resolve.active(frozen)
  rows = ''.join(f'<tr><td><code>{_e(k)}</code></td><td><code>'
                 f'{_e(canonical.canonical(v).decode())}</code></td></tr>'
                 for k, v in sorted(shown.items()))
  return rows, len(frozen) - len(shown)


def _open_rows(t: track_lib.Track) -> str:
  return ''.join(f'<tr><td><code>{_e(k)}</code></td><td>{_e(t.open[k].describe())}</td></tr>'
                 for k in sorted(t.open))


def _budget_table(t: track_lib.Track) -> str:
  if t.budget is None:
    return ''
  b = t.budget
  rows = [('trainable parameters a client holds', f'{b.trainable_params:,}', 'count'),
          ('upload a round, float32, before compression', f'{b.upload_bytes:,}', 'bytes'),
          ('forward FLOPs per example', f'{b.flops_per_example:.4g}', 'FLOPs'),
          ('slowest device\'s local training a round', f'{b.compute_s:g}', 'simulated s')]
  body = ''.join(f'<tr><td>{_e(a)}</td><td class="num">{_e(v)}</td><td>{_e(u)}</td></tr>'
                 for a, v, u in rows)
  return ('<h2>Budget (per device, frozen)</h2><p>The PEFT architecture, tuning plan and '
          'local steps are open: any choice within these limits may be submitted.</p>'
          f'<table class="budget">{body}</table>')


def _rules(board, key) -> str:
  t = board.tracks[key]
  verdict = board.plateau(key)
  if t.sizing == 'stretch':
    plateau_line = (f'The reference ({_e(t.reference)}) curve is drawn on the curves page; '
                    'the window rule does not apply to a rate decayed over the run (its '
                    'last rounds anneal).')
  elif verdict:
    plateau_line = f'Reference ({_e(t.reference)}) curve: {_e(verdict.describe())}.'
  else:
    plateau_line = f'No {_e(t.reference)} entry yet to check the plateau rule on.'
  items = [f'Seeds: {_e(", ".join(map(str, t.seeds)))} (an entry runs all of them).',
           f'Tier: {_e(t.tier)}' + (' (refused in one line off an accelerator)'
                                     if t.tier == 'gpu' else ' (sized for 2 CPU cores)') + '.',
           f'Ranked by {_e(t.primary_metric)} ({"higher" if t.higher_is_better else "lower"} '
           'is better); 95% intervals that overlap share a rank, and no entry ranks above one '
           'with a better mean.',
           (f'Time-to-accuracy target: {_e(t.primary_metric)} &ge; {_e(t.target)}, in rounds '
            'and in simulated seconds (the cost model\'s clock: the sum of each round\'s '
            'latency).' if t.target is not None else 'No time-to-accuracy target.'),
           f'Rounds: {_e(t.rounds_rule or "as frozen")}. {plateau_line}',
           ('Starts from checkpoint ' + _e(t.pretrained.get('path', '')) + ' (sha256 '
            + _e(t.pretrained.get('sha256', '')) + ').') if t.pretrained else
           'Starts from a random base (no pretrained checkpoint).']
  note = (f'<p class="note">{_e(t.status)}: {_e(t.note)}</p>'
          if t.status != 'published' else '')
  return note + '<h2>Rules</h2><ul class="rules">' + ''.join(
      f'<li>{i}</li>' for i in items) + '</ul>'


def _details(entries: list) -> str:
  rows = []
  for entry in entries:
    s, d = entry.submission, entry.submission.doc
    v, hw = d['versions'], d['hardware']
    commit = (v['git_commit'] or '-')[:12] + (' (dirty)' if v['git_dirty'] else '')
    rank = '-' if entry.rank is None else entry.rank
    rows.append(
        f'<tr class="detail" data-rank="{rank}"><td class="num">{rank}</td>'
        f'<td><a href="{_e(entry_page(s))}">{_e(s.method)}</a><br><code>'
        f'{_e(d["method"].get("command", ""))}</code></td>'
        f'<td>{_e(hw["device_count"])} x {_e(hw["device_kind"])}</td>'
        f'<td>fedxr_jax {_e(v["fedxr_jax"])}<br><code>{_e(commit)}</code></td>'
        f'<td class="num">{_e(columns.fmt(d["timing"]["wall_s"]))} s</td>'
        f'<td><a href="{_e(entry_file(s))}">{_e(os.path.basename(s.path))}</a><br>'
        f'<code>{_e(s.content_sha256[:16])}</code></td>'
        f'<td>{_e(entry.verification.state)}<br><span class="muted">'
        f'{_e(entry.verification.detail)}</span></td></tr>')
  return ('<table class="details"><thead><tr><th>#</th><th>method, command</th>'
          '<th>hardware</th><th>software</th><th>wall time</th><th>file</th>'
          '<th>verification</th></tr></thead><tbody>\n' + '\n'.join(rows)
          + '\n</tbody></table>')


def render_track(board, key, figures: dict) -> str:
  t = board.tracks[key]
  entries, unranked, apart = board.entries[key], board.unranked[key], board.apart[key]
  frozen_rows, hidden = _frozen_rows(t)
  imgs = lambda names: ''.join(f'<img class="plot" src="{_e(figures[n])}" alt="{_e(n)}">'
                               for n in names if n in figures)
  pareto = [n for n in figures if n.startswith('pareto:')]
  body = (f'<h1>{_e(t.name)}{_status_badges(t)}</h1><p>{_e(t.description)}</p>'
          + _rules(board, key)
          + f'<h2>Ranking</h2>{board_table(t, entries, full=True)}'
          + (f'<h2>Ranked apart</h2><p>{_e(t.rank_apart)}</p>'
             f'{board_table(t, apart, full=True)}' if apart else '')
          + (unranked_table(t, unranked) if unranked else '')
          + ('<h2>Learning curves</h2><p class="muted">Mean over seeds of each entry '
             '(labelled by its row in the ranking) and the reference, dashed.</p>'
             + imgs(['curves']) if 'curves' in figures else '')
          + ('<h2>Pareto fronts</h2><p class="muted">Red: entries no other entry beats on '
             'both axes; numbers are rows of the ranking. Only costs that differ between '
             f'entries are plotted.</p>{imgs(pareto)}' if pareto else '')
          + (f'<h2>Entries</h2>{_details(entries + apart + unranked)}'
             if entries or apart or unranked else '')
          + _budget_table(t)
          + f'<h2>Frozen config</h2><p class="muted">sha256 <code>{t.frozen_sha256}</code>; '
          'an entry that changes any of these is refused.'
          + (f' {hidden} keys of blocks this track\'s selections leave unused are not shown '
             '(version 1 still hashes them).' if hidden else '') + '</p>'
          f'<table class="frozen">{frozen_rows}</table>'
          f'<h2>Open config</h2><p class="muted">Settings of a component apply only when it '
          f'is selected.</p><table class="open">{_open_rows(t) or "<tr><td>none</td></tr>"}'
          '</table>')
  return _page(f'{t.name} - fedxr_jax leaderboard', body)


def _facts_table(d: dict) -> str:
  if d['schema_version'] < 2:
    return ('<p class="muted">Schema version 1: no parameter counts, checkpoint or '
            'external-data flag were recorded.</p>')
  f, p = d['model_facts'], d['pretrained']
  rows = [('total parameters', f['params_total']), ('trainable parameters', f['params_trainable']),
          ('uploaded a round (parameters)', f['params_uploaded_per_round']),
          ('uploaded a round (bytes, float32)', f['upload_bytes_per_round']),
          ('FLOPs per local step', columns.fmt(f['flops_per_step'])),
          ('FLOPs per example (forward)', columns.fmt(f['flops_per_example'])),
          ('pretrained checkpoint', p['path'] or 'none (random base)'),
          ('checkpoint sha256', p['sha256'] or '-'),
          ('external data', 'yes' if d['external_data'] else 'no')]
  roles = ', '.join(f'{r} {v["params"]} ({v["mode"]})' for r, v in f['roles'].items())
  return ('<table class="facts">' + ''.join(f'<tr><td>{_e(a)}</td><td>{_e(b)}</td></tr>'
                                            for a, b in rows)
          + f'<tr><td>trees</td><td>{_e(roles)}</td></tr></table>')


def render_entry(board, key, entry, figure: Optional[str]) -> str:
  t, s = board.tracks[key], entry.submission
  d = s.doc
  keys = sorted({k for r in d['runs'] for k in r['final']})
  cols = [columns.column(t.primary_metric)] + columns.task_columns(
      keys, t.primary_metric.split('/')[0])
  head = ''.join(f'<th>{_e(c.heading)}</th>' for c in cols)
  rows = ''.join(
      f'<tr><td class="num">{r["seed"]}</td>' + ''.join(
          f'<td class="num">{_e(columns.fmt(r["final"].get(c.key)))}</td>' for c in cols)
      + '</tr>' for r in d['runs'])
  v = entry.verification
  no_record = "no record in the maintainers' directory"
  rank = ('unranked (re-run differs)' if entry.rank is None else
          f'rank {entry.rank} among the entries ranked apart ({t.rank_apart})'
          if entry in board.apart[key] else f'rank {entry.rank}')
  body = (f'<p><a href="{_e(track_page(t))}">{_e(t.name)}</a></p>'
          f'<h1>{_e(s.method)}{_badge(entry)}</h1>'
          f'<p>{_e(rank)} on {_e(t.name)}. {_e(d["method"].get("description", ""))}</p>'
          f'<pre>{_e(d["method"].get("command", ""))}</pre>'
          + (f'<img class="plot" src="{_e(figure)}" alt="learning curve">' if figure else '')
          + f'<h2>Final evaluation per seed</h2><table class="finals"><thead><tr><th>seed</th>'
          f'{head}</tr></thead><tbody>{rows}</tbody></table>'
          f'<h2>Model</h2>{_facts_table(d)}'
          f'<h2>Verification</h2><p>{_e(v.state)}: {_e(v.detail or no_record)}</p>'
          f'<h2>Provenance</h2><table class="provenance">'
          f'<tr><td>file</td><td><a href="{_e(entry_file(s))}">{_e(os.path.basename(s.path))}'
          f'</a></td></tr><tr><td>content sha256</td><td><code>{_e(s.content_sha256)}</code>'
          f'</td></tr><tr><td>created</td><td>{_e(d["created_utc"])}</td></tr>'
          f'<tr><td>hardware</td><td>{_e(d["hardware"]["device_count"])} x '
          f'{_e(d["hardware"]["device_kind"])}, {_e(d["hardware"]["cpu_model"] or "-")}</td></tr>'
          f'<tr><td>software</td><td>fedxr_jax {_e(d["versions"]["fedxr_jax"])}, commit '
          f'<code>{_e(d["versions"]["git_commit"] or "-")}</code>, jax '
          f'{_e(d["versions"]["packages"].get("jax"))}</td></tr></table>')
  return _page(f'{s.method} on {t.name} - fedxr_jax leaderboard', body)


def render_invalid(board) -> str:
  rows = ''.join(f'<tr class="invalid"><td><code>{_e(i.file)}</code></td>'
                 f'<td class="reason">{_e(i.reason)}</td></tr>' for i in board.invalid)
  bad = ''.join(f'<tr class="bad-record"><td><code>{_e(i.file)}</code></td>'
                f'<td class="reason">{_e(i.reason)}</td></tr>' for i in board.bad_records)
  body = ('<h1>Invalid files</h1><p>These files failed validation or repeat an earlier '
          'entry, and are not ranked.</p>'
          + (f'<table class="invalid"><thead><tr><th>file</th><th>reason</th></tr></thead>'
             f'<tbody>{rows}</tbody></table>' if rows else '<p class="muted">None.</p>')
          + (f'<h2>Unreadable verification records</h2><table class="bad-records">{bad}'
             '</table>' if bad else ''))
  return _page('invalid files - fedxr_jax leaderboard', body)


# The exact commands, in order (tests/test_leaderboard.py checks each parses).
SUBMIT_STEPS = (
    ('See the tracks, their open keys and limits.', 'fedxr-bench tracks'),
    ('Train every seed of a track with your method (open keys only, within their limits; '
     '--external_data if you used data beyond the track\'s).',
     'fedxr-bench run --track=xr-default --output_dir=subs --method=my-fedprox '
     '--config.algorithm.name=fedprox --config.algorithm.fedprox.mu=0.01'),
    ('Check the file the run printed (schema, frozen part, limits, budget, seeds, hashes).',
     'fedxr-bench validate subs/xr-default-v4__my-fedprox__*.json'),
    ('Print and check its content hash (quote it in your pull request).',
     'fedxr-bench hash subs/xr-default-v4__my-fedprox__*.json'),
    ('Add the file to leaderboard/submissions/ in a pull request; its name carries the '
     'content hash, so it cannot replace another entry.',
     'cp subs/xr-default-v4__my-fedprox__*.json leaderboard/submissions/'),
    ('Maintainers re-run every round of the seeds the key picks and record the outcome in '
     'their own directory.',
     'FEDXR_VERIFY_KEY=... fedxr-bench verify leaderboard/submissions/FILE.json '
     '--verified_dir=leaderboard/verified'),
    ('Maintainers rebuild the site.',
     'fedxr-leaderboard leaderboard/submissions --verified_dir=leaderboard/verified '
     '--out=leaderboard/site'),
)


def render_submit(board) -> str:
  steps = ''.join(f'<li><p>{_e(text)}</p><pre class="command">{_e(cmd)}</pre></li>'
                  for text, cmd in SUBMIT_STEPS)
  runnable = ', '.join(t.name for t in board.tracks.values() if t.runnable)
  body = ('<h1>How to submit</h1>'
          f'<p>Tracks that take new entries: {_e(runnable or "none")}.</p><ol>{steps}</ol>'
          '<h2>Rules</h2><ul>'
          '<li>An entry runs every seed of its track (at least 3 from version 2 on) and '
          'reports all of them: mean ± unbiased std, 95% intervals, ties share a rank.</li>'
          '<li>Only the open keys may change, within their limits; the frozen part (its '
          'sha256 is in the file) and the per-device budget (trainable parameters, upload '
          'bytes, FLOPs per example, local compute seconds) are checked by fedxr-bench '
          'validate.</li>'
          '<li>The file records the parameter counts (total, trainable, uploaded a round), '
          'the pretrained checkpoint and its hash, the external-data flag, the software and '
          'hardware, and every logged round of every seed.</li>'
          '<li>"verified" means a maintainer re-ran the final evaluation of seeds chosen by '
          'a key you cannot predict and got the same numbers (bit for bit on the same '
          'software and device kind, relative 1e-3 otherwise); "rounds 1-K reproduced" '
          'means only the first K rounds were re-run. An entry whose re-run differs is '
          'unranked.</li>'
          '<li>Two files with the same config and curves are one entry: the earliest is '
          'ranked.</li></ul>')
  return _page('how to submit - fedxr_jax leaderboard', body)


# ---------------------------------------------------------------------------
# Writing

def _figures(board, key, write) -> dict:
  """{name: path} of a track's curve and Pareto plots (written)."""
  t = board.tracks[key]
  entries = board.entries[key]
  primary = columns.column(t.primary_metric)
  out = {}
  series = [(f'row {i}', plateau.mean_curve([r['curve'] for r in e.submission.doc['runs']],
                                             t.primary_metric))
            for i, e in enumerate(entries, 1)]
  reference = board.reference_curve(key)
  if any(points for _, points in series):
    out['curves'] = plot_file(t, 'learning curves')
    write(out['curves'], plots.curves_svg(series, reference, primary.heading, t.name, t.target))
  ranked = [(i, e.submission) for i, e in enumerate(entries, 1)]
  for metric in t.cost_metrics:
    means = [s.stat(metric)['mean'] if s.stat(metric) else None for _, s in ranked]
    if ranking.varies(means):
      name = f'pareto:{metric}'
      out[name] = plot_file(t, metric)
      col = columns.column(metric)
      write(out[name], plots.pareto_svg(ranked, t.primary_metric, metric, t.higher_is_better,
                                        t.name, col.heading, primary.heading))
  return out


def _entry_figure(board, key, entry, write) -> str:
  t, s = board.tracks[key], entry.submission
  series = [(f'seed {r["seed"]}', [(row['round'], row[t.primary_metric]) for row in r['curve']
                                   if row.get(t.primary_metric) is not None])
            for r in s.doc['runs']]
  path = f'plots/entry-{entry_id(s)}.svg'
  write(path, plots.curves_svg(series, board.reference_curve(key),
                               columns.column(t.primary_metric).heading, t.name, t.target))
  return path


def write(board, out_dir: str) -> None:
  put = lambda rel, data: files.atomic_write(os.path.join(out_dir, rel), data)
  for key in board.tracks:
    figures = _figures(board, key, put)
    for entry in board.entries[key] + board.apart[key] + board.unranked[key]:
      s = entry.submission
      put(entry_file(s), submission_lib.dumps(s.doc))
      put(entry_page(s), render_entry(board, key, entry, _entry_figure(board, key, entry, put)))
    put(track_page(board.tracks[key]), render_track(board, key, figures))
  put('invalid.html', render_invalid(board))
  put('submit.html', render_submit(board))
  put('index.html', render_index(board))
