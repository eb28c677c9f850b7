"""Table 6 metrics: registry, finalizers on hand-computed stats, report, TensorBoard, docs."""
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedxr_jax.data import catalog
from fedxr_jax.errors import ConfigError, FedXRError
from fedxr_jax.metrics import (activation, continuity, cost, docs, generalization, latency,
                               personalization, privacy, qoe, registry, report, stats,
                               storage, tensorboard, training_time)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)

# Table 6 of the paper, as printed: metric -> SHIFT dimensions.
TABLE6 = {'Inference Latency': 'HIT', 'Personalization Effectiveness': 'IF',
          'Personalization Necessity Rate': 'HIF', 'Cross-Context Generalization': 'SFT',
          'Task-Specific Continuity': 'FT', 'Submodule Activation Efficiency': 'HF',
          'Model Storage Footprint': 'H', 'Communication Overhead': 'HT',
          'Battery Impact / Energy Use': 'HT', 'User-Reported QoE': 'IT',
          'Model-Inferred QoE': 'IT', 'On-Device Training Time': 'HIT',
          'Privacy Leakage Risk': 'S'}


# ---- registry ---------------------------------------------------------------

def test_registry_holds_table6():
  got = {m.name: ''.join(m.shift) for m in registry.metrics()}
  assert got == TABLE6
  for m in registry.metrics():
    for h in m.headline:   # every headline key instantiates one of the metric's keys
      assert registry.lookup(h)[0] is m, h
  existing = ('comm/uplink_bits', 'comm/downlink_bits', 'comm/d2d_bits',
              'comm/backhaul_bits', 'cost/energy_j', 'cost/max_device_energy_j',
              'cost/latency_s', 'privacy/epsilon', 'privacy/mia_auc')
  assert all(registry.lookup(k) for k in existing)


@pytest.mark.parametrize('key, slug, pattern', [
    ('latency/gesture/violation_rate', 'inference_latency', 'latency/<task>/violation_rate'),
    ('latency/class/very_low/violation_rate', 'inference_latency',
     'latency/class/<class>/violation_rate'),
    ('generalization/holdout_devices/gesture/gap', 'cross_context_generalization',
     'generalization/<group>/<task>/gap'),
    ('storage/meta_quest_3/bytes_int8', 'storage_footprint', 'storage/<device>/bytes_int8'),
])
def test_registry_lookup(key, slug, pattern):
  metric, k = registry.lookup(key)
  assert (metric.slug, k.pattern) == (slug, pattern)
  assert registry.lookup('train/loss') is None


# ---- stats ------------------------------------------------------------------

def test_sums_by_group_and_merge():
  per_client = {'correct': [[1, 2], [3, 4], [5, 6], [7, 8]]}
  g = stats.sums_by_group(per_client, [0, 1, 0, -1], 2)   # -1: a padded slot
  close(g['correct'], [[6, 8], [3, 4]])
  merged = stats.merge({'a': [1.0, 2.0], 'n': {'b': 1.0}}, {'a': [3.0, 4.0], 'n': {'b': 2.0}})
  close(merged['a'], [4, 6])
  close(merged['n']['b'], 3)


# ---- personalization ----------------------------------------------------------

def test_necessity_rate_hand_made_users():
  # user 0: 0.9, 1.0; user 1: 0.8, 0.95; user 2: 1.0 on task a only; user 3: padded.
  correct = [[9, 10], [8, 19], [10, 0], [0, 0]]
  count = [[10, 10], [10, 20], [10, 0], [0, 0]]
  out = personalization.necessity_rate(correct, count, ('a', 'b'), threshold=0.9,
                                       relative=0.75)
  close(out['personalization/necessity_rate'], 2 / 3)        # users 0 and 2
  close(out['personalization/necessity_rate_pairs'], 4 / 5)  # all but (1, a)
  close(out['personalization/a/necessity_rate'], 2 / 3)
  close(out['personalization/b/necessity_rate'], 1.0)
  # relative: >= 0.75 x the best user (1.0 on both tasks): everyone.
  close(out['personalization/necessity_rate_rel'], 1.0)
  close(out['personalization/necessity_rate_pairs_rel'], 1.0)
  with pytest.raises(ConfigError, match='necessity_threshold'):
    personalization.necessity_rate(correct, count, ('a', 'b'), threshold=90)


