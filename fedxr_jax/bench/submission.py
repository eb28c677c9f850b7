"""A benchmark submission: one file per entry, built from run results.

Layout (schema version 2, bench/schema/submission.schema.json; version 1,
submission-1.schema.json, lacks the four fields marked 2 and is still read):
  format, schema_version        'fedxr_jax.submission', 2
  track                         {id, version}
  method                        {name, description?, command?, url?}
  created_utc                   'YYYY-MM-DDTHH:MM:SSZ'
  frozen, frozen_sha256         the track's frozen part (dotted key -> value)
                                and its hash (track.frozen_hash: with the budget)
  budget                   (2)  the track's per-device Budget, or null
  model_facts              (2)  parameter counts and FLOPs (bench/model_facts.py)
  pretrained               (2)  {path, sha256} of the starting checkpoint
  external_data            (2)  whether data beyond the track's own was used
  config                        the full run config (nested)
  seeds                         the seeds run, in order
  runs                          [{seed, curve: [{round, metric: number|null}],
                                  final: {metric: number|null}}] in seed order
  summary                       {metric: {mean, std, n}} over seeds (see summarize)
  hardware, versions            provenance.hardware() / provenance.versions()
  timing                        {wall_s, compile_s} of the whole submission run
  content_sha256                SHA-256 of the canonical JSON (canonical.py) of
                                everything above, i.e. the file without this field

A content hash detects edits and names the file a verification record is
about; it is not a signature (anyone can recompute it). Trust comes from
re-running: `fedxr-bench verify`.
"""
import datetime
import json
import math
from typing import Any, Mapping, Optional, Sequence

from fedxr_jax.bench import canonical
from fedxr_jax.bench import files
from fedxr_jax.bench import schemas
from fedxr_jax.bench import track as track_lib
from fedxr_jax.bench.errors import SubmissionError

FORMAT = 'fedxr_jax.submission'
SCHEMA_VERSION = 2
READS = (1, 2)              # schema versions validate.py accepts
HASH_FIELD = 'content_sha256'


def summarize(finals: Sequence[Mapping[str, Any]]) -> dict:
  """{metric: {mean, std, n}} over runs, skipping nulls.

  mean = fsum / n; std is the unbiased (n - 1) sample std, as OGB reports,
  and null when n < 2; both null when n = 0.
  """
  keys = sorted({k for f in finals for k in f})
  out = {}
  for k in keys:
    values = [f[k] for f in finals if f.get(k) is not None]
    n = len(values)
    mean = math.fsum(values) / n if n else None
    # (v - mean) * (v - mean), not ** 2: it overflows to inf instead of raising.
    std = (math.sqrt(math.fsum((v - mean) * (v - mean) for v in values) / (n - 1))
           if n >= 2 else None)
    out[k] = {'mean': mean, 'std': std, 'n': n}
  return out


def content_hash(doc: Mapping[str, Any]) -> str:
  return canonical.sha256({k: v for k, v in doc.items() if k != HASH_FIELD})


def check_runs(seeds: Sequence[int], runs: Sequence[Mapping[str, Any]]) -> None:
  """Runs match the seeds, curves rise in round and end at the final metrics."""
  run_seeds = [r['seed'] for r in runs]
  if list(seeds) != run_seeds:
    missing = sorted(set(seeds) - set(run_seeds))
    extra = sorted(set(run_seeds) - set(seeds))
    detail = (f'no run for seed {missing[0]}' if missing else
              f'a run for seed {extra[0]}, which seeds does not list' if extra else
              'runs out of seed order or repeated')
    raise SubmissionError(f'runs do not match seeds {list(seeds)}: {detail}')
  keys = set(runs[0]['final'])
  for run in runs:
    seed, curve, final = run['seed'], run['curve'], run['final']
    if set(final) != keys:
      odd = sorted(set(final) ^ keys)[0]
      raise SubmissionError(f'seed {seed}: final metrics differ in keys from seed '
                            f'{runs[0]["seed"]}\'s (e.g. {odd!r})')
    rounds = [row['round'] for row in curve]
    for a, b in zip(rounds, rounds[1:]):
      if b <= a:
        raise SubmissionError(f'seed {seed}: curve rounds must increase, got {a} then {b}')
    last = curve[-1]
    for k in sorted(set(last) & set(final) - {'round'}):
      if not canonical.equal(last[k], final[k]):
        raise SubmissionError(f'seed {seed}: final {k!r} is {final[k]!r} but the curve '
                              f'ends (round {last["round"]}) at {last[k]!r}')


