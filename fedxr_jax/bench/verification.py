"""Verification records: what `fedxr-bench verify` re-ran, and what the leaderboard trusts.

A record (schema 2, bench/schema/verification.schema.json) is bound to one
submission's content_sha256 and holds the seeds re-run (ordered by a key the
submitter cannot predict: `seed_order`), the rounds compared, whether that
covers the final evaluation (every re-run seed's last logged round with the
primary metric), the tolerance and why, the re-run's software and device
beside the submission's recorded ones, and the result.

Records live in the maintainers' directory (`--verified_dir`), one per
submission (`record_path`), and the leaderboard reads them only from there,
never from beside a submission (anyone can write a file there). For an
entry (`status`): any failing record -> 'failed' (the entry is unranked,
listed apart with the first differing round and key); a passing record that
covers the final evaluation -> 'verified'; one that does not -> 'partial'
("rounds 1-K reproduced"); none -> 'none'. A record about another content
hash says nothing about this file, whatever its name. Version 1 records
(the sidecars `verify` wrote before) are read as any other: the 14 landed
ones re-ran rounds 1-2 and are partial.
"""
import dataclasses
import datetime
import glob
import hashlib
import hmac
import os
from typing import Any, Mapping, NamedTuple, Optional, Sequence

from fedxr_jax.bench import canonical
from fedxr_jax.bench import files
from fedxr_jax.bench import schemas
from fedxr_jax.bench import submission as submission_lib
from fedxr_jax.bench.errors import SubmissionError

FORMAT = 'fedxr_jax.verification'
SCHEMA_VERSION = 2
READS = (1, 2)
MAX_BYTES = 2**20
MAX_MISMATCHES = 20
KEY_ENV = 'FEDXR_VERIFY_KEY'


@dataclasses.dataclass(frozen=True)
class Comparison:
  seeds: tuple
  rounds: tuple              # logged rounds compared (union over seeds)
  metrics: tuple             # metric keys compared
  max_abs_diff: Optional[float]
  mismatches: tuple          # dicts: seed, round, metric, submitted, rerun
  finals: tuple = ()         # seeds compared at their final round, primary metric included

  @property
  def passed(self) -> bool:
    return not self.mismatches


def _close(a, b, atol, rtol) -> bool:
  if a is None or b is None:
    return a is b
  return abs(a - b) <= atol + rtol * abs(a)


def final_round(doc: Mapping[str, Any]) -> int:
  return max(row['round'] for run in doc['runs'] for row in run['curve'])


def compare(doc: Mapping[str, Any], rerun: Mapping[int, Sequence[Mapping[str, Any]]],
            atol: float = 0.0, rtol: float = 0.0, primary: Optional[str] = None
            ) -> Comparison:
  """Re-run rows vs the submitted curves, at every re-run round of each seed.

  rerun[seed]: rows like a curve's ({'round': r, metric: value}), for any
  subset of the logged rounds. A re-run row at a round the submission did
  not log, or a metric it lacks, is an error: it cannot be compared. With
  the defaults (0, 0) a deterministic simulator must reproduce bit for bit.
  primary: the ranked metric; `finals` lists the seeds whose last logged
  row was compared with it.
  """
  runs = {r['seed']: {row['round']: row for row in r['curve']} for r in doc['runs']}
  rounds, metrics, mismatches, worst, finals = set(), set(), [], None, []
  if not rerun:
    raise SubmissionError('nothing was re-run')
  for seed in sorted(rerun):
    if seed not in runs:
      raise SubmissionError(f'seed {seed} was re-run but the submission has no such run')
    last = max(runs[seed])
    for row in rerun[seed]:
      submitted = runs[seed].get(row['round'])
      if submitted is None:
        raise SubmissionError(f'seed {seed}: round {row["round"]} is not in the submitted curve')
      rounds.add(row['round'])
      if row['round'] == last and primary is not None and primary in row:
        finals.append(seed)
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
                    worst, tuple(mismatches), tuple(finals))


def compare_facts(submitted: Mapping, rerun: Mapping, seed: int, atol: float = 0.0,
                  rtol: float = 0.0) -> list:
  """Mismatches (round 0, metric 'model_facts/KEY') between recorded and re-computed
  model facts: a budget is only as good as the counts it is checked on."""
  out = []
  for key in sorted(k for k in submitted if k != 'roles'):
    a, b = submitted[key], rerun.get(key)
    if not _close(a, b, atol, rtol):
      out.append({'seed': seed, 'round': 0, 'metric': f'model_facts/{key}',
                  'submitted': a, 'rerun': b})
  return out


# ---------------------------------------------------------------------------
# Which seeds: an order the submitter cannot predict.

class Key(NamedTuple):
  kind: str        # 'date' (anyone can recompute the order after the fact) | 'secret'
  secret: bytes
  key_id: str      # the date, or the first 16 hex digits of the secret's SHA-256


def key(secret: Optional[str] = None, today: Optional[str] = None) -> Key:
  """The verifier's key: `secret` (or $FEDXR_VERIFY_KEY), else today's UTC date."""
  secret = secret or os.environ.get(KEY_ENV) or None
  if secret:
    return Key('secret', secret.encode(), hashlib.sha256(secret.encode()).hexdigest()[:16])
  day = today or datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d')
  return Key('date', day.encode(), day)


def seed_order(content_sha256: str, seeds: Sequence[int], k: Key) -> list:
  """Seeds ordered by HMAC-SHA256(key, 'content_sha256:seed'): the first are re-run."""
  tag = lambda s: hmac.new(k.secret, f'{content_sha256}:{s}'.encode(), hashlib.sha256).digest()
  return sorted(seeds, key=tag)


