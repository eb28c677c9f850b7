"""The `asynchrony` block: FedBuff / FedAsync server steps in place of rounds.

  --config.asynchrony.kind=fedbuff --config.asynchrony.buffer=8

`make` turns a synchronous federation into the asynchronous one of
`core.asynchronous` (one loop "round" = one server step), with the clock of
the round's cost model: a client's seconds are its download, its compute
(local steps x FLOPs per step / its device's FLOP/s, after stragglers) and
its upload, at the Shannon rates of its position under Rayleigh fading
(`topology.centralized.star_costs`, the same arithmetic as a synchronous
round's `cost/latency_s`). `planning` makes a step's plan on the host: the
candidates its starts are drawn from. What does not combine yet is refused
in one line (`check`). `add_virtual_time` gives synchronous rows the same
clock: `time/virtual_s`, the sum of their rounds' `cost/latency_s`.
"""
import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.core import asynchronous
from fedxr_jax.core import round_plan
from fedxr_jax.core import trees
from fedxr_jax.data import shift
from fedxr_jax.errors import ConfigError
from fedxr_jax.topology import centralized
from fedxr_jax.topology import channel as channel_lib

VIRTUAL = 'time/virtual_s'
LATENCY = 'cost/latency_s'


@dataclasses.dataclass(frozen=True)
class Settings:
  """The `asynchrony` block. kind: none (synchronous rounds) | fedbuff
  (Nguyen et al. 2022) | fedasync (Xie et al. 2019). concurrency: C clients
  in flight (0: cohort_size). buffer: K arrivals a server step takes, and
  clients it starts (0: C // 4 for fedbuff; fedasync is 1). staleness:
  constant | polynomial ((tau + 1)^-staleness_a) | hinge (1 up to
  staleness_b, then 1 / (staleness_a (tau - staleness_b) + 1)). mixing:
  FedAsync's alpha. The server learning rate is server_optimizer's."""
  kind: str = 'none'
  concurrency: int = 0
  buffer: int = 0
  staleness: str = 'polynomial'
  staleness_a: float = 0.5
  staleness_b: float = 4.0
  mixing: float = 0.6


def enabled(config) -> bool:
  """Whether `config` asks for server steps (a config without the block: no)."""
  block = config.get('asynchrony') if hasattr(config, 'get') else None
  return block is not None and block.get('kind', 'none') != 'none'


def settings(config) -> Settings:
  s = shift.from_block(Settings, config.get('asynchrony'), 'asynchrony')
  kinds = ('none',) + asynchronous.KINDS
  if s.kind not in kinds:
    raise ConfigError(f'asynchrony.kind={s.kind!r} is not one of {kinds}')
  return s


