"""The primitives world (data.source=world) through the training loop: every Table 2 task
kind evaluated with its own metrics, every Table 8 preset a run."""
import pytest

from fedxr_jax.training import loop


def _config(config, **world):
  config.data.source = 'world'
  config.num_rounds = config.eval_every = config.checkpoint_every = 1
  config.data.world.update(world)
  return config


def test_a_world_run_evaluates_each_task_by_its_kind(config, tmp_path):
  config = _config(config)
  # SHIFT H on the world too: step budgets from the model's FLOPs per step and a deadline.
  config.data.world.hardware.deadline_s = 1e-4
  config.data.world.hardware.memory_limits = True
  row = loop.run(config, str(tmp_path), progress=False)[-1]
  assert 0 < row['train/mean_local_steps'] < config.local_steps
  # Classification: accuracy; regression: MAE, RMSE, PCK; detection: IoU (and accuracy =
  # its success rate: correct class, PCK, IoU >= 0.5).
  for key in ('eval/gesture/accuracy', 'eval/gaze_point/mae', 'eval/gaze_point/pck',
              'eval/object_box/mean_iou', 'eval/object_box/iou50_rate'):
    assert row[key] is not None, key
  assert row['eval/gaze_point/accuracy'] == row['eval/gaze_point/pck']
  assert row['eval/object_box/accuracy'] == row['eval/object_box/iou50_rate']


# Each preset's generator is tested by default in tests/test_world_presets.py, and the loop
# on the world in test_a_world_run_evaluates_each_task_by_its_kind.
@pytest.mark.slow
@pytest.mark.parametrize('preset', ['social', 'role_specific', 'longitudinal', 'cognitive_load'])
def test_every_table8_preset_is_a_run(config, tmp_path, preset):
  rows = loop.run(_config(config, preset=preset), str(tmp_path), progress=False)
  assert rows[-1]['eval/accuracy'] is not None


def test_a_world_key_left_at_its_default_takes_the_presets_value(config):
  from fedxr_jax.data import sources
  spec = sources.world_spec(_config(config, preset='social'))
  assert spec.group_size > 1          # the social preset's co-located groups
  spec = sources.world_spec(_config(config, preset='social', group_size=3))
  assert spec.group_size == 3         # a value the config sets wins


# The rate by hand: tests/test_stages.py; the field in every source's client data:
# tests/test_real_data.py::test_federated_client_data_matches_the_synthetic_format.
@pytest.mark.slow
def test_a_bf16_base_is_timed_at_each_devices_16_bit_rate(config):
  # The cost model times a bf16 base's FLOPs at the device's fp16 peak over its fp32
  # peak (devices.Device.half_rate); the client's data carries its device's rate.
  import numpy as np
  from fedxr_jax.compose import experiment
  from fedxr_jax.data import devices
  config = _config(config)
  config.model.dtype = 'bfloat16'
  spec, world, _, problem, costs = experiment.make_problem(config)
  assert costs.half_share == 1.0
  for client in range(4):
    data = problem.client_data(world, client, 'train', 0)
    name = spec.devices[int(data['device'])]
    np.testing.assert_allclose(data['device_profile']['half_rate'],
                               devices.DEVICES[name].half_rate)

