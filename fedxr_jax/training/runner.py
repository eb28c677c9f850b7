"""The compiled calls of L >= 1 lanes that share one program.

L = 1 is a run: `federation.round` (or `rounds`, K rounds in one `lax.scan`).
L > 1 vmaps that same function over a leading lane axis of states, plans and
guards (the seed is in the server state, so seeds are lanes too); a lane's
data (its world) and frozen trees are stacked only where lanes differ.

The host boundary is explicit: plans (a pure function of the seed and the
round) are made on the host and `device_put` before the call that takes
them, guards likewise; metrics come back in one `jax.device_get`. The
population's client state [P, ...] is sharded over the mesh's 'clients'
axis where the mesh divides P, like the cohort; server state is replicated.
Each call length is compiled once, ahead of time, and memory-checked.
"""
import functools
import time
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec, SingleDeviceSharding

from fedxr_jax.compose import experiment as experiment_lib
from fedxr_jax.core import hosts
from fedxr_jax.core import round_plan
from fedxr_jax.core import trees
from fedxr_jax.core import vectorize
from fedxr_jax.evaluation import evaluator as evaluator_lib
from fedxr_jax.training import checks
from fedxr_jax.training import guards


class Prepared(NamedTuple):
  """A call's host-made inputs, already on the device."""
  first: int
  k: int
  plans: object        # RoundPlan (stacked [K] for K > 1, [L] for L > 1)
  stats: list          # per lane: [K] host-side graph statistics
  cohorts: list        # per lane: the last round's cohort (numpy)


def _same(trees_):
  """Whether every tree of `trees_` is bit-identical to the first."""
  first = jax.tree.leaves(trees_[0])
  return all(all(np.array_equal(np.asarray(a), np.asarray(b))
                 for a, b in zip(first, jax.tree.leaves(t))) for t in trees_[1:])


