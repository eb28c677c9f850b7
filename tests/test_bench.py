"""fedxr-bench: a track's seeds into a submission that validates, and a verify that
re-runs the ranked number: the forged submission of issue 21 gets no badge."""
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from bench_helpers import board_rows
from fedxr_jax.bench import leaderboard
from fedxr_jax.bench import provenance
from fedxr_jax.bench import run as run_lib
from fedxr_jax.bench import submission
from fedxr_jax.bench import tracks
from fedxr_jax.bench import validate
from fedxr_jax.bench import verification
from fedxr_jax.bench import verify as verify_lib
from fedxr_jax.bench.errors import SubmissionError, TrackError
from fedxr_jax.bench.track import Between, OneOf, Track
from fedxr_jax.bench.tracks import common
from fedxr_jax.configs import test as test_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _base():
  config = test_config.get_config()
  config.num_rounds = 3
  config.eval_every = config.checkpoint_every = 3
  config.plot = False
  return config


OPEN = {'algorithm.name': OneOf(('fedavg', 'fedprox')),
        'algorithm.fedprox.mu': Between(0.0, 1.0)}
TINY = Track(id='tiny-test', version=1, description='configs/test.py, 3 rounds.',
             frozen=common.frozen_part(_base, OPEN), open=OPEN, seeds=(0, 1),
             primary_metric='eval/accuracy', cost_metrics=common.COSTS, target=0.0)


@pytest.fixture(scope='module')
def submitted(tmp_path_factory):
  out = tmp_path_factory.mktemp('subs')
  with tracks.registered(TINY, _base):
    path = run_lib.run_track('tiny-test', str(out), {'algorithm.name': 'fedprox',
                                                     'algorithm.fedprox.mu': 0.01},
                             method={'name': 'fedprox'}, seeds='vmapped')
    yield path


def test_run_writes_a_submission_that_validates(submitted, tmp_path):
  with tracks.registered(TINY, _base):
    checked = validate.validate_file(submitted, tracks.all_tracks())
  doc = checked.doc
  assert doc['seeds'] == [0, 1] and checked.method == 'fedprox'
  assert os.path.basename(submitted) == f'tiny-test-v1__fedprox__{doc["content_sha256"][:12]}.json'
  final = doc['runs'][0]['final']
  assert 0 <= final['eval/accuracy'] <= 1 and final['total/comm/uplink_bits'] > 0
  # The curve holds every round; machine-dependent keys stay out of it, the virtual
  # clock (the cost model's seconds: the run's, not the machine's) stays in.
  curve = doc['runs'][0]['curve']
  assert [r['round'] for r in curve] == [1, 2, 3]
  assert {k for r in curve for k in r if k.startswith('time/')} == {'time/virtual_s'}
  assert curve[2]['time/virtual_s'] == sum(r['cost/latency_s'] for r in curve)
  assert doc['config']['algorithm']['fedprox']['mu'] == 0.01
  # Both seeds compile one round: they trained in one program, and the file says so (verify
  # re-runs them alike).
  assert doc['timing']['seeds'] == 'vmapped'
  # Schema 2: the model's facts. Trainable = shared + personal trees; uploaded = shared.
  facts = doc['model_facts']
  roles = facts['roles']
  assert facts['params_total'] == sum(r['params'] for r in roles.values())
  assert facts['params_trainable'] == sum(r['params'] for r in roles.values()
                                          if r['mode'] != 'frozen')
  assert facts['upload_bytes_per_round'] == 4 * sum(r['params'] for r in roles.values()
                                                    if r['mode'] == 'shared')
  assert roles['base']['mode'] == 'frozen' and 0 < facts['params_trainable'] < facts['params_total']
  assert doc['pretrained'] == {'path': '', 'sha256': None} and doc['external_data'] is False


