"""Running a track's seeds into a submission, and re-running one to verify it.

`run_track` trains every seed of a track (the track's base config plus the
entry's open-part overrides, checked against the track's limits) with the
ordinary host loop, one workdir per seed under the output folder, and writes
the submission JSON: the per-round curves, the final metrics (the last
evaluation's Table 6 metrics, plus run totals of communication and energy),
provenance and timing. `verify` re-runs the first rounds of a submission's
first seed from its recorded config and compares the curve: bit for bit on
the same software and device kind, within a stated float tolerance across
them.
"""
import ast
import copy
import fnmatch
import json
import math
import os
import tempfile
import time
from typing import Mapping, Optional

import ml_collections

from fedxr_jax.bench import provenance
from fedxr_jax.bench import submission
from fedxr_jax.bench import tracks as tracks_lib
from fedxr_jax.bench import verification
from fedxr_jax.bench.errors import SubmissionError, TrackError
from fedxr_jax.bench.tracks import common

# Curve keys that depend on the machine, not on the run: never compared.
MACHINE_KEYS = ('time/*', 'latency/measured_*')
# Run totals reported beside the final evaluation (sums over every round).
TOTALS = ('comm/uplink_bits', 'comm/downlink_bits', 'comm/d2d_bits', 'comm/backhaul_bits',
          'cost/energy_j')
# Across software versions or device kinds, float32 results may differ by
# reassociation: a verification there allows this relative difference.
CROSS_PLATFORM_RTOL = 1e-3


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
  return apply(tracks_lib.base_config(track.id), overrides)


