"""Running a track's seeds into a submission, and re-running a submission's seeds.

`run_track` trains every seed of a runnable track (the track's base config
plus the entry's open-part overrides, checked against the track's limits)
with the one training loop, one workdir per seed under the output folder,
and writes the submission JSON under a name no other entry has
(naming.py): the per-round curves, the final metrics (the last evaluation's
Table 6 metrics, plus run totals of communication and energy), the model's
parameter counts and FLOPs, the starting checkpoint, provenance and timing.
`rerun` trains chosen seeds of a submission again from its recorded config
(bench/verify.py compares them).
"""
import ast
import copy
import fnmatch
import json
import os
import tempfile
import time
from typing import Mapping, Optional

import ml_collections

from fedxr_jax.bench import model_facts
from fedxr_jax.bench import naming
from fedxr_jax.bench import provenance
from fedxr_jax.bench import submission
from fedxr_jax.bench import validate
from fedxr_jax.bench import tracks as tracks_lib
from fedxr_jax.bench.errors import TrackError
from fedxr_jax.bench.tracks import common
from fedxr_jax.bench.tracks import resolve
from fedxr_jax.bench.tracks import v1 as v1_tracks
from fedxr_jax.errors import FedXRError
from fedxr_jax.training import metrics_log

# Curve keys that depend on the machine, not on the run: never compared. The virtual
# clock (`time/virtual_s`, the cost model's seconds) is the run's: it stays.
MACHINE_KEYS = metrics_log.MACHINE_KEYS
RUN_KEYS = ('time/virtual_s',)
# Run totals reported beside the final evaluation (sums over every round).
TOTALS = ('comm/uplink_bits', 'comm/downlink_bits', 'comm/d2d_bits', 'comm/backhaul_bits',
          'cost/energy_j')

def parse_overrides(args) -> dict:
  """{'a.b': value} from ['--config.a.b=value', ...]; values as Python literals."""
  out = {}
  for arg in args:
    if not arg.startswith('--config.') or '=' not in arg:
      raise TrackError(f'expected --config.KEY=VALUE, got {arg!r}')
    key, text = arg[len('--config.'):].split('=', 1)
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text   # a bare word is a string
    out[key] = value
  return out


def apply(config, overrides: Mapping) -> ml_collections.ConfigDict:
  """The config with dotted overrides set; an unknown key or a wrong type is one line."""
  config = copy.deepcopy(config)   # keeps typed references (chunk_size: 'auto' or an int)
  config.lock()
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    block = config
    try:
      for p in parents:
        block = block[p]
      old = block[leaf]
      block[leaf] = tuple(value) if isinstance(value, list) and isinstance(old, tuple) else value
    except (KeyError, AttributeError):
      raise TrackError(f'unknown config key {key!r}') from None
    except TypeError as e:
      raise TrackError(f'config {key}: {e}') from None
  return config


def track_config(track, overrides: Mapping):
  """The track's base config with an entry's overrides, checked against its limits."""
  free = {k: v for k, v in overrides.items() if k in common.INFRASTRUCTURE}
  track.check_overrides({k: v for k, v in overrides.items() if k not in free})
  if 'seed' in overrides:
    raise TrackError(f'{track.name} sets the seeds itself ({list(track.seeds)})')
  return apply(tracks_lib.base_config(track), overrides)


def curve_rows(rows) -> list:
  """Logged rows without machine-dependent keys or non-scalar values."""
  keep = lambda k, v: ((k in RUN_KEYS or not any(fnmatch.fnmatch(k, p) for p in MACHINE_KEYS))
                       and (v is None or isinstance(v, (int, float))))
  return [{k: v for k, v in row.items() if keep(k, v)} for row in rows]


def final_metrics(rows, summary: Mapping) -> dict:
  """The final evaluation's scalars and the run totals (`total/<key>`)."""
  final = {k: v for k, v in curve_rows([summary])[0].items() if k != 'round'}
  for key in TOTALS:
    values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    if values:
      final[f'total/{key}'] = float(sum(values))
  return final