class Runner:
  """Compiled calls over the lanes' experiments (`compose.experiment.for_lane`)."""

  def __init__(self, exps, per_step: int, calls: Optional[dict] = None, program=None):
    """`calls`: executables by call length to share with other runners of one
    lane of the same program (lanes run one after another); `program`: the
    config the program was built with (default: the first lane's)."""
    self.exps, self.lanes = list(exps), len(exps)
    exp = self.exps[0]
    self.fed, self.config, self.per_step = exp.federation, exp.config, per_step
    mesh = exp.mesh
    device = jax.devices()[0]
    self.replicated = (SingleDeviceSharding(device) if mesh is None
                       else NamedSharding(mesh, PartitionSpec()))
    population = self.config.population_size
    self.client_sharding = (NamedSharding(mesh, PartitionSpec(vectorize.CLIENT_AXIS))
                            if mesh is not None and population % mesh.size == 0
                            else self.replicated)
    # Lanes of one seed share their world (and, unless trained, frozen trees).
    self.world_axis = None if len({e.config.seed for e in self.exps}) == 1 else 0
    self._init = jax.jit(self.fed.init, out_shardings=self.replicated)
    self.frozen_axis = None
    self.program = exp.config if program is None else program
    self._calls = {} if calls is None else calls
    # One evaluation program for every lane (evaluation.Evaluator takes it).
    self.evaluate = jax.jit(self.fed.evaluate, static_argnames=evaluator_lib.STATIC)

  # -- state ----------------------------------------------------------------

  def _lane_initial(self, exp):
    server, clients, frozen = self._init(*self._put((exp.world, exp.key)))
    if not experiment_lib.same_data_keys(exp.config, self.program):
      server = experiment_lib.lane_server(exp, server)
    return server, clients, frozen

  def initial(self):
    """(server, clients, frozen) of round 0, stacked [L] for L > 1."""
    states = [self._lane_initial(e) for e in self.exps]
    if self.lanes == 1:
      return self.place(states[0])
    frozens = [f for _, _, f in states]
    self.frozen_axis = None if _same(frozens) else 0
    server = trees_stack([s for s, _, _ in states])
    clients = trees_stack([c for _, c, _ in states])
    frozen = frozens[0] if self.frozen_axis is None else trees_stack(frozens)
    return self.place((server, clients, frozen))

  def restored(self, lane_states, frozen):
    """The state from each lane's restored {'server', 'clients'} and the initial frozen trees."""
    if self.lanes == 1:
      state = lane_states[0]
      return self.place((state['server'], state['clients'], frozen))
    return self.place((trees_stack([s['server'] for s in lane_states]),
                       trees_stack([s['clients'] for s in lane_states]), frozen))

  def place(self, state):
    """Every state the same way (committed; clients sharded): one program, one cache key."""
    server, clients, frozen = state
    return (jax.device_put(server, self.replicated),
            jax.device_put(clients, self.client_sharding),
            jax.device_put(frozen, self.replicated))

  def lane(self, state, i: int):
    """Lane i's (server, clients, frozen) of a stacked state (the state itself for L = 1)."""
    if self.lanes == 1:
      return state
    server, clients, frozen = state
    return (_take(server, i), _take(clients, i),
            frozen if self.frozen_axis is None else _take(frozen, i))

  def _put(self, tree):
    return jax.device_put(tree, self.replicated)

  # -- plans ----------------------------------------------------------------

  def prepare(self, first: int, k: int) -> Prepared:
    """Rounds first+1..first+k's plans of every lane, made on the host and put on the device."""
    per_lane, stats, cohorts = [], [], []
    for exp in self.exps:
      plans, graph = zip(*[exp.plan(r) for r in range(first, first + k)])
      per_lane.append(plans[0] if k == 1 else round_plan.stack(plans))
      stats.append(list(graph))
      cohorts.append(np.asarray(plans[-1].cohort))
    arg = per_lane[0] if self.lanes == 1 else jax.tree.map(lambda *xs: np.stack(xs), *per_lane)
    return Prepared(first, k, self._put(arg), stats, cohorts)

  def guard(self, lane_rows):
    """Each lane's divergence guard of the next call, on the device."""
    made = [guards.make(e.config, rows) for e, rows in zip(self.exps, lane_rows)]
    return self._put(made[0] if self.lanes == 1 else trees_stack(made))

  # -- calls ----------------------------------------------------------------

  def _function(self, k: int):
    fn = self.fed.round if k == 1 else self.fed.rounds
    if self.lanes == 1:
      return fn
    return jax.vmap(fn, in_axes=(0, 0, self.frozen_axis, self.world_axis, 0, 0))

  def source(self):
    """The lanes' data: one world, or stacked [L] where seeds differ."""
    if not hasattr(self, '_source'):
      worlds = [e.world for e in self.exps]
      self._source = self._put(worlds[0] if self.world_axis is None else trees_stack(worlds))
    return self._source

  def is_compiled(self, k: int) -> bool:
    return k in self._calls

  def compiled(self, k: int, args):
    """The executable of k-round calls (compiled once; None time when cached)."""
    if k in self._calls:
      return self._calls[k], None
    t0 = time.perf_counter()
    out = (self.replicated, self.client_sharding, self.replicated)
    fn = jax.jit(self._function(k), donate_argnums=(0, 1), out_shardings=out)
    compiled = fn.lower(*args).compile()
    checks.call_memory(compiled, self.config, self.per_step * self.lanes,
                       chunk_size=self.fed.chunk_size)
    self._calls[k] = compiled
    return compiled, time.perf_counter() - t0

  def call(self, state, prepared: Prepared, guard):
    """Dispatches one call; (state, metrics on the device, compile seconds or None)."""
    server, clients, frozen = state
    args = (server, clients, frozen, self.source(), prepared.plans, guard)
    compiled, compile_s = self.compiled(prepared.k, args)
    server, clients, metrics = compiled(*args)
    return (server, clients, frozen), metrics, compile_s

  def rows(self, metrics, prepared: Prepared, seconds: float, compile_s) -> list:
    """Per lane, the call's rows from its fetched metrics (numpy)."""
    # Every metric as [L, K]: a lane axis only for L > 1, a round axis only for K > 1.
    shaped = {key: np.reshape(v, (self.lanes, prepared.k)) for key, v in metrics.items()}
    out = []
    for i, exp in enumerate(self.exps):
      lane = []
      for j in range(prepared.k):
        rnd = prepared.first + j + 1
        row = {'round': rnd, **prepared.stats[i][j],
               **{key: float(v[i, j]) for key, v in shaped.items()},
               **exp.host_metrics(rnd), 'time/round_s': seconds / prepared.k}
        if j == 0 and compile_s is not None:
          row['time/compile_s'] = compile_s
        lane.append(row)
      out.append(lane)
    return out


@functools.partial(jax.jit, static_argnums=1)
def _take(tree, i: int):
  """Lane i of a stacked tree: one compiled slice (the index is static, no transfer)."""
  return jax.tree.map(lambda x: x[i], tree)


def trees_stack(items):
  """Trees stacked along a new leading (lane) axis (host trees stay on the host)."""
  stack = lambda *xs: (np.stack(xs) if isinstance(xs[0], (np.ndarray, np.generic))
                       else jnp.stack(xs))
  return jax.tree.map(stack, *items)


def fetch(metrics):
  """The call's metrics on the host: its one transfer back."""
  return hosts.fetch(metrics)
