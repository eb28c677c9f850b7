"""Submissions: canonical hashes, the builder, and a validator that refuses
every tampered or hostile file in one line and never executes anything."""
import base64
import hashlib
import io
import json
import math
import os
import pickle
import sys

import pytest

from bench_helpers import (ACCURACY, BUDGETED, FACTS, GPU, HARDWARE, TRACKS, VERSIONS,
                           accuracy_doc, make_doc, tampered, write_raw)
from fedxr_jax.bench import canonical
from fedxr_jax.bench import files
from fedxr_jax.bench import provenance
from fedxr_jax.bench import schemas
from fedxr_jax.bench import submission
from fedxr_jax.bench import validate
from fedxr_jax.bench import verification
from fedxr_jax.bench.errors import SubmissionError, TrackError
from fedxr_jax.bench.track import Between, OneOf, Track
from fedxr_jax.errors import ConfigError, FedXRError


def _refused(path, tracks=TRACKS) -> str:
  with pytest.raises(FedXRError) as info:
    validate.validate_file(str(path), tracks)
  message = str(info.value)
  assert '\n' not in message and len(message) < 400, message
  return message


# ---------------------------------------------------------------- canonical JSON


def test_canonical_bytes_and_hash_known_answer():
  value = {'b': 1, 'a': [1.0, 'é', None, True, (2, 3)], 'c': 0.1}
  text = b'{"a":[1.0,"\\u00e9",null,true,[2,3]],"b":1,"c":0.1}'
  assert canonical.canonical(value) == text
  assert canonical.sha256(value) == hashlib.sha256(text).hexdigest()
  assert canonical.equal((1, 2), [1, 2]) and not canonical.equal(1, 1.0)
  with pytest.raises(SubmissionError, match='canonical JSON'):
    canonical.canonical({'x': math.nan})


def test_to_json_converts_numpy_and_nulls_nonfinite_metrics():
  np = pytest.importorskip('numpy')
  out = canonical.to_json({'a': np.float32(0.5), 'b': np.arange(2), 'c': (np.int64(3),),
                           'd': float('nan')}, nonfinite_to_null=True)
  assert out == {'a': 0.5, 'b': [0, 1], 'c': [3], 'd': None}
  with pytest.raises(SubmissionError, match=r'x\.d is nan'):
    canonical.to_json({'d': float('nan')}, 'x')
  with pytest.raises(SubmissionError, match='not a JSON value'):
    canonical.to_json({'s': {1, 2}})


def test_summarize_known_answer():
  s = submission.summarize([{'acc': 0.8, 'e': None, 'z': None}, {'acc': 0.9, 'e': 2.0, 'z': None},
                            {'acc': 1.0, 'e': None, 'z': None}])
  assert s['acc']['mean'] == pytest.approx(0.9) and s['acc']['n'] == 3
  assert s['acc']['std'] == pytest.approx(0.1)      # unbiased: sqrt(0.02 / 2)
  assert s['e'] == {'mean': 2.0, 'std': None, 'n': 1}
  assert s['z'] == {'mean': None, 'std': None, 'n': 0}


def test_schemas_are_valid_draft_2020_12():
  import jsonschema
  for name in schemas.NAMES:
    jsonschema.Draft202012Validator.check_schema(schemas.load(name))


# ---------------------------------------------------------------- builder


def test_round_trip_build_write_validate(tmp_path):
  doc = accuracy_doc('fedavg baseline', [0.8, 0.82, 0.84], energy=3.0)
  path = submission.write(doc, str(tmp_path / 'a.json'))
  assert os.listdir(tmp_path) == ['a.json']          # the temp file was renamed
  s = validate.validate_file(path, TRACKS)
  assert s.doc == doc and s.track is ACCURACY and s.method == 'fedavg baseline'
  assert s.content_sha256 == submission.content_hash(json.load(open(path)))
  assert s.doc['frozen_sha256'] == ACCURACY.frozen_sha256
  assert s.stat('eval/accuracy')['mean'] == pytest.approx(0.82)
  assert s.stat('eval/accuracy')['std'] == pytest.approx(0.02)
  assert [r['seed'] for r in s.doc['runs']] == [0, 1, 2]


