"""The version 1 tracks, archived: validated from data, re-run through a key translation.

Their frozen parts and open limits are a snapshot taken from commit 01066a6
(bench/schema/tracks-v1.json, made by tracks/snapshot.py), so validating a
v1 submission never reads today's config: a refactor of config keys or a
new component cannot break the 48 landed entries.

They take no new entries (`fedxr-bench run` names the v2 track instead): a
track version pins what the code computes as well as the config, and
today's code is not 01066a6's. `fedxr-bench verify` still re-runs a v1 entry
with today's code, its recorded config translated to today's keys
(`translate`: the optimizer blocks that moved); what differs from 01066a6
then shows as a differing round, as it would for any entry.
"""
import copy
import functools
import importlib.resources
import json
from typing import Mapping

from fedxr_jax.bench import canonical
from fedxr_jax.bench.errors import TrackError
from fedxr_jax.bench.track import Track, limit_from_json

SNAPSHOT = 'tracks-v1.json'
NOTE = ('validated and ranked from the snapshot of 01066a6; takes no new entries (run the '
        'v2 track)')
# Time-to-accuracy thresholds, set after the fact from the reference runs:
# 90% of the FedAvg entry's final mean eval/accuracy, rounded down to 0.01.
TARGETS = {'xr-default': 0.44, 'cognitive-augmentation': 0.22, 'neuroadaptive': 0.42,
           'ai-companions': 0.38, 'emotion-gaming': 0.38, 'd2d': 0.44,
           'hetero-hardware': 0.51, 'continual': 0.40, 'private': 0.26, 'robust': 0.43,
           'hapt-30': 0.69}


@functools.lru_cache(maxsize=None)
def _data() -> dict:
  text = (importlib.resources.files('fedxr_jax.bench') / 'schema' / SNAPSHOT).read_text(
      encoding='utf-8')
  return json.loads(text)


def commit() -> str:
  return _data()['commit']


@functools.lru_cache(maxsize=None)
def tracks() -> tuple:
  """The v1 Tracks, each checked against the hash stored with it."""
  return from_snapshot(_data())


def from_snapshot(data: Mapping) -> tuple:
  out = []
  for t in data['tracks']:
    track = Track(
        id=t['id'], version=t['version'], description=t['description'], frozen=t['frozen'],
        open={k: limit_from_json(v) for k, v in t['open'].items()}, seeds=tuple(t['seeds']),
        primary_metric=t['primary_metric'], higher_is_better=t['higher_is_better'],
        cost_metrics=tuple(t['cost_metrics']), requires=tuple(t['requires']),
        status='archived', tier='gpu' if t['requires'] else 'cpu',
        target=TARGETS.get(t['id']), note=NOTE)
    if track.frozen_sha256 != t['frozen_sha256']:
      raise TrackError(f'{SNAPSHOT}: {track.name} no longer hashes to its recorded '
                       'frozen_sha256 (the snapshot was edited)')
    out.append(track)
  return tuple(out)


# v1 key -> today's keys (01066a6 -> the optimizer blocks by (role, name)).
MOVED = {
    'client_optimizer.momentum': ('client_optimizer.sgd.momentum',),
    'server_optimizer.momentum': ('server_optimizer.sgd.momentum',),
    'server_optimizer.b1': ('server_optimizer.adam.b1', 'server_optimizer.yogi.b1',
                            'server_optimizer.adagrad.b1'),
    'server_optimizer.b2': ('server_optimizer.adam.b2', 'server_optimizer.yogi.b2'),
    'server_optimizer.eps': ('server_optimizer.adam.eps', 'server_optimizer.yogi.eps',
                             'server_optimizer.adagrad.eps'),
}


def _set(nested: dict, dotted: str, value) -> None:
  *parents, leaf = dotted.split('.')
  for p in parents:
    nested = nested.setdefault(p, {})
  nested[leaf] = value


def _targets(key: str, known: Mapping) -> tuple:
  """Where a v1 key lives today: MOVED, itself, or (a model setting) inside the
  selected model's block (`model.width` -> `model.m3t.width`)."""
  if key in MOVED:
    return MOVED[key]
  if key not in known and key.startswith('model.') and 'model.name' in known:
    return (f'model.{known["model.name"]}.{key[len("model."):]}',)
  return (key,)


def translate(config: Mapping, today: Mapping) -> dict:
  """A v1 submission's config (nested) in today's keys: moved keys to where they
  went, blocks v1 did not have at today's defaults (`today`: today's default
  config, nested). 01066a6's client adam / yogi / adagrad read the defaults
  today's blocks hold (b1 0.9, b2 0.99, eps 1e-3), so nothing changes meaning.
  A key neither today's config nor MOVED knows is one TrackError line.
  """
  from fedxr_jax.bench.tracks import common   # pylint: disable=g-import-not-at-top
  flat, known = common.flatten(config), common.flatten(today)
  out = copy.deepcopy(canonical.to_json(dict(today), 'config'))
  for key, value in flat.items():
    for target in _targets(key, known):
      if target not in known:
        raise TrackError(f'cannot re-run this v1 entry with today\'s code: its key {key} '
                         'has no place in today\'s config')
      _set(out, target, value)
  return out