def test_effectiveness_of_a_better_personal_model():
  global_ = {'correct': np.array([7.0, 6.0]), 'count': np.array([10.0, 8.0])}
  personal = {'correct': np.array([9.0, 6.0]), 'count': np.array([10.0, 8.0])}
  out = personalization.effectiveness(personal, global_, ('a', 'b'))
  close(out['personalization/a/effectiveness'], 0.2)
  close(out['personalization/b/effectiveness'], 0.0)
  close(out['personalization/effectiveness'], 0.1)
  with pytest.raises(ConfigError, match='same clients'):
    personalization.effectiveness({**personal, 'count': np.array([10.0, 9.0])}, global_,
                                  ('a', 'b'))


# ---- generalization -----------------------------------------------------------

def test_cross_context_gaps():
  part = {'correct': [8.0, 6.0], 'count': [10.0, 10.0]}
  out = generalization.gaps(part, {
      'unseen_users': {'correct': [6.0, 6.0], 'count': [10.0, 10.0]},
      'holdout_devices': {'correct': [5.0, 0.0], 'count': [10.0, 0.0]}}, ('a', 'b'))
  close(out['generalization/unseen_users/a/gap'], -0.2)
  close(out['generalization/unseen_users/gap'], -0.1)
  close(out['generalization/unseen_users/accuracy'], 0.6)
  assert out['generalization/holdout_devices/b/gap'] is None   # no labels: no gap
  close(out['generalization/holdout_devices/gap'], -0.3)


# ---- continuity ---------------------------------------------------------------

def test_forgetting_and_backward_transfer_on_a_made_up_history():
  history = [{'a': 0.5}, {'a': 0.8}, {'a': 0.6, 'b': 0.4}, {'a': 0.7, 'b': 0.7}]
  out = continuity.continuity_metrics(history, ('a', 'b'))
  close(out['continuity/a/forgetting'], 0.1)      # best 0.8, now 0.7
  close(out['continuity/b/forgetting'], 0.0)      # better than ever
  close(out['continuity/forgetting'], 0.05)
  close(out['continuity/a/backward_transfer'], -0.1)   # 0.8 when b arrived
  assert out['continuity/b/backward_transfer'] is None  # the last phase
  close(out['continuity/backward_transfer'], -0.1)
  rows = [{'round': 1, 'train/loss': 1.0}, {'round': 2, 'panel/a/accuracy': 0.5}]
  assert continuity.panel_history(rows, ('a', 'b')) == [{'a': 0.5, 'b': None}]


# ---- activation ---------------------------------------------------------------

def test_activation_counts_on_constructed_expert_tokens():
  tokens = np.array([[[10, 0, 0, 0], [5, 5, 0, 0]],      # task 0: 1 + 2 experts
                     [[1, 1, 1, 97], [0, 0, 0, 0]]], float)  # task 1: 1 (>= 5%) + 0
  counts = {'encoder/vision': 100, 'encoder/audio': 50, 'encoder/gaze': 30,
            'head/t0': 10, 'head/t1': 20, 'expert': 40, 'lora_rank': 5, 'base': 1000}
  out = activation.activation_metrics(
      [10, 8], ('t0', 't1'), modalities=('vision', 'audio', 'gaze'),
      modality_examples=[[10, 0, 3], [0, 8, 0]], expert_tokens=tokens,
      lora_rank_sum=[40, 24], lora_rank_max=4, param_counts=counts)
  close(out['activation/t0/experts'], 3)
  close(out['activation/t0/experts_per_layer'], 1.5)
  close(out['activation/t1/experts'], 1)
  close(out['activation/t0/encoders'], 2)
  close(out['activation/t1/encoders'], 1)
  close(out['activation/t1/lora_rank'], 3)
  close(out['activation/t0/modules'], 6)
  close(out['activation/modules'], 4.5)
  # total 1000 + 180 + 30 + 8 x 40 + 4 x 5 = 1550
  close(out['activation/t0/param_fraction'], (1000 + 10 + 130 + 3 * 40 + 4 * 5) / 1550)
  close(out['activation/t1/param_fraction'], (1000 + 20 + 50 + 40 + 3 * 5) / 1550)
  none = activation.activation_metrics([5, 0], ('t0', 't1'), lora_rank_max=2)
  assert none['activation/t1/modules'] is None and none['activation/t0/modules'] == 1