def curve_rows(rows) -> list:
  """Logged rows without machine-dependent keys or non-scalar values."""
  keep = lambda k, v: (not any(fnmatch.fnmatch(k, p) for p in MACHINE_KEYS)
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
  from fedxr_jax.training import metrics_log   # pylint: disable=g-import-not-at-top
  return metrics_log.read_rows(os.path.join(workdir, 'metrics.jsonl'))


def _read_summary(workdir: str) -> dict:
  with open(os.path.join(workdir, 'summary.json')) as f:
    return json.load(f)


SEED_MODES = ('auto', 'vmapped', 'sequential')


def run_track(track_id: str, output_dir: str, overrides: Mapping, *, method: Mapping,
              progress: bool = False, seeds: str = 'auto') -> str:
  """Trains every seed of the track; writes and returns the submission's path.

  seeds: 'vmapped' trains all seeds in one compiled program (a vmapped lane
  axis of `training.loop.run_lanes`: the seed is data of the round), or is
  refused; 'sequential' one after another on the same executables; 'auto'
  is sequential on CPU (vmapping two seeds saved 6% there:
  benchmarks/results/track_seeds.md) and vmapped elsewhere where the stacked
  states fit. Either way each seed resumes from its workdir. The submission
  records which (`timing.seeds`): `verify` re-runs it alike.
  """
  import jax   # pylint: disable=g-import-not-at-top
  if seeds not in SEED_MODES:
    raise TrackError(f'--seeds must be one of {SEED_MODES}, got {seeds!r}')
  track = tracks_lib.get(track_id)
  track.check_platform(jax.devices()[0].platform)
  config = track_config(track, overrides)
  t0 = time.perf_counter()
  base = os.path.join(output_dir, 'runs', f'{track.id}-v{track.version}', method['name'])
  if seeds == 'auto' and jax.devices()[0].platform == 'cpu':
    seeds = 'sequential'
  workdirs, mode = _seed_runs(config, track.seeds, base, seeds, progress)
  curves, finals, compile_s = {}, {}, 0.0
  for seed, workdir in workdirs.items():
    rows = _rows(workdir)
    curves[seed] = curve_rows(rows)
    finals[seed] = final_metrics(rows, _read_summary(workdir))
    compile_s += sum(r.get('time/compile_s') or 0.0 for r in rows)
  doc = submission.build(
      track_id=track.id, track_version=track.version, frozen=track.frozen,
      config=config.to_dict(), seeds=track.seeds, curves=curves, finals=finals,
      method=method, hardware=provenance.hardware(), versions=provenance.versions(),
      wall_s=time.perf_counter() - t0, compile_s=compile_s or None, seed_mode=mode)
  path = os.path.join(output_dir, f'{track.id}-v{track.version}__{method["name"]}.json')
  return submission.write(doc, path)


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


def rerun(doc: Mapping, seed: int, rounds: int, workdir: Optional[str] = None) -> dict:
  """{seed: rows}: the first `rounds` rounds of `seed` from the recorded config.

  Where the submission's seeds ran vmapped, every seed again in one program
  (the same executable, so the same bits).
  """
  from fedxr_jax.training import loop   # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(doc['config'])
  config = _retuple(config, tracks_lib.base_config(doc['track']['id']))
  config.seed = seed
  config.plot = False
  # The recorded run stopped after `rounds` (num_rounds=rounds would recalibrate DP noise).
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(workdir or tmp, 'rerun')
    if doc['timing'].get('seeds') == 'vmapped':
      configs = []
      for s in doc['seeds']:
        lane = copy.deepcopy(config)
        lane.seed = s
        configs.append(lane)
      results = loop.run_lanes(configs, [os.path.join(out, f'seed{s}') for s in doc['seeds']],
                               stop_after=rounds, vmap=True)
      return {s: curve_rows(r.rows) for s, r in zip(doc['seeds'], results)}
    return {seed: curve_rows(loop.run(config, out, progress=False, stop_after=rounds))}


def _retuple(config, like):
  """JSON turned the config's tuples into lists: give them back their types."""
  flat, want = common.flatten(config.to_dict()), common.flatten(like.to_dict())
  fixed = {k: tuple(v) for k, v in flat.items()
           if isinstance(v, list) and isinstance(want.get(k), tuple)}
  return apply(config, fixed)


def verify(path: str, rounds: int, *, record: bool = True) -> verification.Comparison:
  """Re-runs `rounds` rounds of the first seed; compares; writes the sidecar record."""
  from fedxr_jax.bench import validate   # pylint: disable=g-import-not-at-top
  checked = validate.validate_file(path, tracks_lib.all_tracks())
  doc = checked.doc
  logged = max(row['round'] for row in doc['runs'][0]['curve'])
  if not 1 <= rounds <= logged:
    raise SubmissionError(f'--rounds={rounds} must be in [1, {logged}] (the logged rounds)')
  seed = doc['seeds'][0]
  same = _same_platform(doc)
  rtol = 0.0 if same else CROSS_PLATFORM_RTOL
  comparison = verification.compare(doc, rerun(doc, seed, rounds), atol=0.0, rtol=rtol)
  if record:
    verification.write_record(verification.build_record(
        doc, comparison, hardware=provenance.hardware(), versions=provenance.versions(),
        atol=0.0, rtol=rtol), path)
  return comparison


def _same_platform(doc: Mapping) -> bool:
  """Same device kind and the same versions of the code and its math libraries."""
  hw, ver = provenance.hardware(), provenance.versions()
  keys = ('jax', 'jaxlib', 'numpy')
  return (doc['hardware'].get('device_kind') == hw['device_kind']
          and doc['versions'].get('git_commit') == ver.get('git_commit')
          and all(doc['versions']['packages'].get(k) == ver['packages'].get(k) for k in keys))


def first_mismatch(comparison: verification.Comparison) -> Optional[str]:
  if comparison.passed:
    return None
  m = comparison.mismatches[0]
  rel = (abs(m['rerun'] - m['submitted']) / max(abs(m['submitted']), 1e-30)
         if isinstance(m['rerun'], (int, float)) and isinstance(m['submitted'], (int, float))
         else math.inf)
  return (f"seed {m['seed']} round {m['round']} {m['metric']}: submitted {m['submitted']!r}, "
          f"re-run {m['rerun']!r} (relative difference {rel:.3g})")