def test_a_second_write_of_the_same_entry_is_refused(submitted, tmp_path):
  doc = json.load(open(submitted))
  from fedxr_jax.bench import naming
  with pytest.raises(SubmissionError, match='exists already: it is this very entry'):
    naming.write_new(doc, os.path.dirname(submitted))
  assert naming.file_name(dict(doc, method={'name': 'a/b c'})).startswith('tiny-test-v1__a-b-c__')


def test_unknown_seed_modes_are_refused(tmp_path):
  with tracks.registered(TINY, _base):
    with pytest.raises(TrackError, match="--seeds must be one of"):
      run_lib.run_track('tiny-test', str(tmp_path), {}, method={'name': 'fedavg'},
                        seeds='parallel')


def _forge(path, out):
  """Issue 21's forgery: the final eval/accuracy raised to 0.96, curves made
  consistent, the summary and the content hash recomputed."""
  doc = json.load(open(path))
  for run in doc['runs']:
    run['final']['eval/accuracy'] = 0.96
    run['curve'][-1]['eval/accuracy'] = 0.96
  doc['summary'] = submission.summarize([r['final'] for r in doc['runs']])
  doc[submission.HASH_FIELD] = submission.content_hash(doc)
  return submission.write(doc, str(out))


@pytest.fixture(scope='module')
def verified(submitted, tmp_path_factory):
  """The genuine and the forged entry, each verified with default settings."""
  root = tmp_path_factory.mktemp('verified')
  forged = _forge(submitted, root / 'forged.json')
  with tracks.registered(TINY, _base):
    genuine = verify_lib.verify(submitted, verified_dir=str(root / 'records'))
    fake = verify_lib.verify(forged, verified_dir=str(root / 'records'))
  return root, forged, genuine, fake


def test_verify_on_another_processor_model_is_refused_in_one_line(submitted, monkeypatch):
  # The device kind is 'cpu' for every processor; their float32 results differ and a run
  # diverges (measured: Intel Xeon -> AMD EPYC, BUILD_NOTES). Refused before any re-run.
  recorded = json.load(open(submitted))['hardware']['cpu_model']
  real = provenance.hardware
  monkeypatch.setattr(provenance, 'hardware', lambda: {**real(), 'cpu_model': 'Other CPU'})
  with tracks.registered(TINY, _base):
    with pytest.raises(SubmissionError, match=f'recorded on {re.escape(recorded)}, this is '
                                              'Other CPU: .* pass --any_processor'):
      verify_lib.verify(submitted)
    # --any_processor re-runs (here one round of one seed) and the record says so.
    outcome = verify_lib.verify(submitted, rounds=1, seeds=1, any_processor=True)
  assert outcome.record['tolerance'].endswith(
      f'; the processor differs (recorded on {recorded}, this is Other CPU): a long run '
      'diverges from the recorded')
  assert verify_lib.other_processor({'hardware': {'device_platform': 'gpu'}},
                                    {'device_platform': 'gpu', 'cpu_model': 'x'}) is None


def test_verify_re_runs_the_final_evaluation_of_the_genuine_entry(submitted, verified):
  _, _, genuine, _ = verified
  record = genuine.record
  assert genuine.comparison.passed and record['result'] == 'pass'
  assert record['covers_final'] and record['rounds'] == [1, 2, 3] and record['seeds'] == [0, 1]
  assert 'eval/accuracy' in record['compared_metrics']
  assert record['submission_sha256'] == json.load(open(submitted))['content_sha256']
  assert record['selection']['key_kind'] == 'date'
  assert sorted(record['selection']['order']) == [0, 1]
  assert genuine.record_path.endswith(f'{record["submission_sha256"]}.json')
  recorded, current, _, seeds = genuine.lines
  assert recorded.startswith('recorded: fedxr_jax ') and current.startswith('current:  fedxr_jax ')
  assert seeds.startswith('seeds ') and seeds.endswith(' of [0, 1] (order from the date key '
                                                       f'{record["selection"]["key_id"]}); '
                                                       'rounds 1-3 of 3')
  assert genuine.lines[2] == ('tolerance: bit for bit: the recorded device kind, commit and '
                              'jax/jaxlib/numpy')


