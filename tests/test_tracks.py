"""Tracks: v1 validates from its snapshot whatever today's config is; a v2 frozen
hash reads only the blocks a run uses, so registering a component changes none.

A published or archived track never changes: its frozen part is pinned by
hash. Changing a default a frozen part reads changes these hashes; the fix is
a new track version (bench/tracks/definitions.py), never a new pin.
"""
import copy
import dataclasses
import glob
import json
import os

import pytest

from fedxr_jax.bench import tracks
from fedxr_jax.bench import validate
from fedxr_jax.bench.errors import TrackError
from fedxr_jax.bench.track import OneOf
from fedxr_jax.bench.tracks import common
from fedxr_jax.bench.tracks import definitions
from fedxr_jax.bench.tracks import resolve
from fedxr_jax.bench.tracks import v1
from fedxr_jax.configs import blocks
from fedxr_jax.configs import default

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBMISSIONS = sorted(p for p in glob.glob(os.path.join(REPO, 'leaderboard', 'submissions',
                                                       '*.json'))
                     if not p.endswith('.verified.json'))

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
  unpinned = [t.name for t in tracks.all_tracks()
              if t.status in ('published', 'archived') and t.key not in PINNED]
  assert not unpinned, f'pin the frozen hash of {unpinned} here'


def test_a_changed_frozen_key_changes_the_hash():
  track = tracks.get('xr-default', 1)
  assert track.frozen['num_rounds'] == 20 and track.frozen['population_size'] == 500
  edited = dataclasses.replace(track, frozen={**track.frozen, 'num_rounds': 21})
  assert edited.frozen_sha256 != track.frozen_sha256 == PINNED[('xr-default', 1)]


# ---------------------------------------------------------------- v1 from its snapshot


def test_the_48_landed_v1_entries_validate_without_todays_config(monkeypatch):
  def no_config():
    raise AssertionError('validating a v1 entry read today\'s config')
  monkeypatch.setattr(default, 'get_config', no_config)
  landed = [p for p in SUBMISSIONS if '-v1__' in os.path.basename(p)]
  checked = [validate.validate_file(p, tracks.all_tracks()) for p in landed]
  assert len(checked) == 48 and {s.track.version for s in checked} == {1}
  assert {s.track.id for s in checked} == {t.id for t in v1.tracks()} - {'gpu-scale'}


def _v2_entries(every: bool) -> list:
  """The shipped v2 entries: all, or each track's FedAvg entry (every track's definition,
  in an eighth of the files: schema validation is what takes the time)."""
  entries = sorted(p for p in SUBMISSIONS if '-v2__' in os.path.basename(p))
  if every:
    return entries
  return [p for p in entries if os.path.basename(p).split('__')[1] == 'fedavg']


def test_the_shipped_v2_entries_validate_against_todays_definitions():
  # A change to a v2 definition that its entries no longer satisfy shows here (every
  # entry: the slow test below).
  checked = [validate.validate_file(p, tracks.all_tracks()) for p in _v2_entries(False)]
  assert checked and {s.track.version for s in checked} == {2}
  assert {s.track.id for s in checked} == {
      os.path.basename(p).split('-v2__')[0] for p in _v2_entries(True)}


@pytest.mark.slow
def test_every_shipped_v2_entry_validates_against_todays_definitions():
  checked = [validate.validate_file(p, tracks.all_tracks()) for p in _v2_entries(True)]
  assert len(checked) > 100 and {s.track.version for s in checked} == {2}


def test_an_edited_snapshot_is_refused():
  data = copy.deepcopy(v1._data())   # pylint: disable=protected-access
  data['tracks'][0]['frozen']['num_rounds'] = 21
  with pytest.raises(TrackError, match=r'tracks-v1.json: xr-default v1 no longer hashes'):
    v1.from_snapshot(data)


def test_v1_takes_no_new_runs_and_names_v2():
  with pytest.raises(TrackError) as info:
    tracks.runnable(tracks.get('xr-default', 1))
  assert str(info.value) == ('xr-default v1 takes no new runs (archived: validated and ranked '
                             'from the snapshot of 01066a6; takes no new entries (run the v2 '
                             'track)); run xr-default v4')
  assert tracks.get('xr-default').version == 4   # the newest
  assert tracks.get('hapt-30').version == 2      # versions 3 and 4 have the world tracks only


