"""Asynchronous server steps on a virtual clock: FedBuff and FedAsync.

C clients are always in flight, each in a slot of the server's `Buffer`
with the version (server steps) it started from, when it started and when
its upload arrives. One server step (one "round" of the training loop):

  arrivals   the K slots that arrive first (by arrival time, ties by client
             id) leave the buffer; the clock moves to the last of them
  staleness  tau = steps since the version a client started from; its
             coefficient c(tau) = s(tau) (FedBuff) or alpha s(tau) (FedAsync),
             s constant / polynomial / hinge (Xie et al. 2019)
  aggregate  each upload re-based on the current model x, `ClientUpdate`
             model x + c u: FedBuff's u = its delta (Nguyen et al. 2022),
             FedAsync's u = x_client - x; through the run's aggregator (the
             example-weighted mean by default) at the central server
  server     the run's server optimizer on the pseudo-gradient (FedBuff's
             server learning rate; sgd(1) for FedAsync's mixing)
  start      K new clients from the new model, trained at once (vmapped and
             chunked by `round.local`): their delta depends on their start
             model and data only; their download + compute + upload seconds
             come from the device and channel model (`timing`); they take
             the freed slots
Which clients start: the step's plan carries candidates (a pure function of
the seed and version, `plan.topo['candidates']`); in a random priority of
(seed, version), the first K not in flight, available ones first. The event
order is a pure function of (seed, clock): it never depends on the chunk
size or the device count. A picked client that is unavailable (battery,
time of day) sends nothing and takes no time: it arrives at once, weightless.

With K = C every step takes every client in flight, all started from the
current model: staleness 0, and with s constant the step is FedAvg's round
(tests/test_async.py). Personal trees and client states are written when a
client starts (it cannot start again until it arrives).
"""
import functools
from typing import Callable, NamedTuple, Optional

import flax
import jax
import jax.numpy as jnp

from fedxr_jax.core import aggregation
from fedxr_jax.core import client as client_lib
from fedxr_jax.core import rng
from fedxr_jax.core import round as round_lib
from fedxr_jax.core import round_metrics
from fedxr_jax.core import server as server_lib
from fedxr_jax.core import topology as topology_lib
from fedxr_jax.core import trees
from fedxr_jax.core import vectorize
from fedxr_jax.core.round_plan import RoundPlan
from fedxr_jax.core.state import ClientStates
from fedxr_jax.errors import ConfigError

KINDS = ('fedbuff', 'fedasync')
STALENESS = ('constant', 'polynomial', 'hinge')
PRIORITY_STREAM = 0xA5C   # the candidates' priority of a version (folded into the seed's key)
# What `client` reports besides its transforms' stats (it pops it from their sums).
UPLOAD_BITS = 'upload_bits'


@flax.struct.dataclass
class Jobs:
  """The in-flight clients, one slot each: every leaf [C, ...]."""
  client: jax.Array     # int32 id
  version: jax.Array    # int32 server steps done when it started (its start model)
  start: jax.Array      # f32 virtual seconds when it started
  arrival: jax.Array    # f32 virtual seconds when its upload reaches the server
  energy: jax.Array     # f32 joules the job costs its device
  device: jax.Array     # int32 device class
  payload: dict         # {role: tree}: its update (FedBuff) or sent model (FedAsync)
  weights: dict         # {role: prefix tree}: its module weights
  stats: dict           # {name: scalar}: its local stats, reported when it arrives
  report: dict          # {name: scalar}: what its update transforms report


@flax.struct.dataclass
class Buffer:
  """`ServerState.asynchrony`: the clock and the in-flight clients."""
  clock: jax.Array      # f32 virtual seconds of the last server step
  jobs: Jobs
  # [D + 1] seconds, per device class (last: all), summed over applied uploads:
  # waited = finished and waiting for the step that applied it; took = start -> that step.
  waited: jax.Array
  took: jax.Array


class AsyncSetup(NamedTuple):
  """What the server step closes over (static)."""
  round: round_lib.RoundSetup   # the synchronous stages; the local stage never streams
  kind: str                     # fedbuff | fedasync
  concurrency: int              # C clients in flight
  buffer: int                   # K arrivals per step (= clients started per step)
  staleness: str                # constant | polynomial | hinge
  a: float                      # polynomial exponent / hinge slope
  b: float                      # hinge: staleness without discount
  mixing: float                 # FedAsync's alpha
  # (source, ids [n], version, stats {name: [n]}, key) -> (seconds [n], joules [n])
  timing: Callable
  # Optional (source, ids [n]) -> [n] device class; `devices` names the classes.
  device_of: Optional[Callable] = None
  devices: tuple = ()


# ---------------------------------------------------------------------------
# Staleness.