def test_the_forged_submission_validates_but_verify_rejects_it(verified):
  _, forged, _, fake = verified
  with tracks.registered(TINY, _base):
    validate.validate_file(forged, tracks.all_tracks())      # the forgery is well formed...
  assert not fake.comparison.passed and fake.record['result'] == 'fail'   # ...and caught
  problem = verify_lib.first_mismatch(fake.comparison)
  assert problem.startswith('seed ')
  assert ' round 3 eval/accuracy: submitted 0.96, re-run ' in problem


def test_the_forged_entry_gets_no_badge_and_is_unranked(submitted, verified, tmp_path):
  root, forged, _, _ = verified
  subs = tmp_path / 'subs'
  subs.mkdir()
  shutil.copy(submitted, subs / 'genuine.json')
  shutil.copy(forged, subs / 'forged.json')
  with tracks.registered(TINY, _base):
    board = leaderboard.build_site(str(subs), str(tmp_path / 'site'), [TINY],
                                   verified_dir=str(root / 'records'))
  [genuine] = board.entries[TINY.key]
  assert genuine.verification.state == 'verified' and genuine.rank == 1
  [fake] = board.unranked[TINY.key]
  assert fake.verification.state == 'failed' and fake.rank is None
  assert ' round 3 eval/accuracy: 0.96 submitted, ' in fake.verification.detail
  index = (tmp_path / 'site' / 'index.html').read_text()
  assert board_rows(index) == {'tiny-test v1': ['fedprox']} and index.count('badge verified') == 1


def _board(subs, records):
  with tracks.registered(TINY, _base):
    return leaderboard.collect(str(subs), [TINY], verified_dir=str(records))


def test_copied_other_hash_beside_and_partial_records_give_no_badge(submitted, verified,
                                                                      tmp_path):
  root, forged, genuine, _ = verified
  subs, records = tmp_path / 'subs', tmp_path / 'records'
  subs.mkdir()
  records.mkdir()
  shutil.copy(forged, subs / 'forged.json')
  forged_hash = json.load(open(forged))['content_sha256']
  # The genuine entry's passing record, copied under the forged entry's name: it is about
  # another content hash.
  shutil.copy(genuine.record_path, records / f'{forged_hash}.json')
  [entry] = _board(subs, records).entries[TINY.key]
  assert entry.verification.state == 'none'
  # A passing record for the forged hash, but beside the submission: never read.
  doc = json.load(open(forged))
  rows = {r['seed']: r['curve'] for r in doc['runs']}
  forged_record = verification.build_record(
      doc, verification.compare(doc, rows, primary='eval/accuracy'),
      hardware=provenance.hardware(), versions=provenance.versions(), tolerance='forged',
      selection=genuine.record['selection'])
  verification.write_record(forged_record, str(subs))
  shutil.copy(verification.record_path(str(subs), forged_hash), subs / 'forged.verified.json')
  board = _board(subs, records)
  assert [e.verification.state for e in board.entries[TINY.key]] == ['none']
  assert len(board.invalid) == 1    # the record file in subs is no submission
  # A partial record (rounds 1-2 of the genuine entry) shows what it is, never "verified".
  shutil.rmtree(records)
  shutil.copy(submitted, subs / 'genuine.json')
  gdoc = json.load(open(submitted))
  head = {r['seed']: r['curve'][:2] for r in gdoc['runs']}
  partial = verification.build_record(
      gdoc, verification.compare(gdoc, head, primary='eval/accuracy'),
      hardware=provenance.hardware(), versions=provenance.versions(), tolerance='bit for bit',
      selection=genuine.record['selection'])
  verification.write_record(partial, str(records))
  states = {e.submission.path.split('/')[-1]: (e.verification.state, e.verification.detail)
            for e in _board(subs, records).entries[TINY.key]}
  assert states['genuine.json'] == ('partial', 'rounds 1-2 reproduced')


