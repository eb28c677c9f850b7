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
  build_experiment     the XR experiment (model, data, federation) of a config
  FedXRError, ConfigError, CheckpointError, DataError
"""
from fedxr_jax.core.aggregation import Aggregator, weighted_mean
from fedxr_jax.core.algorithm import Algorithm, RunFacts
from fedxr_jax.core.plan import FROZEN, PERSONAL, SHARED
from fedxr_jax.core.problem import FederatedProblem
from fedxr_jax.core.round import Federation, build_federation
from fedxr_jax.core.round_plan import RoundPlan
from fedxr_jax.core.state import ClientStates, ServerState
from fedxr_jax.core.topology import Topology
from fedxr_jax.core.transforms import UpdateTransform, chain
from fedxr_jax.core.trees import aggregate_modules
from fedxr_jax.errors import CheckpointError, ConfigError, DataError, FedXRError

__version__ = '0.1.0'


def __getattr__(name):
  # The host loop pulls in orbax, tqdm and matplotlib: import it on first use.
  if name == 'run':
    from fedxr_jax.training.loop import run
    return run
  if name == 'build_experiment':
    from fedxr_jax.compose.experiment import build
    return build
  raise AttributeError(f'module fedxr_jax has no attribute {name!r}')
