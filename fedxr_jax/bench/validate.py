"""Validating a submission file: bounded, strict, and never executing anything.

validate_file(path, tracks) runs, in order, and stops at the first problem
with one SubmissionError / TrackError line:
  1. read at most files.MAX_BYTES (size checked before reading), strict JSON;
  2. format and schema version (1 or 2), then that version's JSON Schema
     (first error + JSON path);
  3. the track: (id, version) registered; a track with a budget takes schema
     2 only; `frozen` equal to the track's frozen part key by key, `budget`
     to its budget, frozen_sha256 their hash; the full config agrees with
     every frozen key and keeps each open key within its limits (on a
     resolved track only the keys the config's selections use: a dormant
     block is never read); the hardware platform is one the track allows;
     the model facts and the curves' local compute fit the budget; the
     pretrained checkpoint is the track's;
  4. the seeds are exactly the track's; each run's curve rises in round and
     ends at its final metrics; the summary equals a recomputation;
  5. the primary metric has a mean; content_sha256 holds.
"""
import dataclasses
import math
import sys
from typing import Any, Mapping, Optional

from fedxr_jax.bench import canonical
from fedxr_jax.bench import files
from fedxr_jax.bench import schemas
from fedxr_jax.bench import submission as submission_lib
from fedxr_jax.bench import track as track_lib
from fedxr_jax.bench.errors import SubmissionError, TrackError
from fedxr_jax.bench.tracks import common
from fedxr_jax.bench.tracks import resolve
from fedxr_jax.errors import FedXRError

_MISSING = object()
# A recomputed mean/std may differ from a third-party writer's in the last bits.
_REL_TOL, _ABS_TOL = 1e-9, 1e-12


@dataclasses.dataclass(frozen=True, eq=False)
class Submission:
  """A validated submission: its parsed document and its track."""
  path: str
  doc: dict
  track: track_lib.Track

  @property
  def method(self) -> str:
    return self.doc['method']['name']

  @property
  def content_sha256(self) -> str:
    return self.doc['content_sha256']

  @property
  def seeds(self) -> list:
    return self.doc['seeds']

  @property
  def results_sha256(self) -> str:
    return submission_lib.results_sha256(self.doc)

  def stat(self, metric: str) -> Optional[dict]:
    """{mean, std, n} of a final metric over seeds; None when not reported."""
    return self.doc['summary'].get(metric)


def lookup(config: Mapping[str, Any], dotted: str):
  """config['a']['b'] for 'a.b', or _MISSING."""
  node = config
  for part in dotted.split('.'):
    if not isinstance(node, dict) or part not in node:
      return _MISSING
    node = node[part]
  return node


def _short(value) -> str:
  text = canonical.canonical(value).decode()
  return text if len(text) <= 80 else text[:80] + '...'


def check_header(doc) -> None:
  if not isinstance(doc, dict):
    raise SubmissionError(f'the top level is a JSON {type(doc).__name__}, not an object')
  if doc.get('format') != submission_lib.FORMAT:
    raise SubmissionError(f'not a fedxr_jax submission (format is '
                          f'{_short(doc.get("format"))}, want "{submission_lib.FORMAT}")')
  version = doc.get('schema_version')
  if isinstance(version, bool) or version not in submission_lib.READS:
    raise SubmissionError(f'schema version {_short(version)} is not supported (this '
                          f'fedxr_jax reads {", ".join(map(str, submission_lib.READS))})')


def _budget_of(doc: dict):
  return doc['budget'] if doc['schema_version'] >= 2 else None


def check_frozen(doc: dict, track: track_lib.Track) -> None:
  if track.budget is not None and doc['schema_version'] < 2:
    raise SubmissionError(f'{track.name} has a budget: it takes schema version 2 '
                          f'submissions (with model_facts), not {doc["schema_version"]}')
  if not canonical.equal(_budget_of(doc), track.budget_json):
    raise SubmissionError(f'budget is {_short(_budget_of(doc))}; {track.name} sets '
                          f'{_short(track.budget_json)}')
  frozen, want = doc['frozen'], track.frozen_json
  for key in sorted(set(frozen) | set(want)):
    if key not in frozen:
      raise SubmissionError(f'frozen key {key!r} is missing ({track.name} freezes it at '
                            f'{_short(want[key])})')
    if key not in want:
      raise SubmissionError(f'frozen key {key!r} is not frozen by {track.name}')
    if not canonical.equal(frozen[key], want[key]):
      raise SubmissionError(f'frozen key {key!r} is {_short(frozen[key])}; {track.name} '
                            f'freezes it at {_short(want[key])}')
  if doc['frozen_sha256'] != track_lib.frozen_hash(frozen, _budget_of(doc)):
    raise SubmissionError('frozen_sha256 is not the hash of the frozen part')
  for key in sorted(want):
    value = lookup(doc['config'], key)
    if value is _MISSING:
      raise SubmissionError(f'config lacks the frozen key {key!r}')
    if not canonical.equal(value, want[key]):
      raise SubmissionError(f'config {key} is {_short(value)}; {track.name} freezes it at '
                            f'{_short(want[key])}')
  check_open(doc['config'], track)
  track.check_platform(doc['hardware']['device_platform'])