def _rows(workdir: str) -> list:
  return metrics_log.read_rows(os.path.join(workdir, 'metrics.jsonl'))


def _read_summary(workdir: str) -> dict:
  with open(os.path.join(workdir, 'summary.json')) as f:
    return json.load(f)


SEED_MODES = ('auto', 'vmapped', 'sequential')


def run_track(track_id: str, output_dir: str, overrides: Mapping, *, method: Mapping,
              progress: bool = False, seeds: str = 'auto', version: Optional[int] = None,
              external_data: bool = False) -> str:
  """Trains every seed of the track; writes and returns the submission's path.

  version: None runs the track's newest version (an archived one is refused
  in one line naming the version to run). seeds: 'vmapped' trains all seeds
  in one compiled program (a vmapped lane axis of `training.loop.run_lanes`:
  the seed is data of the round), or is refused; 'sequential' one after
  another on the same executables; 'auto' is sequential on CPU (vmapping two
  seeds saved 6% there: benchmarks/results/track_seeds.md) and vmapped
  elsewhere where the stacked states fit. Either way each seed resumes from
  its workdir. The submission records which (`timing.seeds`): a re-run
  trains them alike. external_data: the entry says it used data beyond the
  track's own (OGB's flag).
  """
  import jax   # pylint: disable=g-import-not-at-top
  if seeds not in SEED_MODES:
    raise TrackError(f'--seeds must be one of {SEED_MODES}, got {seeds!r}')
  track = tracks_lib.runnable(tracks_lib.get(track_id, version))
  track.check_platform(jax.devices()[0].platform)
  config = track_config(track, overrides)
  t0 = time.perf_counter()
  base = os.path.join(output_dir, 'runs', f'{track.id}-v{track.version}',
                      naming.slug(method['name']))
  if seeds == 'auto' and jax.devices()[0].platform == 'cpu':
    seeds = 'sequential'
  facts = model_facts.facts(config)
  workdirs, mode = _seed_runs(config, track.seeds, base, seeds, progress)
  curves, finals, compile_s = {}, {}, 0.0
  for seed, workdir in workdirs.items():
    rows = _rows(workdir)
    curves[seed] = curve_rows(rows)
    finals[seed] = final_metrics(rows, _read_summary(workdir))
    compile_s += sum(r.get('time/compile_s') or 0.0 for r in rows)
  doc = submission.build(
      track_id=track.id, track_version=track.version, frozen=track.frozen,
      budget=track.budget_json, config=config.to_dict(), seeds=track.seeds, curves=curves,
      finals=finals, method=method, hardware=provenance.hardware(),
      versions=provenance.versions(), wall_s=time.perf_counter() - t0,
      compile_s=compile_s or None, model_facts=facts,
      pretrained=model_facts.checkpoint(config.model.pretrained),
      external_data=external_data, seed_mode=mode)
  path = naming.write_new(doc, output_dir)
  # Checked as the leaderboard will check it: an entry over its track's budget (known
  # only once it ran: local compute seconds) is written, and said, not shipped silently.
  try:
    validate.validate_file(path, tracks_lib.all_tracks())
  except FedXRError as e:
    raise TrackError(f'wrote {path}, but it would not be ranked: {e}') from None
  return path


def _seed_runs(config, seeds, base: str, mode: str, progress: bool) -> tuple:
  """({seed: its finished workdir}, 'vmapped' | 'sequential'): the seeds as lanes of
  the one training loop (`training.loop.run_lanes`), each resumable from its workdir."""
  from fedxr_jax.training import guards   # pylint: disable=g-import-not-at-top
  from fedxr_jax.training import loop   # pylint: disable=g-import-not-at-top
  workdirs = {s: os.path.join(base, f'seed{s}') for s in seeds}
  configs = []
  for seed in seeds:
    run_config = copy.deepcopy(config)
    run_config.seed = seed
    configs.append(run_config)
  results = loop.run_lanes(configs, [workdirs[s] for s in seeds], progress=progress,
                           vmap=mode != 'sequential')
  ran = 'vmapped' if len(seeds) > 1 and all(r.vmapped for r in results) else 'sequential'
  if mode == 'vmapped' and ran != 'vmapped':
    raise TrackError(f'--seeds=vmapped: {results[0].why or "the seeds are not one program"}')
  for result in results:
    if result.stopped is not None:
      raise guards.DivergenceError(result.stopped)
  return workdirs, ran


