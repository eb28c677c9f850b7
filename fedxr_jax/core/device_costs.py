"""What a round costs a device: the bits it moves and the seconds it computes.

FLOPs come from the model (XLA's cost analysis of the trees the plan trains,
see `compose.experiment.measure_device_costs`); a device's FLOP/s, radio
and power come with its client data (`data['device_profile']`), or from
`DEFAULT_DEVICE` for a problem that does not describe one.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp

from fedxr_jax.core import algorithm as algorithm_lib
from fedxr_jax.core import trees

# half_rate: the device's 16-bit over 32-bit FLOP/s (devices.Device.half_rate).
DEFAULT_DEVICE = {'train_flops': 1e12, 'tx_power_dbm': 20.0, 'compute_power_w': 5.0,
                  'half_rate': 1.0}


class DeviceCosts(NamedTuple):
  flops_per_step: float = 0.0             # one local step: forward + backward of the trained trees
  flops_per_forward_example: float = 0.0  # one example's forward pass
  # Share of those FLOPs run in 16 bits (model.dtype=bfloat16: the frozen base's dense
  # layers, counted as all of them; the float32 PEFT trees are a few percent of a step).
  half_share: float = 0.0


def payload_bits(weights: dict, shared: dict) -> jax.Array:
  """Bits of the shared modules (or module slices) a client holds (weight > 0)."""
  total = 0.0
  for r in shared:
    bits = jax.tree.map(lambda w, sub: 8.0 * trees.tree_bytes(sub), weights[r], shared[r])
    total = total + sum(jnp.mean((w > 0).astype(jnp.float32)) * b for w, b in zip(
        jax.tree.leaves(weights[r]), jax.tree.leaves(bits)))
  return total


def device_profile(data: dict) -> dict:
  return {**DEFAULT_DEVICE, **data.get('device_profile', {})}


def compute_seconds(costs: DeviceCosts, steps, extra: algorithm_lib.ClientCost,
                    train_flops, half_rate=1.0) -> jax.Array:
  """On-device seconds of a client's local steps plus an algorithm's extra work;
  the 16-bit share of the FLOPs runs at the device's half_rate times its FLOP/s."""
  seconds = (steps + extra.train_steps) * costs.flops_per_step / train_flops
  if costs.flops_per_forward_example:
    seconds = seconds + extra.forward_examples * costs.flops_per_forward_example / train_flops
  if costs.half_share:
    seconds = seconds * (1.0 - costs.half_share + costs.half_share / half_rate)
  return seconds