def test_v4_is_v3_over_four_times_the_rounds():
  # The stretch rule sized it (bench/plateau.py); nothing else of the scenario moves, and
  # the curve keeps 40 evaluations (async-hetero: 4x the server steps, evaluated alike).
  for track_id, rounds, every in (('xr-default', 800, 20), ('async-hetero', 3200, 80)):
    v3, v4 = tracks.get(track_id, 3), tracks.get(track_id, 4)
    moved = {k for k in set(v3.frozen) | set(v4.frozen) if v3.frozen.get(k) != v4.frozen.get(k)}
    assert moved == {'num_rounds', 'eval_every'}, track_id
    assert (v4.frozen['num_rounds'], v4.frozen['eval_every']) == (rounds, every)
    assert v3.frozen['num_rounds'] * 4 == rounds and v4.open == v3.open
    assert v4.sizing == 'stretch' and v4.primary_metric == 'panel/accuracy'
  assert tracks.get('xr-default', 4).target == 0.40
  assert {t.id for t in tracks.all_tracks() if t.version == 4} == {
      t.id for t in tracks.all_tracks() if t.version == 3}


def test_v1_configs_translate_to_todays_keys():
  doc = json.load(open(os.path.join(REPO, 'leaderboard', 'submissions',
                                    'xr-default-v1__fedavg.json')))
  config = copy.deepcopy(doc['config'])
  config['client_optimizer']['momentum'] = 0.5
  config['server_optimizer'].update(momentum=0.25, b1=0.8, b2=0.95, eps=1e-4)
  flat = common.flatten(v1.translate(config, default.get_config().to_dict()))
  assert flat['client_optimizer.sgd.momentum'] == 0.5
  assert flat['server_optimizer.sgd.momentum'] == 0.25
  assert [flat[f'server_optimizer.{n}.b1'] for n in ('adam', 'yogi', 'adagrad')] == [0.8] * 3
  assert [flat[f'server_optimizer.{n}.b2'] for n in ('adam', 'yogi')] == [0.95] * 2
  assert [flat[f'server_optimizer.{n}.eps'] for n in ('adam', 'yogi', 'adagrad')] == [1e-4] * 3
  assert 'client_optimizer.momentum' not in flat and flat['num_rounds'] == 20
  assert flat['client_optimizer.adam.b1'] == 0.9          # v1 had no block: today's default
  config['no_such'] = 1
  with pytest.raises(TrackError, match='its key no_such has no place in today'):
    v1.translate(config, default.get_config().to_dict())


def test_targets_are_90_percent_of_each_v1_fedavg_entry_rounded_down():
  for path in SUBMISSIONS:
    if path.endswith('__fedavg.json'):
      doc = json.load(open(path))
      mean = doc['summary']['eval/accuracy']['mean']
      assert v1.TARGETS[doc['track']['id']] == int(90 * mean) / 100, path


# ---------------------------------------------------------------- v2: the resolved config


def test_only_the_selected_blocks_enter_the_frozen_part():
  robust = tracks.get('robust', 2)
  d2d = tracks.get('d2d', 2)
  assert robust.version == 2 and robust.resolved and len(robust.seeds) >= 3
  # d2d freezes its topology: the selected kind's block only, and the radio graph.
  assert d2d.frozen['topology.kind'] == 'semi' and 'topology.semi.gamma' in d2d.frozen
  assert 'topology.d2d.range_m' in d2d.frozen and 'topology.hierarchical.k2' not in d2d.frozen
  for t in (robust, d2d, tracks.get('xr-default', 2)):
    assert not [k for k in t.frozen if k.startswith(('aggregator.krum', 'compression.topk',
                                                     'attack.alie', 'algorithm.ditto',
                                                     'server_optimizer.adam'))], t.name
  # ipm is robust's selected attack: its block is frozen.
  assert robust.frozen['attack.ipm.epsilon'] == 4.0
  assert 'attack.sign_flip.scale' not in robust.frozen
  # Where the topology is open, the radio graph stays frozen (the scenario's physics).
  xr = tracks.get('xr-default', 2)
  assert 'topology.kind' in xr.open and 'topology.d2d.range_m' in xr.frozen