def sizes(config) -> tuple:
  """(C, K): clients in flight, arrivals a step."""
  s = settings(config)
  c = s.concurrency or config.cohort_size
  if c < 1 or s.buffer < 0:
    raise ConfigError(f'asynchrony.concurrency={s.concurrency} and buffer={s.buffer} must '
                      'be >= 1 (0: the default)')
  k = s.buffer or (1 if s.kind == 'fedasync' else max(1, c // 4))
  return c, k


def planning(config) -> tuple:
  """(sample_cohort, layout) of a seed's server steps (`Experiment.plan`).

  sample_cohort(v): the candidates of version v (who may have trained into
  the model after v steps: evaluation's members); a step r starts version
  r + 1, so its layout carries the candidates of r + 1.
  """
  c, _ = sizes(config)
  sample = round_plan.cohort_sampler(config.seed, config.population_size, c)
  return sample, lambda round_idx, cohort: ({'candidates': sample(round_idx + 1)}, {})


def check(config, federation, privacy) -> None:
  """What does not combine with server steps yet: one ConfigError line."""
  kind = settings(config).kind
  topology = federation.topology
  if topology.kind != 'centralized':
    raise ConfigError(f'not supported yet: asynchrony.kind={kind} with topology.kind='
                      f'{topology.kind} (a server step takes each arrival at one central '
                      'server)')
  algorithm = federation.setup.stage.algorithm
  if algorithm.needs_server or algorithm.client_report is not None:
    raise ConfigError(f'not supported yet: asynchrony.kind={kind} with algorithm.name='
                      f'{algorithm.name} (its server state assumes every client of a round '
                      'starts from one model)')
  if privacy is not None:
    raise ConfigError(f'not supported yet: asynchrony.kind={kind} with differential privacy '
                      '(the accountant charges sampled rounds; clients that start at their '
                      'own times are another sampling event)')


def check_memory(config, federation) -> None:
  """The buffer holds C updates of the shared trees: refused above memory_budget_gb."""
  c, _ = sizes(config)
  shared = jax.eval_shape(lambda: federation.setup.initial_params(jax.random.key(0)))
  need = c * sum(trees.tree_bytes(shared[r]) for r in federation.setup.stage.shared_roles)
  if config.memory_budget_gb and need > config.memory_budget_gb * 1e9:
    raise ConfigError(f'asynchrony.concurrency={c} buffers {c} updates of the shared trees '
                      f'({need / 1e9:.3g} GB) but memory_budget_gb is '
                      f'{config.memory_budget_gb:g}; lower asynchrony.concurrency')


def positions(problem, source, ids, version):
  """[n, 2] where the clients are at a version (the centre without a position model)."""
  if problem.client_position is None:
    return jnp.full((ids.shape[0], 2), problem.area_m / 2, jnp.float32)
  return jax.vmap(lambda c: problem.client_position(source, c, version))(ids).astype(
      jnp.float32)


def timing(channel: channel_lib.Channel, problem):
  """(source, ids, version, stats, key) -> (seconds, joules) per client, as a round costs.

  star_costs' radio and energy; each client's download + compute + upload
  (a synchronous round's latency is the largest of these).
  """
  station = jnp.full((2,), problem.area_m / 2, jnp.float32)

  def fn(source, ids, version, stats, key):
    pos = positions(problem, source, ids, version)
    bits = {'uplink': stats['upload_bits'], 'downlink': stats['download_bits']}
    radio, _, energy = centralized.star_costs(channel, stats, bits, pos,
                                              jnp.broadcast_to(station, pos.shape), key)
    seconds = (channel_lib.airtime(bits['downlink'], radio.down_rate) + radio.compute_s
               + channel_lib.airtime(bits['uplink'], radio.up_rate))
    return seconds, energy

  return fn


def make(config, federation, problem, spec, privacy=None):
  """The asynchronous federation of `config.asynchrony` (after every check)."""
  s = settings(config)
  check(config, federation, privacy)
  check_memory(config, federation)
  c, k = sizes(config)
  names = tuple(getattr(spec, 'devices', ()) or ())
  device_of = None
  if problem.client_device is not None and names:
    device_of = lambda source, ids: jax.vmap(lambda i: problem.client_device(source, i))(ids)
  else:
    names = ()
  return asynchronous.build(
      federation, kind=s.kind, concurrency=c, buffer=k, staleness=s.staleness,
      a=float(s.staleness_a), b=float(s.staleness_b), mixing=float(s.mixing),
      timing=timing(channel_lib.Channel(**config.channel.to_dict()), problem),
      device_of=device_of, devices=names)


def not_data(config) -> Optional[str]:
  """Why no key is data of an asynchronous program (None: synchronous)."""
  if not enabled(config):
    return None
  return ('asynchronous runs train their first in-flight clients in init, with the '
          "program's hyperparameters (compose/asynchrony.py)")


def add_virtual_time(row: dict, before) -> None:
  """Gives a synchronous row `time/virtual_s`: the sum of `cost/latency_s` over
  rounds 1..its round (`before`: the rows of earlier rounds). A server step's
  row has it already; a row without latency gets none."""
  if VIRTUAL in row or row.get(LATENCY) is None:
    return
  previous = next((r for r in reversed(before) if r.get('round') == row['round'] - 1), None)
  if previous is not None and previous.get(VIRTUAL) is not None:
    base = previous[VIRTUAL]
  else:
    base = float(np.sum([r[LATENCY] for r in before
                         if r.get('round', 0) < row['round'] and r.get(LATENCY) is not None]))
  row[VIRTUAL] = base + row[LATENCY]
