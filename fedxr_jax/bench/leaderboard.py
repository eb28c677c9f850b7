"""The leaderboard: every valid submission of each track, ranked, with what its
verification says, written as a static site (bench/site.py renders it).

  collect(submissions_dir, tracks, verified_dir=None) -> Board
  build_site(submissions_dir, out_dir, tracks, verified_dir=None) -> Board

Every `*.json` in `submissions_dir` (not `*.verified.json`, the old sidecars,
which are never read: verification records come only from `verified_dir`)
is validated (validate.py); invalid files are listed with their one-line
reason and never ranked. Files with the same results (track, config, seeds,
curves; submission.results_sha256) are one entry: the earliest is kept, the
others are listed as duplicates. An entry whose re-run differs
(verification.status 'failed') is unranked, listed apart with the first
differing seed, round and key. The others are ranked by the primary metric
with statistical ties sharing a rank (ranking.py). A track with `rank_apart`
(private: what epsilon covers) ranks the entries that train parameters on the
device outside that guarantee (model_facts.personal_training) in a table of
their own (`Board.apart`).
"""
import dataclasses
import glob
import os
from typing import Optional

from fedxr_jax.bench import model_facts
from fedxr_jax.bench import plateau
from fedxr_jax.bench import ranking
from fedxr_jax.bench import targets
from fedxr_jax.bench import track as track_lib
from fedxr_jax.bench import validate
from fedxr_jax.bench import verification
from fedxr_jax.errors import FedXRError

OLD_SIDECAR = '.verified.json'


@dataclasses.dataclass(frozen=True)
class Entry:
  submission: validate.Submission
  rank: Optional[int]                # tied rank; None: unranked
  verification: verification.Status
  to_target: Optional[dict]          # targets.summarize, where the track has a target


@dataclasses.dataclass(frozen=True)
class Invalid:
  file: str
  reason: str


@dataclasses.dataclass(frozen=True)
class Board:
  tracks: dict               # (id, version) -> Track, registry order
  entries: dict              # (id, version) -> [Entry] ranked, best first
  unranked: dict             # (id, version) -> [Entry] whose re-run differs
  apart: dict                # (id, version) -> [Entry] ranked apart (Track.rank_apart)
  invalid: tuple             # Invalid (unreadable, failing, duplicate), by file name
  bad_records: tuple         # Invalid: unreadable files in verified_dir
  verified_dir: Optional[str] = None

  def reference(self, key) -> Optional[Entry]:
    """The track's reference entry: the best-ranked one of its reference method."""
    t = self.tracks[key]
    return next((e for e in self.entries[key] if e.submission.method == t.reference), None)

  def reference_curve(self, key) -> list:
    ref = self.reference(key)
    if ref is None:
      return []
    return plateau.mean_curve([r['curve'] for r in ref.submission.doc['runs']],
                              self.tracks[key].primary_metric)

  def plateau(self, key) -> Optional[plateau.Plateau]:
    """The window rule on the reference curve; None without a reference entry or on a
    track sized by the stretch rule (a decayed rate anneals: its windows always gain)."""
    points = self.reference_curve(key)
    if not points or self.tracks[key].sizing != 'window':
      return None
    ref = self.reference(key)
    return plateau.check(points, verification.final_round(ref.submission.doc))


def submission_files(folder: str) -> list:
  paths = sorted(glob.glob(os.path.join(glob.escape(folder), '*.json')))
  return [p for p in paths if not os.path.basename(p).endswith(OLD_SIDECAR)]


def _validated(paths, registry) -> tuple:
  """([Submission], [Invalid]): duplicates of an earlier entry are invalid."""
  valid, invalid = [], []
  for path in paths:
    try:
      valid.append(validate.validate_file(path, registry))
    except FedXRError as e:
      invalid.append(Invalid(os.path.basename(path), str(e)))
  kept, first = [], {}
  for s in sorted(valid, key=lambda s: (s.doc['created_utc'], os.path.basename(s.path))):
    twin = first.get(s.results_sha256)
    if twin is not None:
      invalid.append(Invalid(os.path.basename(s.path), f'a duplicate of {twin}: the same '
                             'track, config, seeds and curves (the earliest is ranked)'))
      continue
    first[s.results_sha256] = os.path.basename(s.path)
    kept.append(s)
  return kept, sorted(invalid, key=lambda i: i.file)


def _to_target(s, t: track_lib.Track) -> Optional[dict]:
  if t.target is None:
    return None
  return targets.summarize([r['curve'] for r in s.doc['runs']], t.primary_metric, t.target,
                           t.higher_is_better)


def collect(submissions_dir: str, tracks, verified_dir: Optional[str] = None) -> Board:
  """Validates every submission file, reads the records, ranks the rest per track."""
  registry = track_lib.index(tracks)
  records, bad = verification.collect(verified_dir)
  subs, invalid = _validated(submission_files(submissions_dir), registry)
  entries, unranked, apart = ({k: [] for k in registry} for _ in range(3))
  for key, t in registry.items():
    mine = [s for s in subs if s.track.key == key]
    states = {s.path: verification.status(records.get(s.content_sha256, []), s.doc,
                                          t.primary_metric) for s in mine}
    failed = [s for s in mine if states[s.path].state == 'failed']
    rest = [s for s in mine if s not in failed]
    by_itself = [s for s in rest if t.rank_apart and _personal(s)]
    ranked_entries = lambda group: [
        Entry(s, r, states[s.path], _to_target(s, t))
        for r, s in ranking.rank(group, t.primary_metric, t.higher_is_better)]
    entries[key] = ranked_entries([s for s in rest if s not in by_itself])
    apart[key] = ranked_entries(by_itself)
    unranked[key] = [Entry(s, None, states[s.path], _to_target(s, t)) for s in failed]
  return Board(registry, entries, unranked, apart, tuple(invalid),
               tuple(Invalid(f, why) for f, why in bad), verified_dir)


def _personal(s) -> bool:
  facts = s.doc.get('model_facts')
  return bool(facts) and model_facts.personal_training(facts)


def build_site(submissions_dir: str, out_dir: str, tracks,
               verified_dir: Optional[str] = None) -> Board:
  """Writes the site into out_dir (existing files of other names are kept)."""
  from fedxr_jax.bench import site   # pylint: disable=g-import-not-at-top
  if not os.path.isdir(submissions_dir):
    raise FedXRError(f'{submissions_dir!r} is not a folder')
  board = collect(submissions_dir, tracks, verified_dir)
  site.write(board, out_dir)
  return board