def _edited(base, **dotted):
  def made():
    config = base()
    for key, value in dotted.items():
      *parents, leaf = key.split('__')
      block = config
      for p in parents:
        block = block[p]
      block[leaf] = value
    return config
  return made


def test_a_dormant_setting_changes_no_hash_and_an_active_one_does():
  base = definitions.d2d
  open_ = common.method(base)
  frozen = lambda b: common.frozen_part(b, open_)
  same = frozen(_edited(base, topology__hierarchical__k2=7, aggregator__krum__num_byzantine=9))
  assert same == frozen(base)
  assert frozen(_edited(base, topology__semi__gamma=3)) != frozen(base)
  # A feature block off (warm_start.heads=none) is dormant whole, its selector too: the
  # feature's arrival froze nothing. Its settings are an entry's choice (open).
  closed = lambda b: common.frozen_part(b, {})   # nothing open: only dormancy leaves a key out
  assert not any(k.startswith('warm_start.') for k in closed(base))
  assert closed(_edited(base, warm_start__ridge=0.5)) == closed(base)
  assert closed(_edited(base, warm_start__heads='ridge'))['warm_start.ridge'] == 0.01
  assert open_['warm_start.heads'].values == ('none', 'ridge')
  # So is a block inside a section: the client rate's schedule, constant by default.
  assert not any(k.startswith('client_optimizer.schedule.') for k in closed(base))
  assert closed(_edited(base, client_optimizer__schedule__final_fraction=0.5)) == closed(base)
  decayed = closed(_edited(base, client_optimizer__schedule__kind='cosine'))
  assert decayed['client_optimizer.schedule.final_fraction'] == 0.0
  assert open_['client_optimizer.schedule.kind'].values == ('constant', 'cosine', 'linear')


def _with_dummies(monkeypatch):
  """Registers a dummy aggregator and compressor the way a new component appears:
  an entry in its registry table, read by every config and by the resolver."""
  extra = {('fedxr_jax.aggregators.registry', 'AGGREGATORS'): {'strength': 0.5},
           ('fedxr_jax.transforms.registry', 'COMPRESSORS'): {'levels': 3}}
  names, block = blocks.registry_names, blocks.registry_block
  monkeypatch.setattr(blocks, 'registry_names', lambda m, t: names(m, t) + (
      ('dummy',) if (m, t) in extra else ()))
  monkeypatch.setattr(blocks, 'registry_block', lambda m, t: {
      **block(m, t), **({'dummy': extra[(m, t)]} if (m, t) in extra else {})})


def test_registering_a_dummy_aggregator_and_compressor_changes_no_track_hash(monkeypatch):
  before = {t.key: t.frozen_sha256 for t in tracks.all_tracks()}
  _with_dummies(monkeypatch)
  assert default.get_config().aggregator.dummy.strength == 0.5          # the config has it
  rebuilt = ({t.key: t for t, _ in definitions.v2() + definitions.v3() + definitions.v4()}
             | {t.key: t for t in v1.tracks()})
  assert {k: t.frozen_sha256 for k, t in rebuilt.items()} == before
  # ...and it is open at once where its section is: the name, its settings at default.
  robust = rebuilt[('robust', 2)]
  assert 'dummy' in robust.open['aggregator.name'].values
  assert robust.open['aggregator.dummy.strength'] == OneOf((0.5,))
  assert 'dummy' in rebuilt[('xr-default', 2)].open['compression.name'].values
  assert 'dummy' in resolve.component_names(resolve.section('compression'))


def test_open_lists_come_from_the_registries():
  xr = tracks.get('xr-default', 2)
  algorithms = blocks.registry_names('fedxr_jax.algorithms.registry', 'ALGORITHMS')
  presets = blocks.registry_names('fedxr_jax.algorithms.registry', 'PRESETS')
  assert xr.open['algorithm.name'].values == algorithms + presets
  assert xr.open['client_optimizer.name'].values == ('sgd', 'adam', 'yogi', 'adagrad')
  assert xr.open['topology.kind'].values == blocks.registry_names(
      'fedxr_jax.topology.registry', 'TOPOLOGIES')
  # Table 4: LoRA, prompts, user prompts, adapters, experts, full tuning are all open.
  prefix = common.model_prefix(common.flatten(definitions.xr_default().to_dict()))
  for key in ('lora_rank', 'num_prompts', 'num_user_prompts', 'adapter_dim', 'num_experts'):
    assert prefix + key in xr.open, key
  assert xr.open['plan.base'].values == ('frozen', 'shared', 'personal')
  assert 'local_steps' in xr.open and xr.budget is not None