def _now_utc() -> str:
  return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def build(*, track_id: str, track_version: int, frozen: Mapping[str, Any],
          config: Mapping[str, Any], seeds: Sequence[int],
          curves: Mapping[int, Sequence[Mapping[str, Any]]],
          finals: Mapping[int, Mapping[str, Any]], method: Mapping[str, str],
          hardware: Mapping[str, Any], versions: Mapping[str, Any], wall_s: float,
          compile_s: Optional[float], model_facts: Mapping[str, Any],
          budget: Optional[Mapping[str, Any]] = None,
          pretrained: Optional[Mapping[str, Any]] = None, external_data: bool = False,
          seed_mode: str = 'sequential', created_utc: Optional[str] = None) -> dict:
  """The submission dict of one finished benchmark run (checked against the schema).

  curves[seed]: the logged rows ({'round': r, metric: value}); finals[seed]:
  the final (Table 6) metrics; non-finite metric values become null. frozen,
  budget: the track's frozen part and Budget.to_json() (None: it has none);
  config: the full config as plain dicts (ConfigDict.to_dict()); hardware /
  versions: provenance.hardware() and provenance.versions() of the run;
  model_facts: bench.model_facts.facts(config); pretrained:
  model_facts.checkpoint(config.model.pretrained) (None: a random base).
  seed_mode: how the seeds ran, 'sequential' or 'vmapped' (one compiled
  program); `verify` re-runs them alike.
  """
  seeds = [int(s) for s in seeds]
  for name, per_seed in (('curves', curves), ('finals', finals)):
    if sorted(per_seed) != sorted(seeds):
      raise SubmissionError(f'{name} has seeds {sorted(per_seed)}, want {sorted(seeds)}')
  runs = [{'seed': s,
           'curve': canonical.to_json(list(curves[s]), f'curves[{s}]', nonfinite_to_null=True),
           'final': canonical.to_json(dict(finals[s]), f'finals[{s}]', nonfinite_to_null=True)}
          for s in seeds]
  frozen = canonical.to_json(dict(frozen), 'frozen')
  budget = None if budget is None else canonical.to_json(dict(budget), 'budget')
  doc = {
      'format': FORMAT,
      'schema_version': SCHEMA_VERSION,
      'track': {'id': track_id, 'version': track_version},
      'method': canonical.to_json(dict(method), 'method'),
      'created_utc': created_utc or _now_utc(),
      'frozen': frozen,
      'frozen_sha256': track_lib.frozen_hash(frozen, budget),
      'budget': budget,
      'model_facts': canonical.to_json(dict(model_facts), 'model_facts'),
      'pretrained': canonical.to_json(dict(pretrained or {'path': '', 'sha256': None}),
                                      'pretrained'),
      'external_data': bool(external_data),
      'config': canonical.to_json(dict(config), 'config'),
      'seeds': seeds,
      'runs': runs,
      'summary': summarize([r['final'] for r in runs]),
      'hardware': canonical.to_json(dict(hardware), 'hardware'),
      'versions': canonical.to_json(dict(versions), 'versions'),
      'timing': {'wall_s': float(wall_s),
                 'compile_s': None if compile_s is None else float(compile_s),
                 'seeds': seed_mode},
  }
  doc[HASH_FIELD] = content_hash(doc)
  schemas.check(doc, 'submission', SCHEMA_VERSION)
  check_runs(seeds, runs)
  return doc


def results_sha256(doc: Mapping[str, Any]) -> str:
  """The hash of what an entry computed: its track, config, seeds and runs.

  Two files with equal results are one entry, whatever their names, dates,
  timings or hardware records (the leaderboard keeps the earliest).
  """
  return canonical.sha256({k: doc[k] for k in ('track', 'config', 'seeds', 'runs')})


def dumps(doc: Mapping[str, Any]) -> str:
  """The file text: sorted keys, indented for people (hashes depend on the
  parsed values, not the layout). < > & are written as \\u escapes (they can
  only occur inside strings), so a file served as HTML by mistake stays inert."""
  text = json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False)
  return text.replace('<', '\\u003c').replace('>', '\\u003e').replace('&', '\\u0026') + '\n'


def write(doc: Mapping[str, Any], path: str) -> str:
  return files.atomic_write(path, dumps(doc))