def check_open(config: dict, track: track_lib.Track) -> None:
  """Each open key the config sets is within its limit (on a resolved track,
  each one its selections use: a dormant block is never read)."""
  keys = sorted(track.open)
  if track.resolved:
    flat = common.flatten(config)
    dormant = resolve.dormant_keys(flat)
    keys = [k for k in keys if k not in dormant]
    known = set(track.frozen) | set(track.open) | set(common.INFRASTRUCTURE)
    unknown = sorted(k for k in flat if k not in known and k not in dormant)
    if unknown:
      raise SubmissionError(f'config {unknown[0]} is neither frozen nor open in {track.name}')
  for key in keys:
    value = lookup(config, key)
    if value is not _MISSING:
      track.check_override(key, value)


def check_model(doc: dict, track: track_lib.Track) -> None:
  """The budget (model facts, local compute in the curves) and the checkpoint."""
  if doc['schema_version'] < 2:
    return
  if track.budget is not None:
    computes = [row['cost/max_compute_s'] for run in doc['runs'] for row in run['curve']
                if row.get('cost/max_compute_s') is not None]
    problems = track.budget.problems(doc['model_facts'], max(computes, default=None))
    if problems:
      raise SubmissionError(f'over {track.name}\'s budget: {problems[0]}')
  if track.pretrained is not None and doc['pretrained']['sha256'] != track.pretrained['sha256']:
    raise SubmissionError(f'pretrained checkpoint sha256 {_short(doc["pretrained"]["sha256"])}'
                          f' is not {track.name}\'s {track.pretrained["sha256"][:16]}...')


def check_seeds(doc: dict, track: track_lib.Track) -> None:
  seeds, want = doc['seeds'], list(track.seeds)
  missing = [s for s in want if s not in seeds]
  if missing:
    raise SubmissionError(f'missing seed {missing[0]} ({track.name} runs seeds {want})')
  extra = [s for s in seeds if s not in want]
  if extra:
    raise SubmissionError(f'seed {extra[0]} is not a seed of {track.name} (seeds {want})')


def _close(a, b) -> bool:
  if a is None or b is None:
    return a is b
  return math.isclose(a, b, rel_tol=_REL_TOL, abs_tol=_ABS_TOL)


def check_summary(doc: dict) -> None:
  want = submission_lib.summarize([r['final'] for r in doc['runs']])
  got = doc['summary']
  for key in sorted(set(want) | set(got)):
    if key not in got:
      raise SubmissionError(f'summary lacks final metric {key!r}')
    if key not in want:
      raise SubmissionError(f'summary has {key!r}, which no run reports')
    for field in ('mean', 'std', 'n'):
      if not _close(got[key][field], want[key][field]):
        raise SubmissionError(f'summary {key!r} {field} is {got[key][field]!r}; the runs '
                              f'give {want[key][field]!r}')


def check_document(doc, tracks: Mapping[tuple, track_lib.Track]) -> track_lib.Track:
  """All checks on a parsed document; returns its track."""
  check_header(doc)
  schemas.check(doc, 'submission', doc['schema_version'])
  key = (doc['track']['id'], doc['track']['version'])
  track = tracks.get(key)
  if track is None:
    known = ', '.join(t.name for t in tracks.values()) or 'none'
    raise TrackError(f'unknown track {key[0]} v{key[1]} (registered: {known})')
  check_frozen(doc, track)
  check_model(doc, track)
  check_seeds(doc, track)
  submission_lib.check_runs(doc['seeds'], doc['runs'])
  check_summary(doc)
  stat = doc['summary'].get(track.primary_metric)
  if stat is None or stat['mean'] is None:
    raise SubmissionError(f'no value of the primary metric {track.primary_metric!r}')
  if doc['content_sha256'] != submission_lib.content_hash(doc):
    raise SubmissionError('content_sha256 does not match the content (the file was '
                          'edited after it was written)')
  return track


def validate_file(path: str, tracks) -> Submission:
  """The validated Submission at `path`; one-line SubmissionError/TrackError otherwise.

  tracks: a list of Track or a mapping (track.index).
  """
  registry = track_lib.index(tracks)
  doc = files.read_json(str(path))
  return Submission(str(path), doc, check_document(doc, registry))


def main(paths, tracks, prog: str = 'fedxr-bench', out=None, err=None) -> int:
  """CLI body: one line per file (`PATH: ok ...` or `prog: error: PATH: why`).

  Returns the exit status: 0 when every file is valid, 2 otherwise.
  """
  out, err = out or sys.stdout, err or sys.stderr
  status = 0
  for path in paths:
    try:
      s = validate_file(path, tracks)
    except FedXRError as e:
      print(f'{prog}: error: {path}: {e}', file=err)
      status = 2
      continue
    stat = s.stat(s.track.primary_metric)
    print(f'{path}: ok ({s.track.name}, {s.method!r}, {s.track.primary_metric} '
          f'{stat["mean"]:.6g} over {len(s.seeds)} seeds, content {s.content_sha256[:12]})',
          file=out)
  return status