def test_world_tracks_start_from_the_shipped_checkpoint_they_name():
  from fedxr_jax.bench import model_facts
  assert model_facts.checkpoint(definitions.CHECKPOINT)['sha256'] == \
      definitions.CHECKPOINT_SHA256
  xr = tracks.get('xr-default', 2)
  assert xr.pretrained == {'path': 'builtin:m3t-tiny', 'sha256': definitions.CHECKPOINT_SHA256}
  assert xr.frozen['model.pretrained'] == 'builtin:m3t-tiny'
  assert xr.frozen['data.source'] == 'world'
  assert tracks.get('hapt-30', 2).pretrained is None     # real data: a random base


def test_a_gpu_tier_track_is_refused_off_an_accelerator():
  gpu = tracks.get('gpu-scale', 2)
  assert gpu.tier == 'gpu' and gpu.requires == ('gpu', 'tpu')
  base = definitions.BASES[gpu.key]()
  assert base.cohort_size >= 1000
  with pytest.raises(TrackError, match=r'^gpu-scale v2 requires gpu or tpu; this ran on cpu$'):
    gpu.check_platform('cpu')
  gpu.check_platform('gpu')


def _v2_doc(edit=None):
  """An xr-default v2 submission on its base config (hand-made curves), edited."""
  from bench_helpers import FACTS, HARDWARE, VERSIONS
  from fedxr_jax.bench import submission
  t = tracks.get('xr-default', 2)
  config = definitions.BASES[t.key]().to_dict()
  if edit:
    edit(config)
  last = config['num_rounds']
  rows = lambda s: [{'round': r, 'cost/latency_s': 0.1, 'cost/max_compute_s': 0.01,
                     **({'eval/accuracy': 0.5} if r == last else {})}
                    for r in range(1, last + 1)]
  return submission.build(
      track_id=t.id, track_version=t.version, frozen=t.frozen, budget=t.budget_json,
      config=config, seeds=t.seeds, curves={s: rows(s) for s in t.seeds},
      finals={s: {'eval/accuracy': 0.5} for s in t.seeds}, method={'name': 'm'},
      hardware=HARDWARE, versions=VERSIONS, wall_s=1.0, compile_s=None, model_facts=FACTS,
      pretrained=t.pretrained)


def _m3t(config):
  return config['model'][config['model']['name']] if 'name' in config['model'] else config['model']


@pytest.mark.parametrize('name, edit, message', [
    ('as defined', None, None),
    ('a dormant block changed', lambda c: c['aggregator']['krum'].update(num_byzantine=999),
     None),
    ('experts chosen', lambda c: _m3t(c).update(num_experts=4), None),
    ('another compressor', lambda c: (c['compression'].update(name='topk'),
                                      c['compression']['topk'].update(fraction=0.1)), None),
    ('its setting out of bounds', lambda c: (c['compression'].update(name='topk'),
                                             c['compression']['topk'].update(fraction=2.0)),
     'xr-default v2: compression.topk.fraction is 2.0, outside [0.0001, 1.0]'),
    ('a key the track does not know', lambda c: _m3t(c).update(boost=1),
     'is neither frozen nor open in xr-default v2'),
    ('a frozen selection', lambda c: c['aggregator'].update(name='median'),
     "config aggregator.name is \"median\"; xr-default v2 freezes it at \"mean\""),
])
def test_a_v2_submission_is_checked_on_the_blocks_it_uses(name, edit, message, tmp_path):
  from bench_helpers import write_raw
  path = write_raw(tmp_path / 'x.json', _v2_doc(edit))
  if message is None:
    assert validate.validate_file(path, tracks.all_tracks()).track.name == 'xr-default v2', name
  else:
    with pytest.raises(Exception) as info:
      validate.validate_file(path, tracks.all_tracks())
    assert message in str(info.value), name