# ---- storage ------------------------------------------------------------------

def test_storage_bytes_equal_a_hand_count():
  sds = jax.ShapeDtypeStruct
  f32 = jnp.float32
  trees = {'base': {'w': sds((3, 4), f32), 'b': sds((4,), f32),
                    'count': sds((3,), jnp.int32)},
           'encoders': {'encoders': {'vision': {'k': sds((2, 5), f32)},
                                     'audio': {'k': sds((6,), f32)}}},
           'heads': {'heads': {'gesture': {'w': sds((4, 2), f32)}}},
           'personal': {'p': sds((5,), f32), 'q': sds((2,), jnp.bfloat16)}}
  holdings = {'meta_quest_3': ['base', 'encoders/encoders/vision', 'heads', 'personal'],
              'lab_rig': ['base', 'encoders', 'heads', 'base/w']}   # overlap counts once
  out = storage.footprint_metrics(trees, holdings, ram_gb={'lab_rig': 1.0})
  # quest: 41 float weights in 6 tensors + 3 int32; rig: 40 in 5 + 3 int32.
  assert out['storage/meta_quest_3/bytes_float32'] == 41 * 4 + 12
  assert out['storage/meta_quest_3/bytes_bfloat16'] == 41 * 2 + 12
  assert out['storage/meta_quest_3/bytes_int8'] == 41 + 6 * 4 + 12
  assert out['storage/lab_rig/bytes_float32'] == 40 * 4 + 12
  assert out['storage/lab_rig/bytes_int8'] == 40 + 5 * 4 + 12
  assert out['storage/max_bytes_float32'] == 176
  close(out['storage/meta_quest_3/ram_fraction'], 176 / 8e9)   # Quest 3: 8 GB
  close(out['storage/lab_rig/ram_fraction'], 172 / 1e9)
  with pytest.raises(ConfigError, match="no parameters under module 'encoders/thermal'"):
    storage.module_bytes(trees, ['encoders/thermal'], 'int8')


# ---- latency ------------------------------------------------------------------

TASKS3 = ('gesture', 'gaze_target', 'scene')   # budgets 50 (low), 11 (very low), 200 ms


def test_latency_violations_per_task_class_and_overall():
  budget, classes = latency.budgets(TASKS3)
  close(budget, [50.0, 11.0, 200.0])
  lat = np.array([5.0, 20.0, 60.0, 250.0])
  mask = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 1], [0, 0, 1]], bool)
  halves = [latency.violation_stats(lat[s], mask[s], budget) for s in (slice(0, 2),
                                                                       slice(2, 4))]
  out = latency.violation_metrics(stats.merge(*halves), TASKS3, classes)
  close(out['latency/gesture/violation_rate'], 1 / 3)   # 60 > 50
  close(out['latency/gaze_target/violation_rate'], 1 / 2)  # 20 > 11
  close(out['latency/scene/violation_rate'], 1 / 3)    # 250 > 200
  close(out['latency/class/very_low/violation_rate'], 1 / 2)
  close(out['latency/class/moderate/violation_rate'], 1 / 3)
  close(out['latency/violation_rate'], 3 / 8)        # 3 of 8 (client, task) pairs
  with pytest.raises(ConfigError, match="task 'digits' has no Table 2 latency budget"):
    latency.budgets(('digits',))
  close(latency.budgets(('digits',), {'digits': 'moderate'})[0], [200.0])


def test_modeled_latency_and_xla_flops():
  quest, avp = catalog.devices(['meta_quest_3', 'apple_vision_pro'])
  # sustained fp32: Quest 3 3.0 TFLOPS x 0.15, AVP 3.6 x 0.25 = 4.5e11, 9e11 FLOP/s
  out = latency.modeled_metrics(9e8, [quest, avp])
  close(out['latency/modeled_ms/meta_quest_3'], 2.0)
  close(out['latency/modeled_ms/apple_vision_pro'], 1.0)
  close(latency.device_latency_ms(9e8, [quest], precision='fp16'), [1.0])
  f = lambda w, x: x @ w
  assert cost.xla_flops(f, jnp.ones((8, 4)), jnp.ones((2, 8))) == 2 * 2 * 8 * 4
  ms = latency.measure_ms(jax.jit(f), jnp.ones((8, 4)), jnp.ones((2, 8)), repeats=3)
  assert ms > 0
  with pytest.raises(ConfigError, match='repeats >= 1'):
    latency.measure_ms(f, repeats=0)