def test_verify_states_the_software_and_its_tolerance():
  doc = {'hardware': {'device_kind': 'cpu'},
         'versions': {'git_commit': 'a' * 40, 'packages': {'jax': '0.10.2', 'jaxlib': '0.10.2',
                                                           'numpy': '2.4.6'}}}
  hw = {'device_kind': 'cpu'}
  same = {'git_commit': 'a' * 40, 'packages': {'jax': '0.10.2', 'jaxlib': '0.10.2',
                                               'numpy': '2.4.6'}}
  assert verify_lib.tolerance(doc, hw, same)[0] == 0.0
  edited = dict(same, packages=dict(same['packages'], jax='0.4.1'))
  assert verify_lib.tolerance(doc, hw, edited) == (
      1e-3, 'relative 0.001: the jax differs from the recorded (float32 sums may be '
      'reassociated)')
  line = verify_lib.software_line({'device_kind': 'cpu'}, dict(
      edited, fedxr_jax='0.1.0', git_dirty=True))
  assert line == ('fedxr_jax 0.1.0 commit aaaaaaaaaaaa (dirty) jax 0.4.1 jaxlib 0.10.2 numpy '
                  '2.4.6 on cpu')


@pytest.mark.parametrize('overrides, message', [
    ({'num_rounds': 5}, 'num_rounds is frozen at 3'),
    ({'algorithm.name': 'scaffold'}, "not one of {'fedavg', 'fedprox'}"),
    ({'algorithm.fedprox.mu': 2.0}, 'outside [0.0, 1.0]'),
    ({'seed': 3}, 'sets the seeds itself'),
])
def test_overrides_outside_the_open_part_are_refused(overrides, message):
  with tracks.registered(TINY, _base):
    with pytest.raises(TrackError, match=message.replace('[', r'\[').replace('{', r'\{')):
      run_lib.track_config(TINY, overrides)


def test_infrastructure_keys_are_free_and_unknown_keys_are_one_line():
  with tracks.registered(TINY, _base):
    assert run_lib.track_config(TINY, {'chunk_size': 4}).chunk_size == 4
    with pytest.raises(TrackError, match="unknown config key 'no.such'"):
      run_lib.apply(_base(), {'no.such': 1})


@pytest.mark.parametrize('args, message', [
    (['--track=gpu-scale'], 'gpu-scale v2 requires gpu or tpu; this ran on cpu'),
    (['--track=xr-default', '--version=1'],
     'xr-default v1 takes no new runs (archived: validated and ranked from the snapshot of '
     '01066a6; takes no new entries (run the v2 track)); run xr-default v4'),
])
def test_refused_runs_are_one_line(args, message, tmp_path):
  result = subprocess.run([sys.executable, '-m', 'fedxr_jax.cli.bench', 'run', *args,
                           f'--output_dir={tmp_path}'],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip() == f'fedxr-bench: error: {message}'
  assert not os.listdir(tmp_path)


def test_parse_overrides_reads_python_literals_and_bare_words():
  assert run_lib.parse_overrides(['--config.a.b=0.5', '--config.c=fedadam',
                                  '--config.d=(1, 2)']) == {'a.b': 0.5, 'c': 'fedadam',
                                                           'd': (1, 2)}


@pytest.mark.slow   # a full tiny track run; the validation it calls is default-tested
def test_an_entry_over_its_budget_is_written_and_said_in_one_line(tmp_path):
  from fedxr_jax.bench.track import Budget   # pylint: disable=g-import-not-at-top
  tight = dataclasses.replace(TINY, id='tiny-budget', budget=Budget(
      trainable_params=10**9, upload_bytes=10**12, flops_per_example=1e15, compute_s=1e-12))
  with tracks.registered(tight, _base):
    with pytest.raises(TrackError, match='would not be ranked: .*local compute'):
      run_lib.run_track('tiny-budget', str(tmp_path), {}, method={'name': 'fedavg'})
  assert [p for p in os.listdir(tmp_path) if p.endswith('.json')]   # the work is kept