def test_every_baseline_fits_its_tracks_open_part():
  # The open parts admit every baseline: the Table 4 strategies and one method per
  # research direction (Solutions 1-5 and TAP), each on its track.
  from fedxr_jax.bench import baselines   # pylint: disable=g-import-not-at-top
  from fedxr_jax.bench import model_facts   # pylint: disable=g-import-not-at-top
  from fedxr_jax.bench import run   # pylint: disable=g-import-not-at-top
  assert {b.track for b in baselines.FEDAVG} == set(baselines.CPU_TRACKS)
  # 10 directions (S5 continual with two) and TAP.
  names = {b.name for b in baselines.SOLUTIONS}
  assert len(names) == 11 and {'task_isolation', 'tap'} <= names
  for b in baselines.BASELINES:
    tracks.get(b.track, 2).check_overrides(baselines.overrides(b))
  for version in (3, 4):
    for b in baselines.BY_VERSION[version]:
      tracks.get(b.track, version).check_overrides(baselines.overrides(b))
  # task_isolation's paths (a forward per task) are over a world track's FLOPs budget,
  # inside task-arrival's.
  (isolation,) = [b for b in baselines.SOLUTIONS if b.name == 'task_isolation']
  problems = {}
  for track in ('social', 'task-arrival'):
    config = run.track_config(tracks.get(track, 2), baselines.overrides(isolation))
    problems[track] = tracks.get(track, 2).budget.problems(model_facts.facts(config), None)
  assert 'FLOPs per example over the budget' in problems['social'][0]
  assert problems['task-arrival'] == []
  # A value outside a limit is refused in one line.
  with pytest.raises(TrackError, match='library_size'):
    tracks.get('role-specific', 2).check_overrides({'model.m3t.library_size': 99})


def test_a_shipped_entrys_model_facts_are_recomputed_from_its_recorded_config():
  # What `verify` re-computes: a recorded config (chunk_size the string 'auto') builds,
  # and an entry made before a default-off feature block existed reruns with it off.
  from fedxr_jax.bench import model_facts   # pylint: disable=g-import-not-at-top
  from fedxr_jax.bench import run   # pylint: disable=g-import-not-at-top
  from fedxr_jax.bench import verification   # pylint: disable=g-import-not-at-top
  path = next(p for p in SUBMISSIONS if os.path.basename(p).startswith('xr-default-v2__fedavg__'))
  with open(path) as f:
    doc = json.load(f)
  doc['config'].pop('warm_start', None)
  doc['config']['client_optimizer'].pop('schedule', None)   # a block inside a section
  config = run.rerun_config(doc)
  assert config.chunk_size == 'auto' and config.warm_start.heads == 'none'
  assert config.client_optimizer.schedule.kind == 'constant'
  assert verification.compare_facts(doc['model_facts'], model_facts.facts(config), 0) == []
  doc['config'].pop('aggregator')   # not a feature that is off by default: one line
  with pytest.raises(TrackError, match="no 'aggregator'.*cannot be re-run"):
    run.rerun_config(doc)


@pytest.mark.slow
def test_model_facts_of_an_asynchronous_track_and_of_a_personal_method():
  # Two more model builds (10 s); the default suite checks personal_training on facts
  # dicts (test_leaderboard.test_entries_outside_the_guarantee_are_ranked_apart).
  from fedxr_jax.bench import model_facts   # pylint: disable=g-import-not-at-top
  from fedxr_jax.bench import run   # pylint: disable=g-import-not-at-top
  # An asynchronous track's setup wraps the round's; Ditto keeps a personal model.
  assert not model_facts.facts(run.track_config(tracks.get('async-hetero', 2), {}))[
      'personal_training']
  assert model_facts.facts(run.track_config(tracks.get('private', 2), {
      'algorithm.name': 'ditto'}))['personal_training']


def test_every_v2_tracks_own_defaults_are_inside_its_open_limits():
  # An entry that changes nothing must validate (privacy.ftrl.tree_rounds=0 once did not).
  for t in tracks.all_tracks():
    if t.version != 2 or not t.runnable:
      continue
    flat = common.flatten(tracks.base_config(t).to_dict())
    t.check_overrides({k: flat[k] for k in t.open if k in flat})
