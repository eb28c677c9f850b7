"""Verification records: the `NAME.verified.json` sidecar of `NAME.json`.

`fedxr-bench verify NAME.json` re-runs some logged rounds of some seeds,
compares the re-run rows with the submitted curves (`compare`), and writes
a record (`build_record`, `write_record`) holding the submission's
content_sha256, what was re-run, the software and device of the re-run, and
the result. The leaderboard shows a "verified" badge only for a record that
validates, names the submission's current content hash, and passed
(`status`): editing a submission after verification drops its badge.
"""
import dataclasses
import datetime
import os
from typing import Any, Mapping, Optional, Sequence

from fedxr_jax.bench import canonical
from fedxr_jax.bench import files
from fedxr_jax.bench import schemas
from fedxr_jax.bench import submission as submission_lib
from fedxr_jax.bench.errors import SubmissionError

FORMAT = 'fedxr_jax.verification'
SCHEMA_VERSION = 1
SUFFIX = '.verified.json'
MAX_BYTES = 2**20
MAX_MISMATCHES = 20


def sidecar_path(submission_path: str) -> str:
  base = submission_path[:-len('.json')] if submission_path.endswith('.json') else submission_path
  return base + SUFFIX


def is_sidecar(path: str) -> bool:
  return os.path.basename(path).endswith(SUFFIX)


@dataclasses.dataclass(frozen=True)
class Comparison:
  seeds: tuple
  rounds: tuple              # logged rounds compared (union over seeds)
  metrics: tuple             # metric keys compared
  max_abs_diff: Optional[float]
  mismatches: tuple          # dicts: seed, round, metric, submitted, rerun

  @property
  def passed(self) -> bool:
    return not self.mismatches


def _close(a, b, atol, rtol) -> bool:
  if a is None or b is None:
    return a is b
  return abs(a - b) <= atol + rtol * abs(a)


def compare(doc: Mapping[str, Any], rerun: Mapping[int, Sequence[Mapping[str, Any]]],
            atol: float = 0.0, rtol: float = 0.0) -> Comparison:
  """Re-run rows vs the submitted curves, at every re-run round of each seed.

  rerun[seed]: rows like a curve's ({'round': r, metric: value}), for any
  subset of the logged rounds. A re-run row at a round the submission did
  not log, or a metric it lacks, is an error: it cannot be compared. With
  the defaults (0, 0) a deterministic simulator must reproduce bit for bit.
  """
  runs = {r['seed']: {row['round']: row for row in r['curve']} for r in doc['runs']}
  rounds, metrics, mismatches, worst = set(), set(), [], None
  if not rerun:
    raise SubmissionError('nothing was re-run')
  for seed in sorted(rerun):
    if seed not in runs:
      raise SubmissionError(f'seed {seed} was re-run but the submission has no such run')
    for row in rerun[seed]:
      submitted = runs[seed].get(row['round'])
      if submitted is None:
        raise SubmissionError(f'seed {seed}: round {row["round"]} is not in the submitted curve')
      rounds.add(row['round'])
      for k in sorted(set(row) - {'round'}):
        if k not in submitted:
          raise SubmissionError(f'seed {seed} round {row["round"]}: the submission has no {k!r}')
        a, b = submitted[k], canonical.to_json(row[k], k, nonfinite_to_null=True)
        metrics.add(k)
        if a is not None and b is not None:
          worst = max(worst or 0.0, abs(a - b))
        if not _close(a, b, atol, rtol) and len(mismatches) < MAX_MISMATCHES:
          mismatches.append({'seed': seed, 'round': row['round'], 'metric': k,
                             'submitted': a, 'rerun': b})
  if not metrics:
    raise SubmissionError('the re-run rows hold no metric to compare')
  return Comparison(tuple(sorted(rerun)), tuple(sorted(rounds)), tuple(sorted(metrics)),
                    worst, tuple(mismatches))


def build_record(doc: Mapping[str, Any], comparison: Comparison, *, hardware: Mapping,
                 versions: Mapping, atol: float = 0.0, rtol: float = 0.0,
                 created_utc: Optional[str] = None) -> dict:
  """The sidecar dict for `doc` (a validated submission) and a `compare` result."""
  record = {
      'format': FORMAT,
      'schema_version': SCHEMA_VERSION,
      'submission_sha256': doc['content_sha256'],
      'track': dict(doc['track']),
      'seeds': list(comparison.seeds),
      'rounds': list(comparison.rounds),
      'compared_metrics': list(comparison.metrics),
      'atol': float(atol),
      'rtol': float(rtol),
      'max_abs_diff': comparison.max_abs_diff,
      'mismatches': [dict(m) for m in comparison.mismatches],
      'result': 'pass' if comparison.passed else 'fail',
      'hardware': canonical.to_json(dict(hardware), 'hardware'),
      'versions': canonical.to_json(dict(versions), 'versions'),
      'created_utc': created_utc or datetime.datetime.now(datetime.timezone.utc).strftime(
          '%Y-%m-%dT%H:%M:%SZ'),
  }
  record['content_sha256'] = submission_lib.content_hash(record)
  schemas.check(record, 'verification')
  return record


def write_record(record: Mapping[str, Any], submission_path: str) -> str:
  return files.atomic_write(sidecar_path(submission_path), submission_lib.dumps(record))


def read_record(path: str) -> dict:
  """A schema-valid record whose own content hash holds; SubmissionError otherwise."""
  record = files.read_json(path, MAX_BYTES)
  if not isinstance(record, dict) or record.get('format') != FORMAT:
    raise SubmissionError('not a fedxr_jax verification record')
  schemas.check(record, 'verification')
  if record['content_sha256'] != submission_lib.content_hash(record):
    raise SubmissionError('content_sha256 does not match the record')
  return record


def status(submission_path: str, content_sha256: str) -> tuple:
  """('verified' | 'failed' | 'stale' | 'invalid' | 'none', detail line, record or None).

  stale: the record is about another content hash (the submission changed).
  """
  path = sidecar_path(submission_path)
  if not os.path.lexists(path):
    return 'none', '', None
  try:
    record = read_record(path)
  except SubmissionError as e:
    return 'invalid', f'{os.path.basename(path)}: {e}', None
  if record['submission_sha256'] != content_sha256:
    return 'stale', 'the record is about another version of this file', record
  if record['result'] != 'pass':
    first = record['mismatches'][0] if record['mismatches'] else None
    detail = (f'seed {first["seed"]} round {first["round"]} {first["metric"]}: '
              f'{first["submitted"]!r} vs re-run {first["rerun"]!r}' if first else '')
    return 'failed', detail, record
  return 'verified', (f'{len(record["rounds"])} rounds x {len(record["seeds"])} seeds re-run '
                      f'on {record["hardware"]["device_kind"]}'), record