def rerun_config(doc: Mapping) -> ml_collections.ConfigDict:
  """A submission's recorded config as today's code reads it: tuples given back
  their types, and a v1 entry's keys translated (tracks/v1.py)."""
  from fedxr_jax.configs import default   # pylint: disable=g-import-not-at-top
  track = tracks_lib.get(doc['track']['id'], doc['track']['version'])
  like = (tracks_lib.base_config(track) if track.runnable and track.key in tracks_lib.BASES
          else default.get_config())
  recorded = doc['config']
  if doc['track']['version'] == 1:
    recorded = v1_tracks.translate(recorded, default.get_config().to_dict())
  config = _retuple(ml_collections.ConfigDict(
      _references_like(_with_added_blocks(recorded, like), like)), like)
  config.plot = False
  return config


def _references_like(recorded: Mapping, like) -> dict:
  """`recorded` with today's untyped references given back (JSON kept the value only):
  chunk_size holds 'auto' or an int, so a rerun may set either."""
  def untyped(key):
    return (key in like and not isinstance(like[key], ml_collections.ConfigDict)
            and like.get_ref(key).get_type() is object)
  return {k: ml_collections.FieldReference(v, field_type=object) if untyped(k) else v
          for k, v in recorded.items()}


def _with_added_blocks(recorded: Mapping, like) -> dict:
  """`recorded` with the settings it predates: keys today's config has and the entry
  lacks (a feature block, or a block inside one such as client_optimizer.schedule),
  each dormant when off (`tracks.resolve`), ran as off. Another missing key is one
  line: today's code cannot rerun the entry."""
  today = common.flatten(like.to_dict())
  have = common.flatten(recorded)
  missing = sorted(k for k in today if k not in have)
  needed = sorted(set(missing) - resolve.dormant_keys(today))
  if needed:
    top = needed[0].split('.')[0]
    name = top if top not in recorded else needed[0]
    raise TrackError(f'the recorded config has no {name!r}, which today\'s code needs '
                     'and does not take as off: this entry cannot be re-run')
  out = copy.deepcopy(dict(recorded))
  for key in missing:
    *path, leaf = key.split('.')
    node = out
    for part in path:
      node = node.setdefault(part, {})
    node[leaf] = copy.deepcopy(today[key])
  return out


def rerun(doc: Mapping, seeds, rounds: int, workdir: Optional[str] = None) -> dict:
  """{seed: rows}: the first `rounds` rounds of each of `seeds` from the recorded config.

  Where the submission's seeds ran vmapped, every seed again in one program
  (the same executable, so the same bits), whichever were asked for.
  """
  from fedxr_jax.training import loop   # pylint: disable=g-import-not-at-top
  config = rerun_config(doc)
  if doc['timing'].get('seeds') == 'vmapped':
    seeds, vmap = list(doc['seeds']), True
  else:
    seeds, vmap = list(seeds), False
  lanes = []
  for s in seeds:
    lane = copy.deepcopy(config)
    lane.seed = s
    lanes.append(lane)
  # The recorded run stopped after `rounds` (num_rounds=rounds would recalibrate DP noise).
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(workdir or tmp, 'rerun')
    results = loop.run_lanes(lanes, [os.path.join(out, f'seed{s}') for s in seeds],
                             stop_after=rounds, vmap=vmap)
    return {s: curve_rows(r.rows) for s, r in zip(seeds, results)}


def _retuple(config, like):
  """JSON turned the config's tuples into lists: give them back their types."""
  flat, want = common.flatten(config.to_dict()), common.flatten(like.to_dict())
  fixed = {k: tuple(v) for k, v in flat.items()
           if isinstance(v, list) and isinstance(want.get(k), tuple)}
  return apply(config, fixed)