def test_builder_refuses_a_curve_that_does_not_end_at_the_final_metrics():
  with pytest.raises(SubmissionError, match="seed 0: final 'eval/accuracy' is 0.9"):
    submission.build(
        track_id='xr-accuracy', track_version=1, frozen=ACCURACY.frozen, config={},
        seeds=[0], curves={0: [{'round': 3, 'eval/accuracy': 0.5}]},
        finals={0: {'eval/accuracy': 0.9}}, method={'name': 'm'}, hardware=HARDWARE,
        versions=VERSIONS, wall_s=1.0, compile_s=None, model_facts=FACTS)
  with pytest.raises(SubmissionError, match=r'curves has seeds \[0\], want \[0, 1\]'):
    submission.build(
        track_id='xr-accuracy', track_version=1, frozen={}, config={}, seeds=[0, 1],
        curves={0: []}, finals={0: {}, 1: {}}, method={'name': 'm'}, hardware=HARDWARE,
        versions=VERSIONS, wall_s=1.0, compile_s=None, model_facts=FACTS)


def test_provenance_records_fit_the_schema():
  hardware, versions = provenance.hardware(), provenance.versions()
  assert hardware['device_count'] >= 1 and hardware['device_platform'] == 'cpu'
  assert versions['packages']['jax'] and versions['python']
  assert (versions['git_commit'] is None) == (versions['git_dirty'] is None)
  doc = accuracy_doc('here', [0.5, 0.5, 0.5], hardware=hardware)
  doc = tampered(doc, lambda d: d.update(versions=versions), rehash=True)
  schemas.check(doc, 'submission')


# ---------------------------------------------------------------- tampering


def _set_final(d):
  d['runs'][1]['final']['eval/accuracy'] = 0.99


def _set_final_and_curve(d):
  _set_final(d)
  d['runs'][1]['curve'][-1]['eval/accuracy'] = 0.99


def _set_final_curve_summary(d):
  _set_final_and_curve(d)
  d['summary'] = submission.summarize([r['final'] for r in d['runs']])


def _drop_seed(d):
  d['seeds'].remove(2)
  d['runs'].pop()
  d['summary'] = submission.summarize([r['final'] for r in d['runs']])


