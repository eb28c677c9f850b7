"""Collaborative cross-device training: offloading to a co-owned device (Solution 2).

A resource-poor device (`devices`: smart glasses by default) sends
`fraction` of its training examples (its first round(fraction x n), the
same ones every round) to a more capable device the same user owns
(`helper`: a headset, phone or edge hub), which trains on them with its own
step budget (`helper_steps`; 0: the run's local_steps, a device of compute
tier >= 1) and every role (the device's 'trainable' limits are its own).
Each round both start from the round's model: the device trains on the
examples it kept within its own budget, the helper on the offloaded ones;
the user's update is the example-weighted mean of the two (each weighs the
examples it trained on, if it ran a step), what the server would compute
had both uploaded, and it is uploaded once. Which
devices offload and how much are the method's variables: `devices`
(the assignment) and `fraction` (data in the server state, so a sweep of
fractions is one compiled program). Fraction 0 is FedAvg, bit for bit.

Cost: the offloaded examples (the float32 inputs of their present
modalities, as the simulator renders them) cross the user's personal link
(`link_mbps`) every round the user trains (the helper keeps nothing between
rounds), charged as the round's 'algorithm/offload_bits', '.../offload_s'
and the device's transmit energy '.../offload_energy_j' (P_tx x airtime,
its Table 1 radio); 'algorithm/helper_steps' counts the helper's steps,
which the device's compute seconds do not include.

Privacy: the raw examples leave the device but not the user: they stay
among devices the user owns, never reach the server or another user, and
the server sees one update per user as before, so client-level DP (the
user is the unit) keeps its guarantee. Example-level DP-SGD is not
supported yet: each device samples batches from its own share, which the
accountant's sampling rate does not model. A user who sits the round out
(availability, a deadline it cannot meet) offloads nothing.
"""
import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.core import algorithm as algorithm_lib
from fedxr_jax.core import device_costs
from fedxr_jax.data import catalog
from fedxr_jax.errors import ConfigError

HELPER_STREAM = 0x0FF1   # the helper's batch order, folded into the client's key


def view(data: dict, members, budget) -> dict:
  """`data` as one trainer sees it: the `members` ([N] bool) first, in their order,
  as its only valid examples, and its step budget."""
  size = members.shape[0]
  order = jnp.argsort(~members, stable=True)
  count = jnp.sum(members).astype(jnp.int32)
  examples = jax.tree.map(lambda x: x[order], data['examples'])
  examples = {**examples, 'example_mask': jnp.arange(size) < count}
  return {**data, 'examples': examples, 'num_examples': count,
          'step_budget': jnp.asarray(budget, jnp.int32)}


def example_bits(examples: dict):
  """[N]: bits of each example's inputs as float32 (only its present modalities,
  where the examples say which: the XR layout's x {modality: [N, ...]})."""
  x = examples['x']
  if isinstance(x, dict) and 'modality_mask' in examples:
    sizes = jnp.asarray([32.0 * np.prod(v.shape[1:]) for v in x.values()])
    return examples['modality_mask'].astype(jnp.float32) @ sizes
  leaves = jax.tree.leaves(x)
  return jnp.full((leaves[0].shape[0],), sum(32.0 * np.prod(v.shape[1:]) for v in leaves))


def combine(a, b, weight_a, weight_b):
  """The weighted mean of trees a and b (scalar weights): a itself where b weighs 0,
  b where a does."""
  total = jnp.maximum(weight_a + weight_b, 1e-9)
  mean = jax.tree.map(lambda x, y: (weight_a * x + weight_b * y) / total, a, b)
  only_b = weight_a <= 0
  return jax.tree.map(lambda m, x, y: jnp.where(weight_b > 0, jnp.where(only_b, y, m), x),
                      mean, a, b)


def offload(facts, *, fraction: float = 0.5,
            devices: tuple = ('ray_ban_meta', 'vuzix_blade_2'),
            helper: str = 'apple_vision_pro', helper_steps: int = 0,
            link_mbps: float = 20.0) -> algorithm_lib.Algorithm:
  """fraction: of an offloading device's examples sent; devices: the data.devices
  that offload; helper: the co-owned device (catalog name) that trains for them;
  helper_steps: its step budget (0: local_steps); link_mbps: the personal link."""
  if not 0.0 <= fraction <= 1.0:
    raise ConfigError(f'algorithm.offload.fraction must be in [0, 1], got {fraction}')
  unknown = sorted(set(devices) - set(facts.devices))
  if unknown:
    raise ConfigError(f'algorithm.offload.devices {unknown} are not devices of this run '
                      f'{facts.devices} (data.devices)')
  if helper not in catalog.DEVICES:
    raise ConfigError(f'algorithm.offload.helper={helper!r} is not a catalog device '
                      f'(data/devices.py: {sorted(catalog.DEVICES)})')
  if not 0 <= helper_steps <= facts.local_steps or link_mbps <= 0:
    raise ConfigError(f'algorithm.offload needs helper_steps in [0, local_steps='
                      f'{facts.local_steps}] and link_mbps > 0')
  if facts.example_dp:
    raise ConfigError('not supported yet: algorithm.name=offload with privacy.mode=example '
                      '(each device samples its own share; the accountant does not model it)')
  offloads = jnp.asarray([d in devices for d in facts.devices])
  steps = helper_steps or facts.local_steps

  def init_server_state(shared):
    del shared
    return {'fraction': jnp.float32(fraction)}

  def local_train(train, data, server_state):
    n = data['num_examples']
    index = jnp.arange(data['examples']['example_mask'].shape[0])
    moves = offloads[data.get('device', 0)] & jnp.asarray(data.get('available', True))
    k = jnp.where(moves, jnp.round(server_state['fraction'] * n), 0).astype(jnp.int32)
    sent = index < k
    # The device keeps its budget unless it sent every example (then it trains nothing).
    mine, stats = train(view(data, ~sent & (index < n),
                             jnp.where((k > 0) & (k >= n), 0,
                                       data.get('step_budget', facts.local_steps))))
    # The helper can afford every role the device could not ('trainable' is the device's).
    theirs, helper_stats = train(
        {k_: v for k_, v in view(data, sent, jnp.where(k > 0, steps, 0)).items()
         if k_ != 'trainable'}, stream=HELPER_STREAM)
    w_mine = ((n - k) * (stats['steps'] > 0)).astype(jnp.float32)
    w_theirs = (k * (helper_stats['steps'] > 0)).astype(jnp.float32)
    trained = combine(mine, theirs, w_mine, w_theirs)
    bits = jnp.sum(jnp.where(sent, example_bits(data['examples']), 0.0))
    seconds = bits / (link_mbps * 1e6)
    tx_w = 10.0 ** ((device_costs.device_profile(data)['tx_power_dbm'] - 30.0) / 10.0)
    out = {
        'loss': combine(stats['loss'], helper_stats['loss'], w_mine, w_theirs),
        'steps': stats['steps'],
        'sums': jax.tree.map(jnp.add, stats['sums'], helper_stats['sums']),
        'role_steps': jax.tree.map(jnp.add, stats['role_steps'], helper_stats['role_steps']),
        'measures': {'offload_examples': k.astype(jnp.float32), 'offload_bits': bits,
                     'offload_s': seconds, 'offload_energy_j': tx_w * seconds,
                     'helper_steps': helper_stats['steps'].astype(jnp.float32)}}
    return trained, out

  return algorithm_lib.plain('offload', init_server_state=init_server_state,
                             local_train=local_train)
