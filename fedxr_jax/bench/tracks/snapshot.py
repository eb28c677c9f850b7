"""A registry's tracks as data: what validating their submissions needs, and nothing
that depends on today's config.

  snapshot(tracks, commit) -> dict      (JSON: format, commit, tracks[])

Each track keeps its id, version, description, frozen part (dotted key ->
value) and that part's SHA-256, open limits, seeds, metrics and required
platforms. This module imports nothing of fedxr_jax, so it runs against the
source tree of an older commit:

  cd OLD_TREE && PYTHONPATH=. python3 -c "import json, runpy;
    s = runpy.run_path('NEW_TREE/fedxr_jax/bench/tracks/snapshot.py');
    from fedxr_jax.bench import tracks;
    print(json.dumps(s['snapshot'](tracks.all_tracks(), 'COMMIT'), indent=1, sort_keys=True))"

`tracks/v1.py` reads bench/schema/tracks-v1.json, made this way from 01066a6.
"""
import hashlib
import json

FORMAT = 'fedxr_jax.tracks'


def _json(value):
  """Tuples as lists, as the frozen part is hashed (canonical JSON)."""
  return json.loads(json.dumps(value, allow_nan=False))


def _limit(limit) -> dict:
  if hasattr(limit, 'values'):
    return {'one_of': _json(list(limit.values))}
  return {'between': [limit.low, limit.high], 'integer': bool(limit.integer)}


def sha256(value) -> str:
  """The canonical hash (bench/canonical.py), restated here for old trees."""
  text = json.dumps(value, sort_keys=True, separators=(',', ':'), ensure_ascii=True,
                    allow_nan=False)
  return hashlib.sha256(text.encode('ascii')).hexdigest()


def snapshot(tracks, commit: str) -> dict:
  out = []
  for t in tracks:
    frozen = _json(dict(t.frozen))
    out.append({
        'id': t.id, 'version': t.version, 'description': t.description,
        'frozen': frozen, 'frozen_sha256': sha256(frozen),
        'open': {k: _limit(v) for k, v in sorted(t.open.items())},
        'seeds': list(t.seeds), 'primary_metric': t.primary_metric,
        'higher_is_better': bool(t.higher_is_better),
        'cost_metrics': list(t.cost_metrics), 'requires': list(t.requires)})
  return {'format': FORMAT, 'commit': commit, 'tracks': out}
