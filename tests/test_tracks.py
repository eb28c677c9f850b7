"""A published track never changes: its frozen part is pinned by hash.

Changing a default the frozen part reads (data, population, rounds, the
evaluation protocol, ...) changes these hashes; the fix is a new track
version (bench/tracks/definitions.py), never a new pin for version 1: the
submissions under leaderboard/submissions/ were made against these.
"""
import dataclasses

from fedxr_jax.bench import tracks

PINNED = {
    ('xr-default', 1): '6f68c3609b124e7dd47eb2e286bad547bdc6ee99efe86ec9e15888721f6f7b55',
    ('cognitive-augmentation', 1):
        '973032414230217bb0dea9d34ca0a766bb58bbee2847ae8c189fa35f5cbba4c3',
    ('neuroadaptive', 1): 'e8cf5f375d4d8b6044aac9d3f2c76bde53208f8aee140d0c4be6e0bab0137fa0',
    ('ai-companions', 1): 'f694fc3bb1b4e5589b55e5619c8eb44602b39649d6a3c01621ad4971795a98d1',
    ('emotion-gaming', 1): '222e690deaaeeb680e399c28dd698d0e9492480ba9bbc1cf7564b15f2d96b451',
    ('d2d', 1): '428794d8aae3cc9d28e9753247ca803a83c13dc0a5c65a5a2d3175c652fe86d2',
    ('hetero-hardware', 1): '1bfc00a066227c9f9a048392c6406654550a202c32ddfb7e6d8cd02e9429328b',
    ('continual', 1): '13c501bbe4d452a94e91326734a810fdba7985aebe9e724deaa9051b2c2a6c0f',
    ('private', 1): '9a80d78474e9a6cecb391c1f261867388bdf92fc59086cdbcce79c420a5b9803',
    ('robust', 1): '65cf8e6ff243ebd083592edc990f79a5fedbafa04db4f4c9faad749dde14162e',
    ('hapt-30', 1): '29fb0a71569b0f2d444d47ee449662f2d51fa55c16057f33c689465e1b93b179',
    ('gpu-scale', 1): '7ee0c386be2ba07175fb0ed8cef3ac6b0fc27be893df3a8bff10d01e5f35f711',
}


def test_every_published_track_keeps_its_frozen_part():
  current = {(t.id, t.version): t.frozen_sha256 for t in tracks.all_tracks()}
  changed = sorted(f'{i} v{v}' for (i, v), h in PINNED.items() if current.get((i, v)) != h)
  assert not changed, (f'frozen part changed for {changed}: add a new version of the track '
                       'instead of editing a published one')


def test_a_changed_frozen_key_changes_the_hash():
  track = tracks.get('xr-default')
  assert track.frozen['num_rounds'] == 20 and track.frozen['population_size'] == 500
  edited = dataclasses.replace(track, frozen={**track.frozen, 'num_rounds': 21})
  assert edited.frozen_sha256 != track.frozen_sha256 == PINNED[('xr-default', 1)]
