"""Every default is written once: the config's blocks are the components' own defaults."""
import dataclasses
import os
import subprocess
import sys

import pytest

from fedxr_jax.configs import blocks
from fedxr_jax.configs import default
from fedxr_jax.core import registry

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _registries():
  from fedxr_jax.aggregators import registry as aggregators
  from fedxr_jax.algorithms import registry as algorithms
  from fedxr_jax.attacks import feature as attacks
  from fedxr_jax.topology import registry as topologies
  from fedxr_jax.transforms import registry as transforms
  return {('fedxr_jax.algorithms.registry', 'ALGORITHMS'): algorithms.ALGORITHMS,
          ('fedxr_jax.aggregators.registry', 'AGGREGATORS'): aggregators.AGGREGATORS,
          ('fedxr_jax.topology.registry', 'TOPOLOGIES'): topologies.TOPOLOGIES,
          ('fedxr_jax.transforms.registry', 'ATTACKS'): transforms.ATTACKS,
          ('fedxr_jax.transforms.registry', 'COMPRESSORS'): transforms.COMPRESSORS,
          ('fedxr_jax.attacks.feature', 'OMNISCIENT'): attacks.OMNISCIENT}


def test_registry_blocks_read_from_source_equal_the_imported_factories():
  for (module, table), factories in _registries().items():
    read = blocks.registry_block(module, table)
    assert list(read) == list(factories), table
    for name, factory in factories.items():
      assert read[name] == registry.settings(factory), f'{table}[{name}]'


def test_optimizer_blocks_equal_the_factories_of_their_role():
  from fedxr_jax.compose import optimizers
  for role in ('client', 'server'):
    block = blocks.optimizer_block(role, 'sgd', 0.1)
    assert [k for k in block if k not in ('name', 'learning_rate', 'schedule')] == list(
        optimizers.names(role))
    for name in optimizers.names(role):
      assert block[name] == registry.settings(optimizers.OPTIMIZERS[role, name]), (role, name)
  # The client rate's schedule: the Schedule's fields and defaults (core/lr_schedule.py).
  from fedxr_jax.core import lr_schedule   # pylint: disable=g-import-not-at-top
  assert blocks.optimizer_block('client', 'sgd', 0.1)['schedule'] == lr_schedule.Schedule()._asdict()
  assert 'schedule' not in blocks.optimizer_block('server', 'sgd', 1.0)
  # FedAdagrad is its own entry, with momentum (Reddi et al.'s b1); a client's adagrad has none.
  assert optimizers.OPTIMIZERS['server', 'adagrad'] is optimizers.fed_adagrad
  assert 'b1' not in blocks.optimizer_block('client', 'sgd', 0.1)['adagrad']


@pytest.mark.parametrize('module, name, exclude', [
    ('fedxr_jax.topology.channel', 'Channel', ()),
    ('fedxr_jax.topology.layout', 'D2D', ()),
    ('fedxr_jax.privacy.feature', 'Settings', ()),
    ('fedxr_jax.evaluation.protocol', 'Protocol', ()),
    ('fedxr_jax.data.synthetic', 'XRSpec', ()),
    ('fedxr_jax.data.sources', 'Source', ()),
    ('fedxr_jax.compose.experiment', 'ModelSettings', ()),
])
def test_dataclass_blocks_read_from_source_equal_the_imported_dataclass(module, name, exclude):
  import importlib
  cls = getattr(importlib.import_module(module), name)
  imported = {f.name: _plain(getattr(cls, f.name)) for f in dataclasses.fields(cls)
              if f.default is not dataclasses.MISSING}
  assert blocks.dataclass_block(module, name) == imported


def _plain(value):
  return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def test_the_model_blocks_are_the_registered_factories_own_settings():
  from fedxr_jax.models import registry as models
  block = default.get_config().model
  assert block.name in models.MODELS
  for name, factory in models.MODELS.items():
    assert block[name].to_dict() == registry.settings(factory), name
  # The run's context (exact LoRA's residual, the dtype) is no setting of a model's block.
  assert 'lora_residual' not in block.m3t and 'dtype' not in block.m3t


def test_the_config_file_loads_without_jax():
  # What keeps it fast (0.09 s measured, BUILD_NOTES): nothing heavy is imported.
  code = ('import sys; from fedxr_jax.configs import default; default.get_config(); '
          'print(sorted(m for m in ("jax", "flax", "optax", "orbax") if m in sys.modules))')
  out = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True,
                       check=True).stdout.strip()
  assert out == '[]'


def test_a_default_the_reader_cannot_evaluate_is_one_clear_error(tmp_path, monkeypatch):
  package = tmp_path / 'fedxr_jax' / 'demo'
  package.mkdir(parents=True)
  (package / 'thing.py').write_text('import math\ndef make(*, limit=math.inf):\n  pass\n')
  monkeypatch.setattr(blocks, '_ROOT', str(tmp_path / 'fedxr_jax'))
  blocks._parse.cache_clear()
  try:
    with pytest.raises(ValueError, match='malformed node'):
      blocks.function_block('fedxr_jax.demo.thing', 'make')
  finally:
    blocks._parse.cache_clear()