def staleness_weight(kind: str, tau, a: float = 0.5, b: float = 4.0):
  """s(tau) of Xie et al. 2019: constant 1; polynomial (tau + 1)^-a; hinge 1
  for tau <= b, else 1 / (a (tau - b) + 1)."""
  tau = jnp.asarray(tau, jnp.float32)
  if kind == 'constant':
    return jnp.ones_like(tau)
  if kind == 'polynomial':
    return (tau + 1.0) ** (-a)
  if kind == 'hinge':
    return jnp.where(tau <= b, 1.0, 1.0 / (a * (tau - b) + 1.0))
  raise ConfigError(f'asynchrony.staleness={kind!r} is not one of {STALENESS}')


def coefficient(setup: AsyncSetup, tau):
  """How much of an upload a step applies: s(tau), times alpha for FedAsync."""
  s = staleness_weight(setup.staleness, tau, setup.a, setup.b)
  return setup.mixing * s if setup.kind == 'fedasync' else s


# ---------------------------------------------------------------------------
# The buffer.

def take(jobs: Jobs, slots) -> Jobs:
  return jax.tree.map(lambda x: x[slots], jobs)


def put(jobs: Jobs, slots, new: Jobs) -> Jobs:
  return jax.tree.map(lambda x, n: x.at[slots].set(n), jobs, new)


def arrivals(jobs: Jobs, k: int):
  """[k] slots of the first k arrivals (ties: the lower client id first)."""
  return jnp.lexsort((jobs.client, jobs.arrival))[:k]


def pick(setup: AsyncSetup, server, source, candidates, busy, n: int):
  """n ids (sorted) of `candidates` to start: none in `busy`, available ones
  first, in a random priority of (seed, version)."""
  m = candidates.shape[0]
  if n == m:   # every candidate starts (nothing else is in flight)
    return jnp.sort(candidates)
  key = jax.random.fold_in(rng.stream(rng.run_key(server.key), PRIORITY_STREAM), server.round)
  rank = jax.random.permutation(key, m)
  in_flight = jnp.any(candidates[:, None] == busy[None, :], axis=1)
  stage = setup.round.stage
  available = jax.vmap(
      lambda c: client_lib.round_data(stage, source, c, server.round)[1])(candidates)
  group = jnp.where(in_flight, 2, jnp.where(available, 0, 1))
  return jnp.sort(candidates[jnp.argsort(group * m + rank)[:n]])


def _sized(setup: round_lib.RoundSetup, n: int) -> round_lib.RoundSetup:
  """The round setup that trains n clients at once (a chunk larger than n: one vmap)."""
  chunk = setup.chunk_size if 0 < setup.chunk_size < n else 0
  return setup._replace(cohort_size=n, chunk_size=chunk)


def start_clients(setup: AsyncSetup, server, clients, frozen, source, candidates, busy,
                  now, n: int):
  """n clients start from `server.shared` at version server.round and time `now`.

  Returns (server with the algorithm's state, clients, their `Jobs` [n]).
  """
  sized = _sized(setup.round, n)
  ids = pick(setup, server, source, candidates, busy, n)
  out, sums = round_lib.local(sized, server, clients, frozen, source, RoundPlan(ids, {}))
  key = jax.random.fold_in(rng.round_key(rng.run_key(server.key), server.round),
                           round_lib.COSTS_STREAM)
  seconds, energy = setup.timing(source, ids, server.round, out['stats'], key)
  upload = out['upload']
  device = (jnp.zeros((n,), jnp.int32) if setup.device_of is None
            else setup.device_of(source, ids).astype(jnp.int32))
  now = jnp.asarray(now, jnp.float32)
  jobs = Jobs(client=ids, version=jnp.full((n,), server.round, jnp.int32),
              start=jnp.full((n,), now), arrival=now + seconds.astype(jnp.float32),
              energy=energy.astype(jnp.float32), device=device,
              payload=upload.model if setup.kind == 'fedasync' else upload.update,
              weights=upload.weights, stats=out['stats'], report=dict(upload.stats))
  server = server.replace(algorithm=round_lib.algorithm_server(sized, server, clients, out,
                                                                sums, ids))
  clients = ClientStates(
      personal=server_lib.scatter(clients.personal, ids, out['personal']),
      algorithm=server_lib.scatter(clients.algorithm, ids, out['algorithm']),
      transforms=server_lib.scatter(clients.transforms, ids, out['transforms']))
  return server, clients, jobs


# ---------------------------------------------------------------------------
# init / step / steps.

