"""Wireless channel: path loss, Rayleigh fading, Shannon rate, airtime, energy.

Defaults follow the M3T-FFM setting (DESIGN §4): beta0 = -30 dB at 1 m,
path-loss exponent 3, noise -174 dBm/Hz, 1 MHz uplink, 8 MHz D2D.
"""
import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Channel:
  path_loss_db_at_1m: float = -30.0
  path_loss_exponent: float = 3.0
  noise_dbm_per_hz: float = -174.0
  uplink_bandwidth_hz: float = 1e6
  downlink_bandwidth_hz: float = 10e6
  d2d_bandwidth_hz: float = 8e6
  server_tx_power_dbm: float = 30.0   # base station / edge server
  backhaul_bps: float = 1e9           # wired edge server <-> cloud


def dbm_to_watts(dbm):
  return 10.0 ** ((jnp.asarray(dbm) - 30.0) / 10.0)


def rayleigh_power_gain(key, shape):
  """|h|^2 of Rayleigh fading: exponential with mean 1."""
  return jax.random.exponential(key, shape)


def shannon_rate(channel: Channel, distance_m, bandwidth_hz, tx_power_dbm, gain):
  """Bits/s of a link: B log2(1 + P beta0 d^-alpha |h|^2 / (N0 B)).

  Distances below 1 m are taken as 1 m (the path-loss reference).
  """
  beta0 = 10.0 ** (channel.path_loss_db_at_1m / 10.0)
  noise = dbm_to_watts(channel.noise_dbm_per_hz) * bandwidth_hz
  d = jnp.maximum(distance_m, 1.0)
  snr = dbm_to_watts(tx_power_dbm) * beta0 * d ** (-channel.path_loss_exponent) * gain / noise
  return bandwidth_hz * jnp.log2(1.0 + snr)


def airtime(bits, rate_bps):
  """Seconds to send `bits` at `rate_bps` (0 bits take 0 s at any rate)."""
  return jnp.where(bits > 0, bits / jnp.maximum(rate_bps, 1e-9), 0.0)
