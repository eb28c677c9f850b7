"""fedxr_jax: vectorized federated M3T foundation models on simulated XR devices.

Public API (everything else is an implementation detail):
  FederatedProblem     the model + data interface the round trains
  build_federation     -> Federation(init, round, rounds, evaluate): pure functions
  RoundPlan            a round's cohort and topology arrays
  ServerState, ClientStates
  Algorithm, RunFacts  the algorithm interface and what a component may know of a run
  UpdateTransform, chain    client update transforms, optax style
  Aggregator, weighted_mean  how uploads become a target
  Topology             the topology interface (implementations: fedxr_jax.topology)
  FROZEN, SHARED, PERSONAL   tuning-plan modes per parameter tree
  aggregate_modules    masked, weighted module averaging over a client axis
  run                  run(config, workdir): train / resume a configured run
  run_lanes            several runs of one program (seeds, swept values) at once
  build_experiment     the XR experiment (model, data, federation) of a config
  FedXRError, ConfigError, CheckpointError, DataError
"""
import importlib

__version__ = '0.1.0'

# name -> (module, attribute): imported on first use, so that `import fedxr_jax`
# (a config file's) needs no jax, and the host loop's orbax/tqdm/matplotlib load
# only for a run.
_PUBLIC = {
    'Aggregator': ('fedxr_jax.core.aggregation', 'Aggregator'),
    'weighted_mean': ('fedxr_jax.core.aggregation', 'weighted_mean'),
    'Algorithm': ('fedxr_jax.core.algorithm', 'Algorithm'),
    'RunFacts': ('fedxr_jax.core.algorithm', 'RunFacts'),
    'FROZEN': ('fedxr_jax.core.plan', 'FROZEN'),
    'PERSONAL': ('fedxr_jax.core.plan', 'PERSONAL'),
    'SHARED': ('fedxr_jax.core.plan', 'SHARED'),
    'FederatedProblem': ('fedxr_jax.core.problem', 'FederatedProblem'),
    'Federation': ('fedxr_jax.core.round', 'Federation'),
    'build_federation': ('fedxr_jax.core.round', 'build_federation'),
    'RoundPlan': ('fedxr_jax.core.round_plan', 'RoundPlan'),
    'ClientStates': ('fedxr_jax.core.state', 'ClientStates'),
    'ServerState': ('fedxr_jax.core.state', 'ServerState'),
    'Topology': ('fedxr_jax.core.topology', 'Topology'),
    'UpdateTransform': ('fedxr_jax.core.transforms', 'UpdateTransform'),
    'chain': ('fedxr_jax.core.transforms', 'chain'),
    'aggregate_modules': ('fedxr_jax.core.trees', 'aggregate_modules'),
    'CheckpointError': ('fedxr_jax.errors', 'CheckpointError'),
    'ConfigError': ('fedxr_jax.errors', 'ConfigError'),
    'DataError': ('fedxr_jax.errors', 'DataError'),
    'FedXRError': ('fedxr_jax.errors', 'FedXRError'),
    'run': ('fedxr_jax.training.loop', 'run'),
    'run_lanes': ('fedxr_jax.training.loop', 'run_lanes'),
    'build_experiment': ('fedxr_jax.compose.experiment', 'build'),
}
__all__ = sorted(_PUBLIC)


def __getattr__(name):
  if name not in _PUBLIC:
    raise AttributeError(f'module fedxr_jax has no attribute {name!r}')
  module, attribute = _PUBLIC[name]
  value = getattr(importlib.import_module(module), attribute)
  globals()[name] = value
  return value


def __dir__():
  return __all__
