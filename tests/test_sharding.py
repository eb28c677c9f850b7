"""The client axis sharded over 8 forced host devices gives the 1-device result."""
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r'''
import sys, jax, numpy as np
sys.path.insert(0, 'tests')
from helpers import run_rounds
from fedxr_jax.configs import test as test_config
from fedxr_jax.compose import experiment
config = test_config.get_config()
exp = experiment.build(config)
assert (exp.mesh is not None) == (jax.device_count() > 1)
server, _, _ = run_rounds(exp, 2)
# A D2D topology too: gossip mixing on a sharded client axis.
config.topology.kind = 'semi'
config.topology.d2d.graph = 'ring'
config.topology.semi.num_clusters = 2
config.topology.semi.cluster_by = 'id'
semi, _, _ = run_rounds(experiment.build(config), 2)
# Chunks of 8 in step-budget order (core.schedule), one client per device each.
config = test_config.get_config()
config.cohort_size, config.chunk_size = 16, 8
scheduled, _, _ = run_rounds(experiment.build(config), 2)
if exp.mesh is not None:
  # The compiled round really is partitioned: it holds cross-device collectives.
  s, c, f = exp.federation.init(exp.world, exp.key)
  hlo = jax.jit(exp.federation.round).lower(s, c, f, exp.world, exp.plan(0)[0]).compile().as_text()
  assert any(op in hlo for op in ('all-reduce', 'all-gather', 'reduce-scatter')), 'no collectives'
if exp.mesh is not None:
  # The loop's state: the population's client trees sharded over the mesh's
  # 'clients' axis (24 clients, 8 devices), the server's replicated; a call keeps them so.
  from jax.sharding import PartitionSpec
  from fedxr_jax.training import checks, runner as runner_lib
  runner = runner_lib.Runner([exp], checks.step_bytes(exp))
  state = runner.initial()
  state, _, _ = runner.call(state, runner.prepare(0, 1), runner.guard([[]]))
  for leaf in jax.tree.leaves(state[1]):
    assert leaf.sharding.spec == PartitionSpec('clients'), leaf.sharding
    assert len({s.index for s in leaf.addressable_shards}) == 8
  for leaf in jax.tree.leaves(state[0]):
    assert leaf.sharding.is_fully_replicated
leaves = jax.tree_util.tree_leaves_with_path({'centralized': server.shared,
                                               'semi': semi.shared,
                                               'scheduled': scheduled.shared})
np.savez(sys.argv[1], **{jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves})
print(jax.device_count())
'''


def _run(devices, out):
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
             JAX_PLATFORMS='cpu')
  result = subprocess.run([sys.executable, '-c', SCRIPT, str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().splitlines()[-1] == str(devices)
  return np.load(out)


@pytest.mark.slow   # 8 host devices on 2 cores; tests/test_cli.py covers 2 in the default suite
def test_eight_devices_equal_one(tmp_path):
  one = _run(1, tmp_path / 'one.npz')
  eight = _run(8, tmp_path / 'eight.npz')
  assert sorted(one.files) == sorted(eight.files)
  for name in one.files:
    # Same math; XLA may reassociate float32 sums when the batch is split.
    np.testing.assert_allclose(one[name], eight[name], rtol=1e-5, atol=1e-6)