# ---- QoE ----------------------------------------------------------------------

@pytest.mark.parametrize('acc, lat, budget, tau, mos', [
    (0.8, 40.0, 50.0, 1.0, 4.2),                     # within budget: 1 + 4 x 0.8
    (1.0, 100.0, 50.0, 1.0, 1 + 4 * math.exp(-1)),   # twice the budget
    (0.5, 150.0, 50.0, 2.0, 1 + 2 * math.exp(-1)),   # 3x budget, tau 2
])
def test_user_mos_formula(acc, lat, budget, tau, mos):
  got = qoe.expected_mos(jnp.array([[acc]]), jnp.array([lat]), jnp.array([budget]), tau)
  np.testing.assert_allclose(got, [[mos]], rtol=1e-6)


def test_user_reported_ratings_and_poor_or_worse():
  exact = qoe.UserModel(bias_std=0.0, noise_std=0.0)   # ratings = round(MOS)
  # client 0: accuracy 0.8 and 1.0 at 40 ms; client 1: padded (no labels).
  s = qoe.user_reported_stats(jax.random.key(0), jnp.array([[8, 10], [0, 0]]),
                              jnp.array([[10, 10], [0, 0]]), jnp.array([40.0, 0.0]),
                              jnp.array([50.0, 20.0]), jnp.arange(2), exact)
  out = qoe.user_reported_metrics(jax.tree.map(np.asarray, s), ('a', 'b'))
  close(out['qoe/user_reported/a/mos'], 4.0)   # round(4.2)
  close(out['qoe/user_reported/b/mos'], 2.0)   # round(1 + 4 e^-1) = round(2.47)
  np.testing.assert_allclose(out['qoe/user_reported/model_mos'],
                             (4.2 + 1 + 4 * math.exp(-1)) / 2, rtol=1e-6)
  close(out['qoe/user_reported/poor_or_worse'], 0.5)
  # With noise: integer ratings in 1..5, the same whatever the chunking of clients.
  # A user's draws follow its id, not its position: reordering clients (as
  # chunking does) reorders the ratings.
  mos, ids, key = jnp.array([[3.0, 2.0], [4.0, 1.5]]), jnp.arange(2), jax.random.key(1)
  whole = qoe.likert(key, mos, ids)
  np.testing.assert_array_equal(qoe.likert(key, mos[::-1], ids[::-1]), whole[::-1])
  assert set(np.unique(whole)) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def test_inferred_qoe_formula():
  s = qoe.inferred_stats(jnp.array([[8, 10]]), jnp.array([[10, 10]]),
                         jnp.array([[100.0, 10.0]]), jnp.array([50.0, 50.0]))
  out = qoe.inferred_metrics(jax.tree.map(np.asarray, s), ('a', 'b'))
  abort = 0.5 * (1 - math.exp(-1))                 # twice the budget
  a_score = 1 + 4 * (1 - 0.1) * (1 - abort) * (1 - 0.2)
  np.testing.assert_allclose(out['qoe/inferred/a/score'], a_score, rtol=1e-6)
  np.testing.assert_allclose(out['qoe/inferred/b/score'], 5.0, rtol=1e-6)   # perfect
  np.testing.assert_allclose(out['qoe/inferred/repetition_rate'], 0.05, rtol=1e-6)
  np.testing.assert_allclose(out['qoe/inferred/hesitation_rate'], 0.5, rtol=1e-6)
  np.testing.assert_allclose(out['qoe/inferred/abort_rate'], abort / 2, rtol=1e-6)
  with pytest.raises(ConfigError, match='probabilities'):
    qoe.BehaviourModel(retry_prob=1.5)


# ---- training time and privacy --------------------------------------------------

