"""Communication, latency and energy of a round: the pieces every topology uses.

Per client: the bits it uploads (the shared modules it holds) and downloads
(every shared module it trains with), `compute_s` = its local steps x FLOPs
per step / its FLOP/s. Links: uplink/downlink to the base station (or the
client's edge server), D2D along the round's live graph edges, a wired
backhaul edge <-> cloud. Every link's rate is Shannon over path loss and
Rayleigh fading drawn from the round key. Transmissions in one phase run in
parallel (FDMA, no interference); a phase lasts as long as its slowest link,
so stragglers set the round's latency. Energy is what devices spend:
compute power x compute time + transmit power x airtime (receiving is not
charged). Each topology's `costs` (in its own file) composes these.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp

from fedxr_jax.core import trees
from fedxr_jax.topology import channel as channel_lib

LINKS = ('uplink', 'downlink', 'd2d', 'backhaul')


class Radio(NamedTuple):
  """A round's cellular links and the devices' compute, per client [C]."""
  up_rate: jax.Array
  down_rate: jax.Array
  d2d_key: jax.Array
  tx_power_dbm: jax.Array
  compute_s: jax.Array
  energy: jax.Array     # compute energy so far; topologies add airtime


def cellular(channel: channel_lib.Channel, devices: dict, positions, station, key) -> Radio:
  """Up- and downlink rates to `station` ([C, 2] or [2]) and compute energy."""
  k_up, k_down, k_d2d = jax.random.split(key, 3)
  num = positions.shape[0]
  tx, compute_s = devices['tx_power_dbm'], devices['compute_s']
  dist = jnp.linalg.norm(positions - station, axis=-1)
  up_rate = channel_lib.shannon_rate(
      channel, dist, channel.uplink_bandwidth_hz, tx,
      channel_lib.rayleigh_power_gain(k_up, (num,)))
  down_rate = channel_lib.shannon_rate(
      channel, dist, channel.downlink_bandwidth_hz, channel.server_tx_power_dbm,
      channel_lib.rayleigh_power_gain(k_down, (num,)))
  return Radio(up_rate, down_rate, k_d2d, tx, compute_s,
               devices['compute_power_w'] * compute_s)


def d2d_rates(channel: channel_lib.Channel, radio: Radio, positions, senders, receivers):
  """Rate of every (padded) D2D edge sender -> receiver."""
  return channel_lib.shannon_rate(
      channel, jnp.linalg.norm(positions[senders] - positions[receivers], axis=-1),
      channel.d2d_bandwidth_hz, radio.tx_power_dbm[senders],
      channel_lib.rayleigh_power_gain(radio.d2d_key, senders.shape))


def model_bits(shared: dict) -> jax.Array:
  """Bits of every shared tree (a full model, as relayed along a tree)."""
  return jnp.float32(8.0 * sum(trees.tree_bytes(shared[r]) for r in shared))


def summary(bits: dict, latency, energy, compute_s) -> dict:
  """The round's comm/ and cost/ metrics; links a topology did not use are 0."""
  zero = jnp.zeros((), jnp.float32)
  out = {f'comm/{link}_bits': bits.get(link, zero) for link in LINKS}
  out['cost/latency_s'] = latency
  out['cost/energy_j'] = jnp.sum(energy)
  out['cost/max_device_energy_j'] = jnp.max(energy)
  out['cost/max_compute_s'] = jnp.max(compute_s)
  return out


def gossip(channel: channel_lib.Channel, devices: dict, edge_bits, topo, key, gamma,
           area_m: float) -> tuple:
  """(radio, latency, energy) of local compute, then gamma D2D exchange steps.

  edge_bits [E]: what each (padded) directed edge carries per step; D2D is
  counted per live edge per step (unicast).
  """
  pos = topo['positions']
  station = jnp.broadcast_to(jnp.array([area_m / 2] * 2), pos.shape)
  radio = cellular(channel, devices, pos, station, key)
  s = topo['senders']
  t_edge = channel_lib.airtime(edge_bits, d2d_rates(channel, radio, pos, s, topo['receivers']))
  tx_time = jax.ops.segment_sum(t_edge, s, num_segments=pos.shape[0])
  energy = radio.energy + gamma * channel_lib.dbm_to_watts(radio.tx_power_dbm) * tx_time
  latency = jnp.max(radio.compute_s) + gamma * jnp.max(t_edge, initial=0.0)
  return radio, latency, energy