# ---------------------------------------------------------------------------
# Records.

def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def build_record(doc: Mapping[str, Any], comparison: Comparison, *, hardware: Mapping,
                 versions: Mapping, selection: Mapping, tolerance: str, atol: float = 0.0,
                 rtol: float = 0.0, created_utc: Optional[str] = None) -> dict:
  """The record for `doc` (a validated submission) and a `compare` result."""
  last = final_round(doc)
  record = {
      'format': FORMAT,
      'schema_version': SCHEMA_VERSION,
      'submission_sha256': doc['content_sha256'],
      'track': dict(doc['track']),
      'selection': canonical.to_json(dict(selection), 'selection'),
      'seeds': list(comparison.seeds),
      'rounds': list(comparison.rounds),
      'final_round': last,
      'covers_final': bool(comparison.seeds) and set(comparison.seeds) <= set(comparison.finals),
      'compared_metrics': list(comparison.metrics),
      'atol': float(atol),
      'rtol': float(rtol),
      'tolerance': tolerance,
      'max_abs_diff': comparison.max_abs_diff,
      'mismatches': [dict(m) for m in comparison.mismatches],
      'result': 'pass' if comparison.passed else 'fail',
      'hardware': canonical.to_json(dict(hardware), 'hardware'),
      'versions': canonical.to_json(dict(versions), 'versions'),
      'submitted': {'hardware': doc['hardware'], 'versions': doc['versions']},
      'created_utc': created_utc or _now(),
  }
  record['content_sha256'] = submission_lib.content_hash(record)
  schemas.check(record, 'verification', SCHEMA_VERSION)
  return record


def record_path(verified_dir: str, submission_sha256: str) -> str:
  return os.path.join(verified_dir, f'{submission_sha256}.json')


def write_record(record: Mapping[str, Any], verified_dir: str) -> str:
  """Into the maintainers' directory, named by the submission's content hash (a
  later verification of the same file replaces the earlier one)."""
  return files.atomic_write(record_path(verified_dir, record['submission_sha256']),
                            submission_lib.dumps(record))


def read_record(path: str) -> dict:
  """A schema-valid record whose own content hash holds; SubmissionError otherwise."""
  record = files.read_json(path, MAX_BYTES)
  if not isinstance(record, dict) or record.get('format') != FORMAT:
    raise SubmissionError('not a fedxr_jax verification record')
  version = record.get('schema_version')
  if isinstance(version, bool) or version not in READS:
    raise SubmissionError(f'verification schema version {version!r} is not supported')
  schemas.check(record, 'verification', version)
  if record['content_sha256'] != submission_lib.content_hash(record):
    raise SubmissionError('content_sha256 does not match the record')
  return record


def collect(verified_dir: Optional[str]) -> tuple:
  """({submission_sha256: [record]}, [(file, why)] unreadable) of a directory."""
  by_hash, bad = {}, []
  if not verified_dir:
    return by_hash, bad
  if not os.path.isdir(verified_dir):
    raise SubmissionError(f'--verified_dir {verified_dir!r} is not a folder')
  for path in sorted(glob.glob(os.path.join(glob.escape(verified_dir), '*.json'))):
    try:
      record = read_record(path)
    except SubmissionError as e:
      bad.append((os.path.basename(path), str(e)))
      continue
    by_hash.setdefault(record['submission_sha256'], []).append(record)
  return by_hash, bad


# ---------------------------------------------------------------------------
# What the leaderboard shows.

class Status(NamedTuple):
  state: str                 # verified | partial | failed | none
  detail: str
  mismatch: Optional[dict]   # the first differing (seed, round, metric) where failed


def covers_final(record: Mapping, doc: Mapping, primary: str) -> bool:
  if record['schema_version'] >= 2:
    return record['covers_final'] and record['final_round'] == final_round(doc)
  return final_round(doc) in record['rounds'] and primary in record['compared_metrics']


def _span(rounds: Sequence[int]) -> str:
  """'rounds 1-K' of the longest run of rounds from the first one compared."""
  rounds = sorted(rounds)
  end = rounds[0]
  while end + 1 in rounds:
    end += 1
  return f'rounds {rounds[0]}-{end}' if end != rounds[0] else f'round {end}'


def status(records: Sequence[Mapping], doc: Mapping, primary: str) -> Status:
  """An entry's standing from the records about its content hash."""
  mine = [r for r in records if r['submission_sha256'] == doc['content_sha256']]
  failed = [r for r in mine if r['result'] != 'pass']
  if failed:
    first = failed[0]['mismatches'][0] if failed[0]['mismatches'] else None
    detail = (f'seed {first["seed"]} round {first["round"]} {first["metric"]}: '
              f'{first["submitted"]!r} submitted, {first["rerun"]!r} re-run' if first
              else 're-run differs')
    return Status('failed', detail, first)
  full = [r for r in mine if covers_final(r, doc, primary)]
  if full:
    r = full[0]
    return Status('verified', f'{len(r["seeds"])} of {len(doc["seeds"])} seeds re-run in '
                  f'full ({r["final_round"] if "final_round" in r else final_round(doc)} '
                  f'rounds) on {r["hardware"]["device_kind"]}, {r["created_utc"][:10]}', None)
  if mine:
    r = max(mine, key=lambda x: len(x['rounds']))
    return Status('partial', f'{_span(r["rounds"])} reproduced', None)
  return Status('none', '', None)
