"""world v2: the spec's checks and config block, the task registry, corpus seeds."""
import dataclasses

import jax
import numpy as np
import pytest

from fedxr_jax.configs import blocks
from fedxr_jax.data import catalog
from fedxr_jax.data import shift
from fedxr_jax.data import world
from fedxr_jax.data.world import corpus
from fedxr_jax.errors import ConfigError


@pytest.mark.parametrize('field,value', [
    ('modalities', ('vision', 'smell')), ('tasks', ('gesture', 'gestrue')),
    ('tasks', ('gesture', 'gesture')), ('devices', ('hololens_3',)),
    ('device_weights', (1.0, -1.0, 1.0, 1.0, 1.0, 1.0)), ('min_examples', 0),
    ('test_examples', 0), ('dirichlet_alpha', 0.0), ('task_keep_prob', 1.5),
    ('modality_dropout', 1.0), ('noise_std', -0.1), ('style_scale', -1.0),
    ('environment_scale', -1.0), ('class_spread', 0.0), ('image_channels', 2),
    ('image_size', 20), ('image_patch', 0), ('map_size', 5), ('steps', 10),
    ('audio_bins', 4), ('roles', -1), ('role_strength', 1.5), ('drift_rate', 1.0),
    ('drift_max_events', 0), ('group_size', 0), ('partner_coupling', -0.5),
    ('shared_focus', 2.0), ('load_effect', -1.0),
    ('robustness', world.Robustness(missing_label=1.2)),
    ('robustness', world.Robustness(noise_sparsity=1.0)),
    ('sensors', shift.Sensors(markov_rate=1.0)),
])
def test_every_knob_refuses_an_impossible_value_in_one_line(field, value):
  spec = dataclasses.replace(world.WorldSpec(), **{field: value})
  with pytest.raises(ConfigError) as e:
    spec.check()
  assert '\n' not in str(e.value)


def test_shared_grounding_needs_groups():
  with pytest.raises(ConfigError, match='group_size'):
    world.WorldSpec(tasks=('shared_grounding',)).check()


def test_the_config_block_is_derived_from_the_fields_and_round_trips():
  block = world.default_config()
  # What configs/blocks.py reads from the source, without importing it.
  assert blocks.dataclass_block('fedxr_jax.data.world.spec', 'WorldSpec', exclude=(
      'local_steps', 'holdout_environments', 'holdout_devices', 'holdout_first_id',
      'holdout_clients', 'hardware.flops_per_step', 'hardware.role_train_bytes')) == block
  assert 'local_steps' not in block and 'flops_per_step' not in block['hardware']
  assert world.spec_from_config(block, local_steps=3) == world.WorldSpec(local_steps=3)
  changed = world.spec_from_config({'image_size': 32, 'robustness': {'label_noise': 0.2}}, 3)
  assert changed.image_size == 32 and changed.robustness.label_noise == 0.2
  with pytest.raises(ConfigError, match="did you mean 'image_size'"):
    world.spec_from_config({'image_sise': 32}, 3)


def test_model_shapes_follow_the_requested_resolution():
  tiny = world.WorldSpec().model_modalities()
  assert tiny['vision'] == ((16, 16, 1), (8, 8, 1))
  assert tiny['audio'] == ((16, 16), (4, 16)) and tiny['motion'] == ((16, 6), (4, 6))
  base = world.WorldSpec(image_size=224, image_channels=3, image_patch=16).check()
  shape, token = base.model_modalities()['vision']
  assert shape == (224, 224, 3) and token == (16, 16, 3)   # ViT-B/16: 196 patches
  assert world.WorldSpec().head_sizes == (6, 4, 4, 2, 4)
  assert world.WorldSpec().num_classes == (6, 4, 4, 0, 0)


def test_task_registry_keeps_v1_names_and_table2_latencies():
  for name, task in world.TASKS.items():
    assert task.kind in ('classification', 'regression', 'detection')
    assert set(task.carriers) <= set(world.spec.MODALITIES)
    if name in catalog.TASKS:
      assert task.size == catalog.TASKS[name].num_classes
      assert task.latency_ms == catalog.TASKS[name].latency_ms
  assert world.TASKS['gaze_point'].latency_ms == 11.0    # very low: one 90 Hz frame
  assert world.TASKS['object_box'].kind == 'detection'
  assert world.TASKS['hand_pose'].num_points == 6


def test_the_corpus_never_contains_a_federation_world():
  seeds = world.corpus_seeds(1000)
  assert len(set(seeds)) == 1000
  assert not any(corpus.is_federation_seed(s) for s in seeds)
  roots = np.stack([jax.random.key_data(corpus.root_key(s)) for s in seeds[:50]])
  assert np.all(roots[:, 0] == 1)   # no federation seed has a nonzero first key word
  for seed in (0, 1, 7, 12345, (1 << 32) - 1):   # what data.sources.make_data uses
    expected = jax.random.fold_in(jax.random.key(seed), 7)
    np.testing.assert_array_equal(jax.random.key_data(world.world_key(seed)),
                                  jax.random.key_data(expected))
  federation = {tuple(np.asarray(jax.random.key_data(world.world_key(s)))) for s in range(50)}
  corpus_keys = {tuple(np.asarray(jax.random.key_data(world.world_key(s))))
                 for s in seeds[:50]}
  assert not federation & corpus_keys
  with pytest.raises(ConfigError):
    world.corpus_seeds(-1)


def test_every_world_task_has_a_latency_budget_and_the_world_sets_the_model_scale():
  from fedxr_jax.evaluation import client_metrics   # pylint: disable=g-import-not-at-top
  from fedxr_jax.data import sources   # pylint: disable=g-import-not-at-top
  spec = world.WorldSpec()
  assert 'gaze_point' in spec.tasks and 'object_box' in spec.tasks   # outside catalog.TASKS
  ms, classes = client_metrics.budgets(spec.tasks, spec.latency_classes)
  assert dict(zip(spec.tasks, ms)) == {t: world.TASKS[t].latency_ms for t in spec.tasks}
  assert dict(zip(spec.tasks, classes))['gaze_point'] == 'very low'
  # Without the world's classes the tasks outside Table 2's list have none (no metric).
  assert client_metrics.budgets(spec.tasks) is None
  # The deadline and the cost model read one scale: the world's own H knob.
  scaled = dataclasses.replace(spec, hardware=shift.HardwareKnobs(model_scale=300.0))
  assert sources.model_scale(scaled, config=None) == 300.0
