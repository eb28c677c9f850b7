"""The host boundary is explicit: the training loop makes no implicit transfer."""
import jax
import numpy as np
import pytest

from fedxr_jax.training import loop


def _config(config, **changes):
  config.num_rounds = 2
  config.eval_every = 2
  config.checkpoint_every = 2
  for key, value in changes.items():
    setattr(config, key, value)
  return config


def test_a_run_trains_under_a_transfer_guard_that_disallows_implicit_transfers(config, tmp_path):
  """Plans, guards and states go to the device by device_put, metrics come back by
  device_get; anything implicit (a Python scalar into a jitted call) would raise."""
  rows = loop.run(_config(config), str(tmp_path / 'guarded'), progress=False,
                  transfer_guard='disallow')
  # Both rounds trained, the second evaluated and checkpointed, all under the guard.
  assert [r['round'] for r in rows] == [1, 2] and 'eval/accuracy' in rows[-1]
  assert (tmp_path / 'guarded' / 'checkpoints' / '2').is_dir()
  with pytest.raises(Exception, match='Disallowed host-to-device transfer'):
    with jax.transfer_guard('disallow'):
      jax.jit(lambda x: x + 1)(np.float32(1.0))   # the guard is real


@pytest.mark.slow   # the lane axis: tests/test_sweep.py trains vmapped lanes by default
def test_vmapped_lanes_train_under_the_guard(config, tmp_path):
  configs = []
  for seed in (0, 1):
    c = _config(config.copy_and_resolve_references())
    c.seed = seed
    configs.append(c)
  results = loop.run_lanes(configs, [str(tmp_path / f's{i}') for i in range(2)],
                           transfer_guard='disallow')
  assert all(r.vmapped and len(r.rows) == 2 for r in results)
