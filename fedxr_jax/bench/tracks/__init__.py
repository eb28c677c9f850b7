"""The benchmark's track registry: TRACKS (what `fedxr-leaderboard` and the
validator read), and each track's base config (what `fedxr-bench run` trains).
"""
import contextlib

from fedxr_jax.bench.errors import TrackError
from fedxr_jax.bench.tracks import definitions
from fedxr_jax.bench.tracks.definitions import BASES, TRACKS


def get(track_id: str):
  """The newest version of the track `track_id`."""
  matches = [t for t in definitions.TRACKS if t.id == track_id]
  if not matches:
    raise TrackError(f'unknown track {track_id!r}; tracks: '
                   f'{sorted({t.id for t in definitions.TRACKS})}')
  return max(matches, key=lambda t: t.version)


def base_config(track_id: str):
  """A fresh copy of the track's base config (ml_collections, unlocked)."""
  get(track_id)
  return definitions.BASES[track_id]()


def all_tracks() -> tuple:
  return definitions.TRACKS


@contextlib.contextmanager
def registered(track, base):
  """Adds a track (and its base config function) for the duration (tests)."""
  saved = definitions.TRACKS, dict(definitions.BASES)
  if track not in saved[0]:
    definitions.TRACKS = saved[0] + (track,)
  definitions.BASES[track.id] = base
  try:
    yield track
  finally:
    definitions.TRACKS, definitions.BASES = saved[0], saved[1]