TAMPERS = [
    ('frozen key', lambda d: d['frozen'].update({'model.m3t.width': 64}),
     "frozen key 'model.m3t.width' is 64; xr-accuracy v1 freezes it at 32"),
    ('frozen key dropped', lambda d: d['frozen'].pop('num_rounds'),
     "frozen key 'num_rounds' is missing"),
    ('config beside frozen', lambda d: d['config']['model']['m3t'].update(width=64),
     'config model.m3t.width is 64; xr-accuracy v1 freezes it at 32'),
    ('open key out of limits', lambda d: d['config']['algorithm'].update(name='scaffold'),
     "algorithm.name is 'scaffold', not one of {'fedavg', 'fedprox'}"),
    ('final metric', _set_final,
     "seed 1: final 'eval/accuracy' is 0.99 but the curve ends (round 4) at 0.82"),
    ('final and curve', _set_final_and_curve, "summary 'eval/accuracy' mean is"),
    ('final, curve and summary', _set_final_curve_summary, 'content_sha256 does not match'),
    ('missing seed', _drop_seed, 'missing seed 2 (xr-accuracy v1 runs seeds [0, 1, 2])'),
    ('extra seed', lambda d: (d['seeds'].append(7), d['runs'].append(dict(d['runs'][0], seed=7))),
     'seed 7 is not a seed of xr-accuracy v1'),
    ('content hash', lambda d: d.update(content_sha256='0' * 64),
     'content_sha256 does not match'),
    ('unknown track', lambda d: d['track'].update(version=9), 'unknown track xr-accuracy v9'),
    ('schema version', lambda d: d.update(schema_version=3),
     'schema version 3 is not supported (this fedxr_jax reads 1, 2)'),
    ('schema 2 field in a schema 1 file', lambda d: d.update(schema_version=1),
     "schema: at $: Additional properties are not allowed"),
    ('not a submission', lambda d: d.update(format='other'), 'not a fedxr_jax submission'),
    ('schema', lambda d: d['runs'][0]['final'].update({'eval/accuracy': '0.8'}),
     "schema: at $.runs[0].final['eval/accuracy']: '0.8' is not of type"),
    ('extra field', lambda d: d.update(extra=1), "schema: at $: Additional properties"),
    ('too many rounds', lambda d: d['runs'][0].update(curve=[{'round': i} for i in range(10001)]),
     "schema: at $.runs[0].curve: [{'round': 0}, {'round': 1}, {'round': 2}, {'round': 3}, "
     "{'r... is too long"),
    ('too many metrics', lambda d: d['runs'][0]['final'].update({f'm{i}': 0 for i in range(300)}),
     '... has too many properties'),
    ('huge open value', lambda d: d['config'].update(local_steps=10**400),
     'xr-accuracy v1: local_steps is 1' + '0' * 79 + '..., outside integer [1, 16]'),
    ('huge metric', lambda d: d['runs'][0]['final'].update({'eval/accuracy': 10**400}),
     "schema: at $.runs[0].final['eval/accuracy']: 1000"),
    ('long method name', lambda d: d['method'].update(name='x' * 201),
     "schema: at $.method.name: '" + 'x' * 59 + '... is too long'),
]


@pytest.mark.parametrize('name, edit, message', TAMPERS, ids=[t[0] for t in TAMPERS])
def test_each_tamper_is_refused_in_one_line_naming_it(name, edit, message, tmp_path):
  doc = accuracy_doc('m', [0.8, 0.82, 0.84])
  path = write_raw(tmp_path / 'x.json', tampered(doc, edit))
  assert message in _refused(path), name


def test_the_track_platform_is_enforced(tmp_path):
  doc = make_doc(GPU, 'on cpu', {0: {'eval/accuracy': 0.5}})
  assert 'xr-gpu v1 requires gpu; this ran on cpu' in _refused(
      write_raw(tmp_path / 'g.json', doc))
  gpu = dict(HARDWARE, device_platform='gpu', device_kind='NVIDIA H200')
  doc = make_doc(GPU, 'on gpu', {0: {'eval/accuracy': 0.5}}, hardware=gpu)
  assert validate.validate_file(write_raw(tmp_path / 'h.json', doc), TRACKS).track is GPU


# ---------------------------------------------------------------- hostile files


def test_a_100mb_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
  path = tmp_path / 'big.json'
  with open(path, 'wb') as f:
    f.truncate(100 * 2**20)                      # sparse: no 100 MB written
  def never(*args, **kwargs):
    raise AssertionError('the file was opened')
  monkeypatch.setattr(files, 'open', never, raising=False)
  assert _refused(path) == '100.0 MiB, over the 20.0 MiB limit (not read)'


HOSTILE = [
    (b'\x89PNG\r\n\x1a\n\x00\x00\xff\xfe', 'not UTF-8 text (binary data at byte 0)'),
    (b'hello', 'not JSON: Expecting value at line 1 column 1'),
    (b'{"a": 1', 'not JSON:'),
    (b'{"a": NaN}', 'not strict JSON: NaN is not a JSON number'),
    (b'{"a": -Infinity}', 'not strict JSON: -Infinity is not a JSON number'),
    (b'{"a": 1e999}', 'not strict JSON: the number 1e999 overflows a double'),
    (b'{"a": 1, "a": 2}', "key 'a' appears twice"),
    (b'[' * 100000 + b']' * 100000, 'nested deeper than 32 levels'),
    (b'[' * 40 + b']' * 40, 'nested deeper than 32 levels'),
    (b'{"a": "' + b'x' * 5000 + b'"}', "a string of 5000 characters at $['a'] (limit 4096)"),
    (b'{"a\\nb": ' + b'[' * 40 + b']' * 40 + b'}', "nested deeper than 32 levels at $['a\\nb'][0][0]"),
    (b'[1, 2]', 'the top level is a JSON list, not an object'),
    (b'', 'not JSON: Expecting value'),
]