def test_training_time_per_event_and_device():
  quest, avp = catalog.devices(['meta_quest_3', 'apple_vision_pro'])
  out = training_time.training_time_metrics(
      {'local_training': (4.5e9, 10), 'fine_tuning': (4.5e9, {quest.name: 10,
                                                                avp.name: 20})},
      [quest, avp])
  close(out['train_time/local_training/meta_quest_3/seconds'], 0.1)   # 4.5e10 / 4.5e11
  close(out['train_time/local_training/meta_quest_3/energy_j'], 0.7)  # 7 W
  close(out['train_time/local_training/apple_vision_pro/energy_j'], 0.5)  # 0.05 s x 10 W
  close(out['train_time/local_training/max_seconds'], 0.1)
  close(out['train_time/fine_tuning/apple_vision_pro/seconds'], 0.1)
  close(out['train_time/fine_tuning/max_energy_j'], 1.0)
  per_client = training_time.client_event_metrics(
      'personalization', [1.0, 3.0, 2.0], [2.0, 6.0, 4.0], [0, 0, 1], [quest, avp])
  close(per_client['train_time/personalization/meta_quest_3/seconds'], 2.0)
  close(per_client['train_time/personalization/max_energy_j'], 4.0)


def test_privacy_reports_what_exists():
  assert privacy.privacy_metrics(epsilon=math.inf, mia_auc=None) == {}
  assert privacy.privacy_metrics(2.0, 1e-5, 0.55) == {
      'privacy/epsilon': 2.0, 'privacy/delta': 1e-5, 'privacy/mia_auc': 0.55}
  notes = privacy.privacy_notes({'privacy/epsilon': 2.0})
  assert any('mia_auc' in n for n in notes) and not any('epsilon' in n for n in notes)


# ---- report -------------------------------------------------------------------

def _workdir(path, rows, config, extra_lines=()):
  os.makedirs(path)
  with open(os.path.join(path, 'config.json'), 'w') as f:
    json.dump(config, f)
  with open(os.path.join(path, 'metrics.jsonl'), 'w') as f:
    for i, row in enumerate(rows):
      f.write(json.dumps(row) + '\n')
      if i in dict(extra_lines):
        f.write(dict(extra_lines)[i] + '\n')
  return str(path)


@pytest.fixture
def two_runs(tmp_path):
  a = _workdir(tmp_path / 'fedavg', [
      {'round': 1, 'train/loss': 1.0, 'comm/uplink_bits': 1000, 'cost/energy_j': 2.0,
       'cost/latency_s': 0.5, 'eval/accuracy': None},
      {'round': 2, 'train/loss': 0.8, 'comm/uplink_bits': 3000, 'cost/energy_j': 4.0,
       'cost/latency_s': 0.5, 'eval/accuracy': 0.625, 'latency/violation_rate': 0.25,
       'storage/meta_quest_3/bytes_float32': 2e6, 'eval/gesture/expert_share': [[0.5]]}],
      {'algorithm': {'name': 'fedavg'}, 'topology': {'kind': 'centralized'}})
  b = _workdir(tmp_path / 'd2d', [
      {'round': 1, 'train/loss': 1.1, 'comm/uplink_bits': 400, 'cost/energy_j': 1.0,
       'cost/latency_s': 0.25},
      {'round': 3, 'train/loss': 0.9, 'comm/uplink_bits': 600, 'cost/energy_j': 1.0,
       'cost/latency_s': 0.25, 'eval/accuracy': 0.75,
       'storage/meta_quest_3/bytes_float32': 1e6}],
      {'algorithm': {'name': 'fedavg'}, 'topology': {'kind': 'decentralized'}},
      extra_lines=[(0, '{"round": 2, "train/lo')])   # a torn row
  return a, b


