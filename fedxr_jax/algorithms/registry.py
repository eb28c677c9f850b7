"""Algorithms by name (`--config.algorithm.name`), each with its own block.

`config.algorithm.<name>` holds exactly the keyword settings of that
algorithm's factory, with the factory's defaults (written once, in the
factory); `make` passes that block and the run's facts, nothing else.

Presets are the names the literature gives to FedAvg with a server optimizer
or a plan (FedAvgM, FedAdam, FedYogi, FedAdagrad with Reddi et al.'s
defaults; FedPer = personal heads): `expand_preset` rewrites a config into
what they are, and says so.
"""
import difflib

from fedxr_jax.algorithms.crossmodal_distill import crossmodal_distill
from fedxr_jax.algorithms.ditto import ditto
from fedxr_jax.algorithms.dynamic_task_modules import dynamic_task_modules
from fedxr_jax.algorithms.dynamic_task_modules import extend_model as task_module_heads
from fedxr_jax.algorithms.ewc import ewc
from fedxr_jax.algorithms.fedavg import fedavg
from fedxr_jax.algorithms.fedprox import fedprox
from fedxr_jax.algorithms.fedrep import fedrep
from fedxr_jax.algorithms.local_ft import local_ft
from fedxr_jax.algorithms.lwf import lwf
from fedxr_jax.algorithms.mas import mas
from fedxr_jax.algorithms.offload import offload
from fedxr_jax.algorithms.scaffold import scaffold
from fedxr_jax.algorithms.tap import tap
from fedxr_jax.algorithms.tap import extend_model as tap_pair_modules
from fedxr_jax.algorithms.task_isolation import task_isolation
from fedxr_jax.algorithms.task_isolation import extend_model as task_paths
from fedxr_jax.algorithms.temporal_gate import temporal_gate
from fedxr_jax.algorithms.temporal_gate import extend_model as drift_gate
from fedxr_jax.core import registry
from fedxr_jax.errors import ConfigError

ALGORITHMS = {'fedavg': fedavg, 'fedprox': fedprox, 'scaffold': scaffold,
              'ditto': ditto, 'fedrep': fedrep, 'local_ft': local_ft, 'tap': tap,
              'ewc': ewc,
              # The paper's directions S4-S5 (issue 23): task variability, temporal drift.
              'task_isolation': task_isolation, 'dynamic_task_modules': dynamic_task_modules,
              'temporal_gate': temporal_gate, 'lwf': lwf, 'mas': mas,
              # The paper's directions S1-S2 (issue 23): asymmetric inputs, offloading.
              'crossmodal_distill': crossmodal_distill, 'offload': offload}


def default_config() -> dict:
  """The `config.algorithm` block: the name and one block per algorithm."""
  return {'name': 'fedavg', **{name: registry.settings(f) for name, f in ALGORITHMS.items()}}


def check_name(name: str) -> None:
  if name not in ALGORITHMS:
    known = list(ALGORITHMS) + list(PRESETS)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f' (did you mean {close[0]!r}?)' if close else ''
    raise ConfigError(f'unknown algorithm {name!r}{hint}; known: {sorted(ALGORITHMS)}, '
                      f'presets: {sorted(PRESETS)}')


def make(name: str, block, facts):
  """The algorithm `name` built from its own settings block and the run's facts."""
  check_name(name)
  return registry.make(ALGORITHMS[name], block, f'algorithm.{name}', facts)


# Algorithms that add modules or task paths to the model (`algorithms.model_extension`):
# name -> extend(ModelDef, models.Spec, plan {role: mode}, **its settings) -> ModelDef.
EXTENSIONS = {'task_isolation': task_paths, 'dynamic_task_modules': task_module_heads,
              'temporal_gate': drift_gate, 'tap': tap_pair_modules}


def extend_model(block, model, spec, plan: dict):
  """The model as the algorithm of `block` (`config.algorithm`) runs it."""
  extend = EXTENSIONS.get(block['name'])
  if extend is None:
    return model
  own = block[block['name']]
  own = own.to_dict() if hasattr(own, 'to_dict') else dict(own)
  return extend(model, spec, plan, **{**registry.settings(ALGORITHMS[block['name']]), **own})


# Literature names for FedAvg with a server optimizer (Reddi et al. 2021's
# defaults: server lr 1e-2 for Adam/Yogi, 1e-1 for Adagrad, tau = 1e-3) or a
# plan: {dotted config key: (FedAvg's value, the preset's)}; a key is set
# only where the config still holds FedAvg's value, so an explicit
# --config.server_optimizer.learning_rate=0.03 beside a preset is kept.
PRESETS = {
    'fedavgm': {'server_optimizer.sgd.momentum': (0.0, 0.9)},
    'fedadam': {'server_optimizer.name': ('sgd', 'adam'),
                'server_optimizer.learning_rate': (1.0, 0.01)},
    'fedyogi': {'server_optimizer.name': ('sgd', 'yogi'),
                'server_optimizer.learning_rate': (1.0, 0.01)},
    'fedadagrad': {'server_optimizer.name': ('sgd', 'adagrad'),
                   'server_optimizer.learning_rate': (1.0, 0.1)},
    'fedper': {'plan.heads': ('shared', 'personal')},
}
