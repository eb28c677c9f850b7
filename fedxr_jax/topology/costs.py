"""Communication, latency and energy of a round, from the same topology data.

Per client: `payload` = bits of the shared modules it holds (what it sends
and receives), `compute_s` = its local steps x FLOPs per step / its FLOP/s.
Links: uplink/downlink to the base station (or the client's edge server),
D2D along the round's live graph edges, a wired backhaul edge <-> cloud.
Every link's rate is Shannon over path loss and Rayleigh fading drawn from
the round key. Transmissions in one phase run in parallel (FDMA, no
interference); a phase lasts as long as its slowest link, so stragglers set
the round's latency. Energy is what devices spend: compute power x compute
time + transmit power x airtime (receiving is not charged).
"""
from typing import Callable

import jax
import jax.numpy as jnp

from fedxr_jax.topology import channel as channel_lib


def make_cost_model(kind: str, channel: channel_lib.Channel, *, gamma: int = 1,
                    k2: int = 1, area_m: float = 100.0) -> Callable:
  """Returns costs(clients, topo, key, round_idx) -> {metric: scalar}.

  `clients` holds [C] arrays: payload_bits, model_bits (scalar), compute_s,
  compute_power_w, tx_power_dbm. `topo` holds positions [C, 2] and the
  kind's arrays (edges, clusters, representatives, tree parents).
  """
  base_station = jnp.array([area_m / 2, area_m / 2])

  def costs(clients, topo, key, round_idx):
    k_up, k_down, k_d2d = jax.random.split(key, 3)
    pos = topo['positions']
    num = pos.shape[0]
    payload, model_bits = clients['payload_bits'], clients['model_bits']
    tx = clients['tx_power_dbm']
    compute_s = clients['compute_s']
    energy = clients['compute_power_w'] * compute_s
    station = (topo['edge_positions'][topo['cluster']] if kind == 'hierarchical'
               else jnp.broadcast_to(base_station, pos.shape))
    dist = jnp.linalg.norm(pos - station, axis=-1)
    up_rate = channel_lib.shannon_rate(
        channel, dist, channel.uplink_bandwidth_hz, tx,
        channel_lib.rayleigh_power_gain(k_up, (num,)))
    down_rate = channel_lib.shannon_rate(
        channel, dist, channel.downlink_bandwidth_hz, channel.server_tx_power_dbm,
        channel_lib.rayleigh_power_gain(k_down, (num,)))
    zero = jnp.zeros((), jnp.float32)
    out = {'comm/uplink_bits': zero, 'comm/downlink_bits': zero,
           'comm/d2d_bits': zero, 'comm/backhaul_bits': zero}

    if kind in ('centralized', 'hierarchical'):
      t_up = channel_lib.airtime(payload, up_rate)
      t_down = channel_lib.airtime(payload, down_rate)
      energy = energy + channel_lib.dbm_to_watts(tx) * t_up
      latency = jnp.max(t_down + compute_s + t_up)
      out['comm/uplink_bits'] = jnp.sum(payload)
      out['comm/downlink_bits'] = jnp.sum(payload)
      if kind == 'hierarchical':
        sync = (round_idx + 1) % k2 == 0
        edges = topo['edge_positions'].shape[0]
        backhaul = jnp.where(sync, 2.0 * edges * model_bits, 0.0)
        out['comm/backhaul_bits'] = backhaul
        latency = latency + jnp.where(sync, 2.0 * model_bits / channel.backhaul_bps, 0.0)

    elif kind in ('semi', 'decentralized'):
      s, r, live = topo['senders'], topo['receivers'], topo['edge_mask']
      d2d_rate = channel_lib.shannon_rate(
          channel, jnp.linalg.norm(pos[s] - pos[r], axis=-1),
          channel.d2d_bandwidth_hz, tx[s],
          channel_lib.rayleigh_power_gain(k_d2d, s.shape))
      edge_bits = jnp.where(live, payload[s], 0.0)
      t_edge = channel_lib.airtime(edge_bits, d2d_rate)
      tx_time = jax.ops.segment_sum(t_edge, s, num_segments=num)
      energy = energy + gamma * channel_lib.dbm_to_watts(tx) * tx_time
      out['comm/d2d_bits'] = gamma * jnp.sum(edge_bits)
      latency = jnp.max(compute_s) + gamma * jnp.max(t_edge, initial=0.0)
      if kind == 'semi':
        reps = topo['representatives']
        rep_live = topo['cluster_live']
        t_up = jnp.where(rep_live, channel_lib.airtime(payload[reps], up_rate[reps]), 0.0)
        energy = energy.at[reps].add(channel_lib.dbm_to_watts(tx[reps]) * t_up)
        t_down = channel_lib.airtime(payload, down_rate)
        latency = latency + jnp.max(t_up) + jnp.max(t_down)
        out['comm/uplink_bits'] = jnp.sum(jnp.where(rep_live, payload[reps], 0.0))
        out['comm/downlink_bits'] = jnp.sum(payload)

    elif kind == 'tree':
      # Aggregates flow child -> parent up the spanning forest, each root
      # uplinks its component's aggregate, and the model comes back down.
      parent, depth = topo['parent'], topo['depth']
      child = parent >= 0
      par = jnp.where(child, parent, jnp.arange(num))
      hop_dist = jnp.linalg.norm(pos - pos[par], axis=-1)
      hop_rate = channel_lib.shannon_rate(
          channel, hop_dist, channel.d2d_bandwidth_hz, tx,
          channel_lib.rayleigh_power_gain(k_d2d, (num,)))
      hop_bits = jnp.where(child, model_bits, 0.0)
      t_hop = channel_lib.airtime(hop_bits, hop_rate)   # same rate both ways
      root_bits = jnp.where(child, 0.0, model_bits)
      t_root_up = channel_lib.airtime(root_bits, up_rate)
      t_root_down = channel_lib.airtime(root_bits, down_rate)
      watts = channel_lib.dbm_to_watts(tx)
      energy = energy + watts * (t_hop + t_root_up)
      energy = energy + jax.ops.segment_sum(watts[par] * t_hop, par, num_segments=num)
      hops = jnp.max(depth).astype(jnp.float32)
      latency = (jnp.max(compute_s) + 2 * hops * jnp.max(t_hop) + jnp.max(t_root_up)
                 + jnp.max(t_root_down))
      out['comm/d2d_bits'] = 2.0 * jnp.sum(hop_bits)
      out['comm/uplink_bits'] = jnp.sum(root_bits)
      out['comm/downlink_bits'] = jnp.sum(root_bits)
    else:
      raise ValueError(f'unknown topology kind {kind!r}')

    out['cost/latency_s'] = latency
    out['cost/energy_j'] = jnp.sum(energy)
    out['cost/max_device_energy_j'] = jnp.max(energy)
    out['cost/max_compute_s'] = jnp.max(compute_s)
    return out

  return costs
