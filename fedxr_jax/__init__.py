"""fedxr_jax: vectorized federated M3T foundation models on simulated XR devices.

Public API (everything else is an implementation detail):
  FederatedProblem     the model + data interface the round trains
  build_federation     -> Federation(init, round, evaluate): pure functions
  ServerState, ClientStates
  Algorithm, make_algorithm, ALGORITHMS   algorithms as factories of pure functions
  AggregationRule      model-specific aggregation (e.g. exact LoRA)
  FROZEN, SHARED, PERSONAL   tuning-plan modes per parameter tree
  aggregate_modules    masked, weighted module averaging over a client axis
  run                  run(config, workdir): train / resume a configured run
  build_experiment     the XR experiment (model, data, federation) of a config
  FedXRError, ConfigError, CheckpointError, DataError
"""
from fedxr_jax.algorithms import ALGORITHMS, Algorithm, make_algorithm
from fedxr_jax.core.plan import FROZEN, PERSONAL, SHARED
from fedxr_jax.core.problem import FederatedProblem
from fedxr_jax.core.round import (AggregationRule, ClientStates, Federation,
                                  ServerState, build_federation)
from fedxr_jax.core.trees import aggregate_modules
from fedxr_jax.errors import CheckpointError, ConfigError, DataError, FedXRError

__version__ = '0.1.0'


def __getattr__(name):
  # The host loop pulls in orbax, tqdm and matplotlib: import it on first use.
  if name == 'run':
    from fedxr_jax.training.loop import run
    return run
  if name == 'build_experiment':
    from fedxr_jax.training.experiment import build
    return build
  raise AttributeError(f'module fedxr_jax has no attribute {name!r}')