def init(setup: AsyncSetup, source, key):
  """The round's initial states, and C clients in flight from the initial model at t = 0.

  They are the candidates of version 0 (`candidates`): all of them start.
  """
  base = setup.round
  server, clients, frozen = round_lib.init(base, source, key)
  first = candidates(key, 0, base.population_size, setup.concurrency)
  server, clients, jobs = start_clients(setup, server, clients, frozen, source, first,
                                        None, 0.0, setup.concurrency)
  zeros = jnp.zeros((len(setup.devices) + 1,), jnp.float32)
  buffer = Buffer(clock=jnp.zeros((), jnp.float32), jobs=jobs, waited=zeros, took=zeros)
  return server.replace(asynchrony=buffer), clients, frozen


def candidates(key_data, version, population_size: int, concurrency: int):
  """The clients a version may start from: C distinct ids, a pure function of
  (seed, version) (the synchronous cohort sampler at cohort size C)."""
  return rng.sample_cohort(rng.run_key(key_data), version, population_size, concurrency)


def _rebased(setup: AsyncSetup, shared, got: Jobs, coeff) -> aggregation.ClientUpdate:
  """The arrivals' uploads on the current model: model x + c u (module docstring)."""
  scale = lambda x: coeff.reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype) * x
  if setup.kind == 'fedasync':
    update = jax.tree.map(lambda sent, x: scale(sent - x[None]), got.payload, shared)
  else:
    update = jax.tree.map(scale, got.payload)
  model = jax.tree.map(lambda u, x: x[None] + u, update, shared)
  return aggregation.ClientUpdate(model=model, update=update, weights=got.weights,
                                  client_id=got.client, stats=got.report)


def apply_arrivals(setup: AsyncSetup, server, got: Jobs, tau, round_key):
  """(new server, Aggregated, transform sums): the arrivals through aggregator and server."""
  base = setup.round
  aggregator = base.stage.aggregator
  upload = _rebased(setup, server.shared, got, coefficient(setup, tau))
  sums = (None if aggregator.stacked else
          vectorize.sum_over_clients(jax.vmap(aggregator.contribute)(upload)))
  uploads = topology_lib.Uploads(
      sums=sums, stacked=upload if aggregator.stacked else None,
      upload_bits=got.stats['upload_bits'], download_bits=got.stats['download_bits'])
  agg = base.topology.aggregate(server.shared, server.topology, uploads, {}, server.round,
                                aggregator, server.aggregator,
                                jax.random.fold_in(round_key, round_lib.AGGREGATE_STREAM))
  shared, opt_state = round_lib.server_update(base, server, agg, {'aggregate': sums})
  transform_sums = {k: jnp.sum(v) for k, v in got.report.items() if k != UPLOAD_BITS}
  new_server = server.replace(
      round=server.round + 1, shared=shared, opt_state=opt_state,
      topology=base.topology.after_server(shared, agg.state, agg.sync),
      aggregator=agg.aggregator_state,
      transforms=base.stage.transforms.update_server(
          server.transforms, transform_sums,
          jax.random.fold_in(round_key, round_lib.TRANSFORM_SERVER_STREAM)))
  return new_server, agg, transform_sums


def server_step(setup: AsyncSetup, server, clients, frozen, source, plan: RoundPlan,
                guard=None):
  """One server step (the module docstring): (server, clients, metrics)."""
  buf, k = server.asynchrony, setup.buffer
  round_key = rng.round_key(rng.run_key(server.key), server.round)
  slots = arrivals(buf.jobs, k)   # lexsort, not top_k: ties go to the lower client id
  got = take(buf.jobs, slots)
  now = jnp.maximum(buf.clock, jnp.max(got.arrival))
  tau = server.round - got.version
  new_server, agg, transform_sums = apply_arrivals(setup, server, got, tau, round_key)
  train = round_metrics.training_metrics(got.stats)
  if guard is not None:
    bad = round_metrics.diverged(guard, train['train/loss'], new_server.shared)
    train[round_metrics.DIVERGED] = bad.astype(jnp.float32)
    if guard.skip:   # the model stays; the arrivals are spent, the clock moves on
      new_server = trees.where_tree(bad, server.replace(round=new_server.round), new_server)
  freed = jnp.zeros((setup.concurrency,), bool).at[slots].set(True)
  busy = jnp.where(freed, -1, buf.jobs.client)
  new_server, clients, started = start_clients(setup, new_server, clients, frozen, source,
                                               plan.topo['candidates'], busy, now, k)
  waited, took = _idle(buf, got, now)
  buffer = Buffer(clock=now, jobs=put(buf.jobs, jnp.sort(slots), started),
                  waited=waited, took=took)
  metrics = {**train, **agg.metrics,
             **round_metrics.transform_metrics(transform_sums, k),
             **step_metrics(got, tau, now, buf.clock), **idle_metrics(setup, buffer)}
  return new_server.replace(asynchrony=buffer), clients, metrics