def test_report_side_by_side(two_runs, tmp_path):
  written = report.write_report(list(two_runs), str(tmp_path / 'out'))
  with open(written.markdown) as f:
    md = f.read()
  assert '| comm/uplink_bits | bits / round | 2 kbit | 500 bit |' in md   # means per round
  assert '0.625' in md and '0.75' in md and 'decentralized' in md
  assert '| 2 MB | 1 MB |' in md
  assert registry.MISSING in md   # e.g. personalization: '-' and the reason
  tradeoffs = {t: points for t, _, points in report.tradeoffs(report.load_runs(list(two_runs)))}
  energy = [t for t in tradeoffs if t.endswith('accuracy vs. on-device energy')]
  assert tradeoffs[energy[0]] == [('fedavg', 0.625, 6.0), ('d2d', 0.75, 2.0)]
  personal = [t for t in tradeoffs if t.endswith('personalized vs. global accuracy')]
  assert len(personal) == 1   # panel accuracy against never-seen users' accuracy
  # The comparison table shows what differs between the runs, not only fixed fields.
  runs = report.load_runs(list(two_runs))
  assert 'topology.kind' in report.differing_settings(runs)
  with open(written.html) as f:
    page = f.read()
  assert 'http://' not in page and 'https://' not in page and '<link' not in page
  assert page.count('src="data:image/png;base64,') == len(written.images) == 3
  assert [n for n in written.notes if 'damaged row skipped' in n and ':2:' in n]


def test_report_shows_the_user_distribution_of_eval_clients(two_runs, tmp_path):
  with open(os.path.join(two_runs[0], 'eval_clients.jsonl'), 'w') as f:
    for i, acc in enumerate([0.2, 0.6, 0.7, 1.0]):
      f.write(json.dumps({'round': 2, 'group': 'panel', 'client': i, 'accuracy': acc,
                          'device': 'meta_quest_3' if i % 2 else 'ray_ban_meta'}) + '\n')
  written = report.write_report(list(two_runs), str(tmp_path / 'out'))
  with open(written.markdown) as f:
    md = f.read()
  assert '| clients/worst10_accuracy | 0.2 | - |' in md   # ceil(0.4) = the worst user
  assert '| clients/meta_quest_3/accuracy | 0.8 | - |' in md
  assert '| clients/ray_ban_meta/accuracy | 0.45 | - |' in md


def test_report_errors_are_one_line(tmp_path):
  os.makedirs(tmp_path / 'empty')
  with pytest.raises(FedXRError, match='no metrics.jsonl'):
    report.load_run(str(tmp_path / 'empty'))
  with pytest.raises(FedXRError, match='no such workdir'):
    report.load_run(str(tmp_path / 'nowhere'))


def test_summary_lines():
  lines = report.summary_lines([{'round': 1, 'latency/violation_rate': 0.25,
                                 'comm/uplink_bits': 2e6}])
  text = '\n'.join(lines)
  assert 'Inference Latency' in text and 'latency/violation_rate 0.25' in text
  assert '2 Mbit' in text
  assert lines[-1].startswith(f'  {registry.MISSING}: Personalization Effectiveness')


def test_cli(two_runs, tmp_path, capsys):
  ok = subprocess.run([sys.executable, '-m', 'fedxr_jax.cli.report', *two_runs,
                       f'--out={tmp_path / "cli"}'],
                      capture_output=True, text=True, cwd=REPO, timeout=120)
  assert ok.returncode == 0, ok.stderr
  assert os.path.isfile(tmp_path / 'cli' / 'report.html')
  assert 'damaged row skipped' in ok.stderr and 'Traceback' not in ok.stderr
  # A subprocess, not in-process: the CLIs' absl flags are process-global.
  bad = subprocess.run([sys.executable, '-m', 'fedxr_jax.cli.report', str(tmp_path / 'nowhere')],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
  lines = [l for l in bad.stderr.splitlines() if l.strip()]
  assert bad.returncode == 2 and len(lines) == 1 and 'no such workdir' in lines[0]


# ---- TensorBoard and docs -------------------------------------------------------

def test_tensorboard_events_read_back(tmp_path):
  rows = [{'round': 1, 'train/loss': 1.5, 'eval/accuracy': None, 'share': [0.5, 0.5]},
          {'round': 2, 'train/loss': 1.25, 'eval/accuracy': 0.5}]
  logdir = tensorboard.write_rows(str(tmp_path), rows)
  got = tensorboard.read_scalars(logdir)
  assert got == {'train/loss': [(1, 1.5), (2, 1.25)], 'eval/accuracy': [(2, 0.5)]}
  assert 'tensorflow' not in sys.modules and 'torch' not in sys.modules


def test_docs_are_generated():
  with open(docs.PATH) as f:
    assert f.read() == docs.render(), 'run python -m fedxr_jax.metrics.docs'
