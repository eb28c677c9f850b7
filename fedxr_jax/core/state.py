"""The state a federated run carries from round to round (checkpointed)."""
from typing import Any

import flax
import jax


@flax.struct.dataclass
class ServerState:
  round: jax.Array   # int32 scalar: rounds completed
  # uint32 key data of the run's seed (`rng.key_data`): every key of a round
  # derives from it, so runs of two seeds are one compiled program.
  key: jax.Array
  shared: dict       # {role: tree} global copies of the shared trees
  opt_state: Any     # server optimizer state over `shared`
  topology: Any      # topology state (edge models, client models, ...)
  algorithm: Any     # algorithm server state (e.g. SCAFFOLD's c)
  aggregator: Any = ()   # aggregator state (e.g. centered clipping's momentum)
  transforms: Any = ()   # update transforms' server state (e.g. an adaptive clip norm)
  # Hyperparameters held as data, not constants of the compiled round:
  # {'client_optimizer': {name: f32}}, written into every client's fresh
  # optimizer state (`core.local`); another value reuses the executable.
  hyperparams: Any = ()
  # Asynchronous runs only (`core.asynchronous.Buffer`): the virtual clock and
  # the in-flight clients; () in synchronous rounds.
  asynchrony: Any = ()


@flax.struct.dataclass
class ClientStates:
  personal: dict     # {role: tree} personal trees stacked over the population
  algorithm: Any     # algorithm client states stacked over the population
  transforms: Any = ()   # update transforms' client states, stacked likewise