def server_steps(setup: AsyncSetup, server, clients, frozen, source, plans, guard=None):
  """S server steps of stacked plans in one call (`lax.scan`); metrics stacked [S]."""
  def body(carry, plan):
    server, clients, guard = carry
    server, clients, metrics = server_step(setup, server, clients, frozen, source, plan, guard)
    return (server, clients, round_metrics.next_guard(guard, metrics)), metrics
  (server, clients, _), metrics = jax.lax.scan(body, (server, clients, guard), plans)
  return server, clients, metrics


# ---------------------------------------------------------------------------
# Metrics.

def _idle(buf: Buffer, got: Jobs, now):
  """The buffer's idle sums after the arrivals (clients that took part only)."""
  took_part = got.stats['available']
  wait, span = (now - got.arrival) * took_part, (now - got.start) * took_part
  waited = buf.waited.at[got.device].add(wait).at[-1].add(jnp.sum(wait))
  took = buf.took.at[got.device].add(span).at[-1].add(jnp.sum(span))
  return waited, took


def step_metrics(got: Jobs, tau, now, clock) -> dict:
  """The step's clock, staleness, communication and energy (the arrivals'): the
  keys a synchronous round's cost model reports, its latency the step's length."""
  took_part = got.stats['available']
  tau = tau.astype(jnp.float32)
  zero = jnp.zeros((), jnp.float32)
  return {
      'time/virtual_s': now,
      'async/staleness_mean': jnp.sum(took_part * tau) / jnp.maximum(jnp.sum(took_part), 1.0),
      'async/staleness_max': jnp.max(jnp.where(took_part > 0, tau, 0.0)),
      'comm/uplink_bits': jnp.sum(got.stats['upload_bits']),
      'comm/downlink_bits': jnp.sum(got.stats['download_bits']),
      'comm/d2d_bits': zero, 'comm/backhaul_bits': zero,
      'cost/latency_s': now - clock,
      'cost/energy_j': jnp.sum(got.energy),
      'cost/max_device_energy_j': jnp.max(got.energy),
      'cost/max_compute_s': jnp.max(got.stats['compute_s']),
  }


def idle_metrics(setup: AsyncSetup, buffer: Buffer) -> dict:
  """Share of a client's time from start to its update's step spent finished and
  waiting, over the run so far: overall and per device class."""
  ratio = buffer.waited / jnp.maximum(buffer.took, 1e-12)
  out = {'async/idle_fraction': ratio[-1]}
  out.update({f'async/idle_fraction/{name}': ratio[i] for i, name in enumerate(setup.devices)})
  return out


# ---------------------------------------------------------------------------
# Building.

def _bound(fn, setup):
  @functools.wraps(fn)
  def bound(*args, **kwargs):
    return fn(setup, *args, **kwargs)
  return bound


def check(setup: AsyncSetup) -> None:
  """What the settings alone cannot be (one ConfigError line)."""
  base, c, k = setup.round, setup.concurrency, setup.buffer
  if setup.kind not in KINDS:
    raise ConfigError(f'asynchrony.kind={setup.kind!r} is not one of {("none",) + KINDS}')
  staleness_weight(setup.staleness, 0)
  if not 1 <= k <= c:
    raise ConfigError(f'asynchrony.buffer={k} must be in [1, concurrency={c}]')
  if c > base.population_size:
    raise ConfigError(f'asynchrony.concurrency={c} clients in flight exceed '
                      f'population_size={base.population_size}')
  if setup.kind == 'fedasync' and k != 1:
    raise ConfigError(f'asynchrony.kind=fedasync steps on every arrival (buffer=1), got '
                      f'buffer={k}; use kind=fedbuff for K arrivals a step')
  if not 0.0 < setup.mixing <= 1.0:
    raise ConfigError(f'asynchrony.mixing={setup.mixing} must be in (0, 1]')
  if setup.a < 0 or setup.b < 0:
    raise ConfigError(f'asynchrony.staleness_a={setup.a} and staleness_b={setup.b} must be '
                      '>= 0')
  for n in sorted({c, k}):
    vectorize.check_layout(n, _sized(base, n).chunk_size, base.mesh)


def build(federation: round_lib.Federation, **settings) -> round_lib.Federation:
  """The asynchronous federation of a synchronous one: the same stages, `init`
  with C clients in flight, `round` / `rounds` one / S server steps.

  settings: `AsyncSetup`'s fields but `round` (kind, concurrency, buffer,
  staleness, a, b, mixing, timing, device_of, devices). `setup` becomes the
  AsyncSetup; `evaluate` is the synchronous one (the global model).
  """
  base = federation.setup
  base = base._replace(stage=base.stage._replace(streams=False))
  setup = AsyncSetup(round=base, **settings)
  check(setup)
  return federation._replace(init=_bound(init, setup), round=_bound(server_step, setup),
                             rounds=_bound(server_steps, setup), setup=setup)
