"""The benchmark's track registry: TRACKS (what `fedxr-leaderboard` and the
validator read), and each runnable track's base config (what `fedxr-bench run`
trains).

A track definition (definitions.py) provides, for a (id, version):
  base        a function returning a fresh ml_collections config: the track's
              scenario, model, data, population, rounds and evaluation;
  Track(...)  frozen=common.frozen_part(base, open_) over the resolved config,
              open_ from common.method(base) (+ common.open_sections(base, ...)
              and the track's own keys), seeds (>= 3 from version 2 on),
              primary_metric, cost_metrics, tier ('cpu' | 'gpu'), budget
              (bench.track.Budget, per device), target (time-to-accuracy),
              rounds_rule (what bench.plateau.check said of the reference
              FedAvg curve), pretrained ({'path', 'sha256'} of the checkpoint
              entries start from; the base sets config.model.pretrained to it),
              status ('published' once its hash is pinned in
              tests/test_tracks.py) and a note.
"""
import contextlib
from typing import Optional

from fedxr_jax.bench.errors import TrackError
from fedxr_jax.bench.tracks import definitions
from fedxr_jax.bench.tracks.definitions import BASES, TRACKS


def get(track_id: str, version: Optional[int] = None):
  """The track `track_id` at `version` (None: its newest version)."""
  matches = [t for t in definitions.TRACKS if t.id == track_id]
  if not matches:
    raise TrackError(f'unknown track {track_id!r}; tracks: '
                     f'{sorted({t.id for t in definitions.TRACKS})}')
  if version is None:
    return max(matches, key=lambda t: t.version)
  for t in matches:
    if t.version == version:
      return t
  raise TrackError(f'{track_id} has no version {version} (versions: '
                   f'{sorted(t.version for t in matches)})')


def runnable(track):
  """The track, or one TrackError line naming the version that takes new runs."""
  if track.runnable and track.key in definitions.BASES:
    return track
  newest = get(track.id)
  instead = f'; run {newest.name}' if newest.runnable and newest is not track else ''
  why = f'{track.status}: {track.note}' if track.note else 'no base config'
  raise TrackError(f'{track.name} takes no new runs ({why}){instead}')


def base_config(track):
  """A fresh copy of a runnable track's base config (ml_collections, unlocked)."""
  return definitions.BASES[runnable(track).key]()


def all_tracks() -> tuple:
  return definitions.TRACKS


@contextlib.contextmanager
def registered(track, base):
  """Adds a track (and its base config function) for the duration (tests)."""
  saved = definitions.TRACKS, dict(definitions.BASES)
  if track not in saved[0]:
    definitions.TRACKS = saved[0] + (track,)
  definitions.BASES[track.key] = base
  try:
    yield track
  finally:
    definitions.TRACKS, definitions.BASES = saved[0], saved[1]
