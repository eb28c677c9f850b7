"""fedxr-bench: a track's seeds into a submission that validates and re-runs bit for bit."""
import json
import os
import subprocess
import sys

import pytest

from fedxr_jax.bench import run as run_lib
from fedxr_jax.bench import submission
from fedxr_jax.bench import tracks
from fedxr_jax.bench import validate
from fedxr_jax.bench.errors import SubmissionError, TrackError
from fedxr_jax.bench.track import Between, OneOf, Track
from fedxr_jax.bench.tracks import common
from fedxr_jax.configs import test as test_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _base():
  config = test_config.get_config()
  config.num_rounds = 3   # verify re-runs the first 2: a prefix
  config.eval_every = config.checkpoint_every = 3
  config.plot = False
  return config


OPEN = {'algorithm.name': OneOf(('fedavg', 'fedprox')),
        'algorithm.fedprox.mu': Between(0.0, 1.0)}
TINY = Track(id='tiny-test', version=1, description='configs/test.py, 3 rounds.',
             frozen=common.frozen_part(_base, OPEN), open=OPEN, seeds=(0, 1),
             primary_metric='eval/accuracy', cost_metrics=common.COSTS)


@pytest.fixture(scope='module')
def submitted(tmp_path_factory):
  out = tmp_path_factory.mktemp('subs')
  with tracks.registered(TINY, _base):
    path = run_lib.run_track('tiny-test', str(out), {'algorithm.name': 'fedprox',
                                                     'algorithm.fedprox.mu': 0.01},
                             method={'name': 'fedprox'}, seeds='vmapped')
    yield path


def test_run_writes_a_submission_that_validates(submitted):
  with tracks.registered(TINY, _base):
    checked = validate.validate_file(submitted, tracks.all_tracks())
  doc = checked.doc
  assert doc['seeds'] == [0, 1] and checked.method == 'fedprox'
  final = doc['runs'][0]['final']
  assert 0 <= final['eval/accuracy'] <= 1 and final['total/comm/uplink_bits'] > 0
  # The curve holds every round; machine-dependent keys stay out of it.
  assert [r['round'] for r in doc['runs'][0]['curve']] == [1, 2, 3]
  assert not any(k.startswith('time/') for r in doc['runs'][0]['curve'] for k in r)
  assert doc['config']['algorithm']['fedprox']['mu'] == 0.01
  # Both seeds compile one round: they trained in one program, and the file says so (verify
  # re-runs them alike).
  assert doc['timing']['seeds'] == 'vmapped'


def test_unknown_seed_modes_are_refused(tmp_path):
  with tracks.registered(TINY, _base):
    with pytest.raises(TrackError, match="--seeds must be one of"):
      run_lib.run_track('tiny-test', str(tmp_path), {}, method={'name': 'fedavg'},
                        seeds='parallel')


def test_verify_passes_on_the_submission_and_fails_on_an_edited_curve(submitted, tmp_path):
  with tracks.registered(TINY, _base):
    comparison = run_lib.verify(submitted, rounds=2, record=False)
    assert comparison.passed and comparison.rounds == (1, 2)
    doc = json.load(open(submitted))
    doc['runs'][0]['curve'][1]['train/loss'] += 1e-6
    doc['summary'] = submission.summarize([r['final'] for r in doc['runs']])
    doc[submission.HASH_FIELD] = submission.content_hash(doc)
    edited = submission.write(doc, str(tmp_path / 'edited.json'))
    failed = run_lib.verify(edited, rounds=2, record=False)
  assert not failed.passed
  assert run_lib.first_mismatch(failed).startswith('seed 0 round 2 train/loss')


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


def test_gpu_track_is_refused_on_cpu_in_one_line():
  result = subprocess.run([sys.executable, '-m', 'fedxr_jax.cli.bench', 'run',
                           '--track=gpu-scale', '--output_dir=/tmp/unused'],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip() == ('fedxr-bench: error: gpu-scale v1 requires gpu or tpu; '
                                   'this ran on cpu')


def test_parse_overrides_reads_python_literals_and_bare_words():
  assert run_lib.parse_overrides(['--config.a.b=0.5', '--config.c=fedadam',
                                  '--config.d=(1, 2)']) == {'a.b': 0.5, 'c': 'fedadam',
                                                           'd': (1, 2)}
