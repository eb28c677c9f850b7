"""`fedxr-bench verify`: re-run what a submission ranks on, and record the outcome.

By default every round of every seed is re-run (the ranked number is the
mean of the seeds' final evaluations); `seeds=N` re-runs the first N of an
order drawn from the verifier's key (verification.seed_order: HMAC over the
content hash, keyed by $FEDXR_VERIFY_KEY or the date), so a submitter cannot
know which seeds will be checked; `rounds=K` re-runs rounds 1-K only, which
the leaderboard shows as "rounds 1-K reproduced", never as verified. The
model facts (parameter counts, FLOPs) are recomputed and compared too.

Tolerance: bit for bit (0) where the submission's recorded device kind,
git commit and jax / jaxlib / numpy versions equal the verifier's; else a
relative CROSS_RTOL, since float32 sums may be reassociated by another
compiler or device. Either way `describe` says which, and lists recorded
and current versions side by side.
"""
import dataclasses
from typing import Mapping, Optional

from fedxr_jax.bench import model_facts
from fedxr_jax.bench import provenance
from fedxr_jax.bench import run as run_lib
from fedxr_jax.bench import tracks as tracks_lib
from fedxr_jax.bench import validate
from fedxr_jax.bench import verification
from fedxr_jax.bench.errors import SubmissionError

CROSS_RTOL = 1e-3
SAME_KEYS = ('jax', 'jaxlib', 'numpy')


@dataclasses.dataclass(frozen=True)
class Outcome:
  comparison: verification.Comparison
  record: dict
  record_path: Optional[str]
  lines: tuple             # what verify says before its verdict


def software_line(hardware: Mapping, versions: Mapping) -> str:
  commit = (versions.get('git_commit') or '-')[:12]
  dirty = ' (dirty)' if versions.get('git_dirty') else ''
  packages = ' '.join(f'{k} {versions["packages"].get(k)}' for k in SAME_KEYS)
  return (f'fedxr_jax {versions["fedxr_jax"]} commit {commit}{dirty} {packages} on '
          f'{hardware["device_kind"]}')


def tolerance(doc: Mapping, hardware: Mapping, versions: Mapping) -> tuple:
  """(rtol, why): 0 on the recorded software and device kind, CROSS_RTOL otherwise."""
  differ = []
  if doc['hardware'].get('device_kind') != hardware['device_kind']:
    differ.append('device kind')
  if doc['versions'].get('git_commit') != versions.get('git_commit'):
    differ.append('git commit')
  differ += [k for k in SAME_KEYS
             if doc['versions']['packages'].get(k) != versions['packages'].get(k)]
  if not differ:
    return 0.0, 'bit for bit: the recorded device kind, commit and jax/jaxlib/numpy'
  verb = 'differs' if len(differ) == 1 else 'differ'
  return CROSS_RTOL, (f'relative {CROSS_RTOL:g}: the {", ".join(differ)} {verb} from the '
                      'recorded (float32 sums may be reassociated)')


def other_processor(doc: Mapping, hardware: Mapping) -> Optional[str]:
  """'recorded on A, this is B' where a cpu entry is re-run on another processor model
  (the device kind is 'cpu' for all of them); None otherwise."""
  recorded = doc['hardware']
  if 'cpu' not in (recorded.get('device_platform'), hardware['device_platform']):
    return None
  if recorded.get('cpu_model') == hardware.get('cpu_model'):
    return None
  return f'recorded on {recorded.get("cpu_model")}, this is {hardware.get("cpu_model")}'


def verify(path: str, *, verified_dir: Optional[str] = None, rounds: Optional[int] = None,
           seeds: Optional[int] = None, secret: Optional[str] = None,
           today: Optional[str] = None, any_processor: bool = False) -> Outcome:
  """Re-runs `path`'s seeds (all, or the first `seeds` of the key's order) for
  rounds 1..`rounds` (None: all); writes the record into `verified_dir`. On another
  processor model than the recorded one it refuses in one line unless `any_processor`."""
  checked = validate.validate_file(path, tracks_lib.all_tracks())
  doc, track = checked.doc, checked.track
  hardware, versions = provenance.hardware(), provenance.versions()
  other = other_processor(doc, hardware)
  if other and not any_processor:
    # Measured (BUILD_NOTES, issue 21): xr-default v3's FedAvg seed 0 re-run on an AMD EPYC
    # after an Intel Xeon differs in the 7th digit at round 3 and by 0.23% at round 9.
    raise SubmissionError(f'{path}: {other}: two processor models round float32 '
                          'differently and a run diverges over its rounds; verify on the '
                          'recorded model, or pass --any_processor to re-run anyway (the '
                          'record says so)')
  last = verification.final_round(doc)
  rounds = last if rounds is None else rounds
  if not 1 <= rounds <= last:
    raise SubmissionError(f'--rounds={rounds} must be in [1, {last}] (the logged rounds)')
  if seeds is not None and not 1 <= seeds <= len(doc['seeds']):
    raise SubmissionError(f'--seeds={seeds} must be in [1, {len(doc["seeds"])}]')
  key = verification.key(secret, today)
  order = verification.seed_order(doc['content_sha256'], doc['seeds'], key)
  chosen = order[:seeds or len(order)]
  rtol, why = tolerance(doc, hardware, versions)
  if other:
    why += f'; the processor differs ({other}): a long run diverges from the recorded'
  lines = (f'recorded: {software_line(doc["hardware"], doc["versions"])}',
           f'current:  {software_line(hardware, versions)}',
           f'tolerance: {why}',
           f'seeds {", ".join(map(str, chosen))} of {doc["seeds"]} (order from the '
           f'{key.kind} key {key.key_id}); rounds 1-{rounds} of {last}')
  rows = run_lib.rerun(doc, chosen, rounds)
  comparison = verification.compare(doc, rows, atol=0.0, rtol=rtol,
                                    primary=track.primary_metric)
  if doc['schema_version'] >= 2:
    facts = model_facts.facts(run_lib.rerun_config(doc))
    extra = verification.compare_facts(doc['model_facts'], facts, comparison.seeds[0],
                                       rtol=rtol)
    comparison = dataclasses.replace(
        comparison, mismatches=tuple(extra) + comparison.mismatches)
  record = verification.build_record(
      doc, comparison, hardware=hardware, versions=versions, rtol=rtol, tolerance=why,
      selection={'method': 'hmac-sha256', 'key_kind': key.kind, 'key_id': key.key_id,
                 'order': order})
  where = verification.write_record(record, verified_dir) if verified_dir else None
  return Outcome(comparison, record, where, lines)


def first_mismatch(comparison: verification.Comparison) -> Optional[str]:
  if comparison.passed:
    return None
  m = comparison.mismatches[0]
  numbers = all(isinstance(m[k], (int, float)) for k in ('rerun', 'submitted'))
  rel = ''
  if numbers:
    rel = abs(m['rerun'] - m['submitted']) / max(abs(m['submitted']), 1e-30)
    rel = f' (relative difference {rel:.3g})'
  return (f"seed {m['seed']} round {m['round']} {m['metric']}: submitted {m['submitted']!r}, "
          f"re-run {m['rerun']!r}{rel}")