@pytest.mark.parametrize('data, message', HOSTILE, ids=[
    'binary', 'text', 'truncated', 'nan', 'infinity', 'overflow', 'duplicate key', 'deep (C)',
    'deep', 'long string', 'odd key', 'list', 'empty'])
def test_non_json_and_non_strict_json_is_one_line(data, message, tmp_path):
  path = tmp_path / 'bad.json'
  path.write_bytes(data)
  assert message in _refused(path)


def test_a_nan_token_inside_a_real_submission(tmp_path):
  text = submission.dumps(accuracy_doc('m', [0.8, 0.82, 0.84]))
  text = text.replace('"eval/accuracy": 0.82', '"eval/accuracy": NaN', 1)
  path = tmp_path / 'nan.json'
  path.write_text(text)
  assert 'NaN is not a JSON number' in _refused(path)


def test_special_files_do_not_hang(tmp_path):
  fifo = tmp_path / 'fifo.json'
  os.mkfifo(fifo)
  assert _refused(fifo) == 'not a regular file'
  assert _refused(tmp_path) == 'not a regular file'
  assert _refused(tmp_path / 'absent.json') == 'no such file'


class _Payload:
  """Unpickling this creates `marker` (builtins.open(marker, 'w'))."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (open, (self.marker, 'w'))


def test_pickles_inside_strings_are_only_strings(tmp_path):
  live = tmp_path / 'proof'
  pickle.loads(pickle.dumps(_Payload(str(live))))   # the payload is live...
  assert live.exists()
  marker = tmp_path / 'marker'
  blob = pickle.dumps(_Payload(str(marker)))
  as_b64 = base64.b64encode(blob).decode()
  as_text = pickle.dumps(_Payload(str(marker)), protocol=0).decode('latin-1')

  # In a free-text field it is data: the file validates and keeps the string.
  doc = accuracy_doc('pickled', [0.8, 0.82, 0.84], description=as_b64, command=as_text)
  s = validate.validate_file(submission.write(doc, str(tmp_path / 'p.json')), TRACKS)
  assert s.doc['method']['description'] == as_b64
  assert s.doc['method']['command'] == as_text
  # Where a number belongs it fails on the schema.
  bad = tampered(doc, lambda d: d['runs'][0]['final'].update({'eval/accuracy': as_b64}))
  assert 'is not of type' in _refused(write_raw(tmp_path / 'q.json', bad))
  # A raw pickle file is not JSON.
  raw = tmp_path / 'r.json'
  raw.write_bytes(blob)
  assert 'not UTF-8' in _refused(raw) or 'not JSON' in _refused(raw)
  assert not marker.exists()                        # ...and was never unpickled


# ---------------------------------------------------------------- tracks


def test_track_open_part_limits():
  ACCURACY.check_overrides({'algorithm.name': 'fedprox', 'local_steps': 8,
                            'client_optimizer.learning_rate': 0.5, 'model.m3t.width': 32})
  for key, value, message in [
      ('model.m3t.width', 64, 'model.m3t.width is frozen at 32; 64 would leave the track'),
      ('batch_size', 8, 'batch_size is not an open key (open: algorithm.name, '),
      ('client_optimizer.learning_rate', 2.0, 'is 2.0, outside [0.0001, 1.0]'),
      ('local_steps', 2.5, 'local_steps is 2.5, not an integer'),
      ('local_steps', True, 'local_steps is True, not an integer'),
      ('algorithm.name', 'scaffold', "is 'scaffold', not one of {'fedavg', 'fedprox'}")]:
    with pytest.raises(TrackError) as info:
      ACCURACY.check_override(key, value)
    assert str(info.value).startswith('xr-accuracy v1: ') and message in str(info.value)
  assert isinstance(info.value, ConfigError)
  assert OneOf(((1, 2),)).problem([1, 2]) is None


@pytest.mark.parametrize('fields, message', [
    (dict(id='Bad Id'), 'an id is 1-64 of a-z 0-9 _ -'),
    (dict(version=0), 'version must be an integer >= 1'),
    (dict(seeds=(0, 0)), 'seeds must be distinct integers'),
    (dict(open={'a': Between(0, 1)}, frozen={'a': 1}), "['a'] are both frozen and open"),
    (dict(open={'a': [1, 2]}), "open key 'a' needs OneOf(...) or Between(...)"),
    (dict(cost_metrics=('acc',)), 'the primary metric is also a cost metric'),
    (dict(frozen={'a': {1, 2}}), 'frozen values must be JSON: frozen.a is a set'),
    (dict(version=2, seeds=(0, 1)), 'from version 2 on a track runs >= 3 seeds, got [0, 1]'),
    (dict(tier='tpu'), "tier must be one of ('cpu', 'gpu')"),
    (dict(tier='gpu', requires=('cpu',)), "a gpu-tier track requires an accelerator"),
    (dict(status='beta'), "status must be one of ('published', 'provisional', 'archived')"),
])
def test_ill_defined_tracks_are_one_line(fields, message):
  base = dict(id='t', version=1, description='', frozen={}, open={}, seeds=(0,),
              primary_metric='acc')
  with pytest.raises(TrackError) as info:
    Track(**{**base, **fields})
  assert message in str(info.value)


# ---------------------------------------------------------------- CLI body, verification


def test_validate_main_prints_one_line_per_file(tmp_path):
  good = submission.write(accuracy_doc('m', [0.8, 0.82, 0.84]), str(tmp_path / 'g.json'))
  bad = tmp_path / 'b.json'
  bad.write_text('{')
  out, err = io.StringIO(), io.StringIO()
  assert validate.main([good, str(bad)], TRACKS, out=out, err=err) == 2
  assert out.getvalue().startswith(f'{good}: ok (xr-accuracy v1, ')
  assert err.getvalue().splitlines() == [
      f'fedxr-bench: error: {bad}: not JSON: Expecting property name enclosed in double '
      'quotes at line 1 column 2']
  assert validate.main([good], TRACKS, out=out, err=err) == 0


def test_verification_compare_known_answer():
  doc = accuracy_doc('m', [0.8, 0.82, 0.84])
  same = {s: [{'round': 4, 'eval/accuracy': a}] for s, a in zip((0, 1), (0.8, 0.82))}
  result = verification.compare(doc, same, primary='eval/accuracy')
  assert result.passed and result.max_abs_diff == 0.0 and result.rounds == (4,)
  assert result.finals == (0, 1)                 # both compared at their final round
  off = verification.compare(doc, {1: [{'round': 2, 'eval/accuracy': 0.42}]}, atol=0.005,
                             primary='eval/accuracy')
  assert not off.passed and off.max_abs_diff == pytest.approx(0.01) and off.finals == ()
  assert off.mismatches == ({'seed': 1, 'round': 2, 'metric': 'eval/accuracy',
                             'submitted': 0.41, 'rerun': 0.42},)
  with pytest.raises(SubmissionError, match='round 3 has no|round 3 .*no|no .eval/accuracy.'):
    verification.compare(doc, {0: [{'round': 3, 'eval/accuracy': 0.1}]})
  with pytest.raises(SubmissionError, match='round 5 is not in the submitted curve'):
    verification.compare(doc, {0: [{'round': 5, 'eval/accuracy': 0.1}]})
  facts = dict(FACTS, params_trainable=901)
  assert verification.compare_facts(FACTS, facts, 0) == [
      {'seed': 0, 'round': 0, 'metric': 'model_facts/params_trainable', 'submitted': 900,
       'rerun': 901}]


def test_seed_order_depends_on_the_key_and_the_content():
  seeds = list(range(10))
  day = verification.key(today='2026-12-06')
  assert day.kind == 'date' and day.key_id == '2026-12-06'
  order = verification.seed_order('a' * 64, seeds, day)
  assert sorted(order) == seeds and order != seeds
  assert verification.seed_order('a' * 64, seeds, day) == order          # reproducible
  assert verification.seed_order('b' * 64, seeds, day) != order          # per submission
  assert verification.seed_order('a' * 64, seeds, verification.key('s3cret')) != order
  secret = verification.key('s3cret')
  assert secret.kind == 'secret' and 's3cret' not in secret.key_id and len(secret.key_id) == 16


def test_records_bind_the_content_hash_and_the_final_evaluation(tmp_path):
  doc = accuracy_doc('m', [0.8, 0.82, 0.84])
  rows = {s: [{'round': r, 'eval/accuracy': a * (0.5 if r < 4 else 1.0)} for r in (2, 4)]
          for s, a in zip((0, 1, 2), (0.8, 0.82, 0.84))}
  selection = {'method': 'hmac-sha256', 'key_kind': 'date', 'key_id': '2026-12-06',
               'order': [1, 0, 2]}
  make = lambda d, rerun: verification.build_record(
      d, verification.compare(d, rerun, primary='eval/accuracy'), hardware=HARDWARE,
      versions=VERSIONS, selection=selection, tolerance='bit for bit')
  full = make(doc, rows)
  assert full['covers_final'] and full['result'] == 'pass' and full['final_round'] == 4
  folder = tmp_path / 'verified'
  path = verification.write_record(full, str(folder))
  assert path == str(folder / f'{doc["content_sha256"]}.json')
  assert verification.read_record(path) == full
  by_hash, bad = verification.collect(str(folder))
  assert bad == [] and by_hash == {doc['content_sha256']: [full]}
  status = verification.status(by_hash[doc['content_sha256']], doc, 'eval/accuracy')
  assert status.state == 'verified' and status.detail.startswith('3 of 3 seeds re-run in full')
  # Rounds 1-2 only: partial, never verified.
  partial = make(doc, {s: [{'round': 2, 'eval/accuracy': r[0]['eval/accuracy']}]
                       for s, r in rows.items()})
  assert not partial['covers_final']
  assert verification.status([partial], doc, 'eval/accuracy') == ('partial',
                                                                  'round 2 reproduced', None)
  # A record about another content hash says nothing about this file.
  other = tampered(doc, lambda d: d['method'].update(name='other'), rehash=True)
  assert verification.status([make(other, rows)], doc, 'eval/accuracy').state == 'none'
  # A failing record wins: the entry is unranked, with its first difference.
  bad_rows = {**rows, 1: [{'round': 4, 'eval/accuracy': 0.5}]}
  failed = verification.status([full, make(doc, bad_rows)], doc, 'eval/accuracy')
  assert failed.state == 'failed' and failed.detail == (
      'seed 1 round 4 eval/accuracy: 0.82 submitted, 0.5 re-run')


def test_an_edited_record_is_unreadable(tmp_path):
  doc = accuracy_doc('m', [0.8, 0.82, 0.84])
  record = verification.build_record(
      doc, verification.compare(doc, {0: [{'round': 4, 'eval/accuracy': 0.8}]}),
      hardware=HARDWARE, versions=VERSIONS, tolerance='bit for bit',
      selection={'method': 'hmac-sha256', 'key_kind': 'date', 'key_id': 'd', 'order': [0]})
  path = verification.write_record(record, str(tmp_path))
  text = open(path).read().replace('"result": "pass"', '"result": "fail"')
  open(path, 'w').write(text)
  assert verification.collect(str(tmp_path)) == (
      {}, [(os.path.basename(path), 'content_sha256 does not match the record')])


# ---------------------------------------------------------------- schema 1, budgets


def _as_schema_1(doc):
  """The same entry as the landed v1 files hold it: no schema-2 fields."""
  def edit(d):
    for key in ('budget', 'model_facts', 'pretrained', 'external_data'):
      d.pop(key)
    d['schema_version'] = 1
  return tampered(doc, edit, rehash=True)


def test_schema_1_files_still_validate(tmp_path):
  old = _as_schema_1(accuracy_doc('m', [0.8, 0.82, 0.84]))
  s = validate.validate_file(write_raw(tmp_path / 'old.json', old), TRACKS)
  assert s.doc['schema_version'] == 1 and s.track is ACCURACY


def test_a_track_with_a_budget_takes_schema_2_only(tmp_path):
  doc = make_doc(BUDGETED, 'm', {s: {'eval/accuracy': 0.8} for s in BUDGETED.seeds})
  assert validate.validate_file(write_raw(tmp_path / 'b.json', doc), TRACKS).track is BUDGETED
  assert 'xr-budget v2 has a budget: it takes schema version 2' in _refused(
      write_raw(tmp_path / 'o.json', _as_schema_1(doc)))


@pytest.mark.parametrize('change, message', [
    (dict(facts=dict(FACTS, params_trainable=6000)),
     "over xr-budget v2's budget: 6000 trainable parameters over the budget of 1000"),
    (dict(facts=dict(FACTS, upload_bytes_per_round=4004)),
     '4004 upload bytes a round over the budget of 4000'),
    (dict(facts=dict(FACTS, flops_per_example=2e6)),
     '2e+06 FLOPs per example over the budget of 1e+06'),
    (dict(compute_s=0.75),
     '0.75 s of local compute in a round over the budget of 0.5 s (less local work fits: '
     'fewer steps, or less work per step)'),
])
def test_an_entry_over_the_budget_is_refused(change, message, tmp_path):
  doc = make_doc(BUDGETED, 'big', {s: {'eval/accuracy': 0.8} for s in BUDGETED.seeds},
                 **change)
  assert message in _refused(write_raw(tmp_path / 'x.json', doc))


def test_the_budget_and_its_hash_are_frozen(tmp_path):
  doc = make_doc(BUDGETED, 'm', {s: {'eval/accuracy': 0.8} for s in BUDGETED.seeds})
  looser = tampered(doc, lambda d: d['budget'].update(trainable_params=10**6), rehash=True)
  assert "budget is {" in _refused(write_raw(tmp_path / 'l.json', looser))
  # The hash covers the budget: the same frozen config with another budget differs.
  assert doc['frozen_sha256'] == BUDGETED.frozen_sha256 != canonical.sha256(BUDGETED.frozen_json)


def test_model_facts_count_known_answer():
  assert FACTS == {'params_total': 5900, 'params_trainable': 900,
                   'params_uploaded_per_round': 800, 'upload_bytes_per_round': 3200,
                   'flops_per_step': 2e6, 'flops_per_example': 5e5,
                   'roles': {'base': {'params': 5000, 'mode': 'frozen'},
                             'heads': {'params': 100, 'mode': 'personal'},
                             'lora': {'params': 800, 'mode': 'shared'}},
                   'personal_training': True}   # the personal heads


def test_directory_hash_known_answer(tmp_path):
  from fedxr_jax.bench import model_facts
  (tmp_path / 'ck' / 'params').mkdir(parents=True)
  (tmp_path / 'ck' / 'pretrained.json').write_bytes(b'{}')
  (tmp_path / 'ck' / 'params' / 'a').write_bytes(b'abc')
  sha = lambda b: hashlib.sha256(b).hexdigest()
  want = sha(b'params/a\0' + sha(b'abc').encode() + b'\n'
             + b'pretrained.json\0' + sha(b'{}').encode() + b'\n')
  assert model_facts.directory_sha256(str(tmp_path / 'ck')) == want
  assert model_facts.checkpoint('') == {'path': '', 'sha256': None}
  (tmp_path / 'ck' / 'params' / 'a').write_bytes(b'abd')
  assert model_facts.directory_sha256(str(tmp_path / 'ck')) != want


# ---------------------------------------------------------------- fedxr-bench hash


def _bench_cli(monkeypatch, capsys, *args):
  from fedxr_jax.cli import bench as cli
  monkeypatch.setattr(sys, 'argv', ['fedxr-bench', *args])
  with pytest.raises(SystemExit) as info:
    cli.entry()
  out = capsys.readouterr()
  return info.value.code, out.out, out.err


def test_hash_prints_and_checks_the_content_hash(tmp_path, monkeypatch, capsys):
  doc = accuracy_doc('m', [0.8, 0.82, 0.84])
  good = submission.write(doc, str(tmp_path / 'g.json'))
  code, out, err = _bench_cli(monkeypatch, capsys, 'hash', good)
  assert code == 0 and out == f'{doc["content_sha256"]}  {good} (content_sha256 holds)\n'
  edited = write_raw(tmp_path / 'e.json', tampered(doc, lambda d: d['method'].update(name='x')))
  code, out, err = _bench_cli(monkeypatch, capsys, 'hash', edited)
  want = submission.content_hash(json.load(open(edited)))
  assert code == 2 and err == (f'fedxr-bench: error: {edited}: content hash is {want}; the '
                               f"file records '{doc['content_sha256']}'\n")
  code, _, err = _bench_cli(monkeypatch, capsys, 'hash', str(tmp_path / 'none.json'))
  assert code == 2 and err.strip() == f'fedxr-bench: error: {tmp_path / "none.json"}: no such file'


def test_inlined_schemas_judge_documents_as_the_referencing_ones_do():
  import copy   # pylint: disable=g-import-not-at-top
  import glob   # pylint: disable=g-import-not-at-top
  import jsonschema   # pylint: disable=g-import-not-at-top
  from fedxr_jax.bench import schemas   # pylint: disable=g-import-not-at-top
  for name in schemas.NAMES:
    for version in schemas.VERSIONS:
      inlined = schemas.inline_local_refs(schemas.load(name, version))
      text = json.dumps({k: v for k, v in inlined.items() if k != '$defs'})
      assert '"$ref": "#/' not in text   # references to other schemas (urn:...) stay
  path = sorted(glob.glob(os.path.join(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))), 'leaderboard', 'submissions', '*-v2__fedavg__*.json')))[0]
  doc = json.load(open(path))
  for run in doc['runs']:   # two rows a run keep the document valid and the test quick
    run['curve'] = run['curve'][:2]
  bad = [copy.deepcopy(doc) for _ in range(4)]
  bad[0]['frozen_sha256'] = 'not-a-hash'                      # a $defs/sha256
  bad[1]['runs'][0]['curve'][0]['round'] = -1                 # inside a $defs/row
  bad[2]['runs'][0]['final']['eval/accuracy'] = 'high'        # a $defs/metric
  bad[3]['model_facts']['trainable_params'] = -5
  referencing = jsonschema.Draft202012Validator(schemas.load('submission'))
  inlined = jsonschema.Draft202012Validator(schemas.inline_local_refs(schemas.load('submission')))
  judged = lambda v, d: sorted((e.json_path, e.message) for e in v.iter_errors(d))
  assert judged(inlined, doc) == judged(referencing, doc) == []
  for d in bad:
    assert judged(inlined, d) and judged(inlined, d) == judged(referencing, d)
