"""Resource-aware inference paths (the paper's Solution 2), a feature: `contribute(config.resource_aware, run)`.

Every example takes its own path through the model: it is read out after
its own number of backbone blocks (early exit: that block's CLS token
through the final norm and the task heads, shared by every exit), chosen
from the device's state at the moment it runs:

  battery   the device's charge at the evaluated round (`data.shift.battery`,
            the generator's own battery cycle and phase for the client),
            draining (or charging) over the round's session, example by
            example: at or below `low_battery` the first exit, at or above
            `full_battery` (or charging, or on mains) every block, linear
            in between;
  compute   the device's FLOP/s this round (stragglers included): the
            deepest exit whose modeled latency (model_scale x the exit's
            FLOPs / FLOP/s) fits `latency_slack` x the tightest Table 2
            budget of the client's tasks (at least the first exit).
  path = min of the two (policy 'resource'); every block (policy 'full': the
  control, trained the same way).
Training: each training example takes the exits in turn (example i exits
after block 1 + i mod depth), so every exit is trained by every client
(deep supervision with one shared head); the device's step costs stay those
of the full model. In the simulator every block runs and the exit selects
(static shapes, as MoE's dense experts); what a path costs is modeled.

Evaluation adds, per client, the path's costs on its device (sums over its
test examples): 'path_examples', 'path_blocks' (blocks run), 'path_latency_ms',
'path_energy_j' (seconds x the device's compute power), and over its labelled
(example, task) pairs 'path_over' [T] (latency past the task's budget) and
'path_pairs' [T]: accuracy against latency-budget violations and energy,
the Table 7 trade-off.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from fedxr_jax.core import device_costs
from fedxr_jax.core.contribution import Contribution
from fedxr_jax.data import shift
from fedxr_jax.data import synthetic
from fedxr_jax.data import world as world_lib
from fedxr_jax.errors import ConfigError
from fedxr_jax.metrics import latency

POLICIES = ('none', 'full', 'resource')


@dataclasses.dataclass(frozen=True)
class Settings:
  """The `resource_aware` block: policy none (off) | full (exits trained, every block
  run: the control) | resource (each example's exit from its device's battery and
  compute); the battery levels of the first exit and of every block; the share of
  the tightest task budget a path's modeled latency may take."""
  policy: str = 'none'
  low_battery: float = 0.2
  full_battery: float = 0.6
  latency_slack: float = 1.0


def contribute(settings, run) -> Contribution:
  """`settings`: the `resource_aware` block; `run`: the model, spec, problem and source."""
  s = Settings(**dict(settings))
  if s.policy not in POLICIES:
    raise ConfigError(f'resource_aware.policy={s.policy!r} is not one of {POLICIES}')
  if s.policy == 'none':
    return Contribution('resource_aware')
  if not 0.0 <= s.low_battery < s.full_battery <= 1.0 or s.latency_slack <= 0:
    raise ConfigError('resource_aware needs 0 <= low_battery < full_battery <= 1 and '
                      f'latency_slack > 0, got {s}')
  model, spec = run.model, run.spec
  if model.apply_path is None:
    raise ConfigError(f'not supported yet: resource_aware with model {model.name} '
                      '(it has no early exits)')
  if model.num_experts:
    raise ConfigError('not supported yet: resource_aware with model.m3t.num_experts > 0 '
                      '(the routed-token counts would include blocks past an exit)')
  profile = _profile_fn(spec)
  budgets, _ = latency.budgets(spec.tasks, dict(getattr(spec, 'latency_classes', ())))
  flops = exit_flops(run.problem, model, run.source) * spec.hardware.model_scale
  policy = Policy(s, model.depth, jnp.asarray(flops, jnp.float32),
                  jnp.asarray(budgets, jnp.float32), spec.hardware, profile, spec)
  return Contribution('resource_aware', wrap_problem=lambda p: with_paths(p, policy),
                      info=policy)


def _profile_fn(spec):
  """(source, client_id) -> the client's profile (device, battery phase): the generator's."""
  if isinstance(spec, world_lib.WorldSpec):
    return lambda source, c: world_lib.client_profile(source, c, spec)
  if isinstance(spec, synthetic.XRSpec):
    return lambda source, c: synthetic.client_profile(source, c, spec)
  raise ConfigError(f'not supported yet: resource_aware with data.source of '
                    f'{type(spec).__name__} (a recorded dataset has no battery)')


def exit_flops(problem, model, source) -> np.ndarray:
  """[depth]: XLA FLOPs of one example's forward through 1..depth blocks."""
  params = jax.eval_shape(lambda: model.init(jax.random.key(0)))
  data = jax.eval_shape(lambda: problem.client_data(source, jnp.int32(0), 'test', 0))
  one = jax.tree.map(lambda x: jax.ShapeDtypeStruct((1,) + x.shape[1:], x.dtype),
                     data['examples'])
  x = {**one['x'], **({'signature': one['signature']} if 'signature' in one else {})}
  out = []
  for e in range(1, model.depth + 1):
    cost = jax.jit(lambda p, x, m, e=e: model.apply_path(p, x, m, e)[0]).lower(
        params, x, one['modality_mask']).cost_analysis()
    out.append(float(cost.get('flops', 0.0)))
  return np.asarray(out)


class Policy:
  """The exits of a client's examples and what they cost (pure jnp functions)."""

  def __init__(self, settings: Settings, depth: int, flops, budgets, hardware, profile, spec):
    self.s, self.depth, self.flops, self.budgets = settings, depth, flops, budgets
    self.hardware, self.profile, self.spec = hardware, profile, spec

  def battery(self, source, client_id, round_idx, size: int):
    """[N] charge in [0, 1] as the session's examples run, 1 on mains or charging."""
    prof = self.profile(source, client_id)
    runtime = source['device_runtime_h'][prof['device']]
    level, charging = shift.battery(prof['battery_phase'], round_idx, runtime, self.hardware)
    hours = jnp.arange(size, dtype=jnp.float32) / size * self.hardware.round_hours
    drained = jnp.clip(level - hours / runtime, 0.0, 1.0)
    plugged = charging | source['device_mains'][prof['device']]
    return jnp.where(plugged, 1.0, drained)

  def exits(self, battery, train_flops, task_mask):
    """[N] int32 in 1..depth: min of the battery's exit and the deepest exit in budget."""
    s, d = self.s, self.depth
    share = jnp.clip((battery - s.low_battery) / (s.full_battery - s.low_battery), 0.0, 1.0)
    by_battery = 1 + jnp.floor((d - 1) * share).astype(jnp.int32)
    budget = jnp.min(jnp.where(task_mask, self.budgets, jnp.inf))
    fits = 1e3 * self.flops / train_flops <= s.latency_slack * budget
    by_compute = jnp.maximum(jnp.sum(jnp.cumprod(fits.astype(jnp.int32))), 1)
    return jnp.minimum(by_battery, by_compute).astype(jnp.int32)

  def paths(self, data, source, client_id, split, round_idx):
    size = data['examples']['example_mask'].shape[0]
    if split == 'train':   # every exit in turn
      return (1 + jnp.arange(size) % self.depth).astype(jnp.int32)
    if self.s.policy == 'full':
      return jnp.full((size,), self.depth, jnp.int32)
    device = device_costs.device_profile(data)
    return self.exits(self.battery(source, client_id, round_idx, size),
                      device['train_flops'], data['task_mask'])

  def costs(self, data, labelled):
    """The path costs of a client's examples (see the module docstring)."""
    ex, device = data['examples'], device_costs.device_profile(data)
    valid = ex['example_mask'].astype(jnp.float32)
    seconds = self.flops[ex['path'] - 1] / device['train_flops']
    ms = 1e3 * seconds
    pairs = labelled.astype(jnp.float32)
    return {'path_examples': jnp.sum(valid),
            'path_blocks': jnp.sum(valid * ex['path']),
            'path_latency_ms': jnp.sum(valid * ms),
            'path_energy_j': jnp.sum(valid * seconds * device['compute_power_w']),
            'path_over': jnp.sum(pairs * (ms[:, None] > self.budgets[None, :]), axis=0),
            'path_pairs': jnp.sum(pairs, axis=0)}


def with_paths(problem, policy: Policy):
  """`problem` whose examples carry their paths, and whose evaluation their costs."""
  inner_data, inner_stats = problem.client_data, problem.eval_stats

  def client_data(source, client_id, split, round_idx=0):
    data = inner_data(source, client_id, split, round_idx)
    path = policy.paths(data, source, client_id, split, round_idx)
    return {**data, 'examples': {**data['examples'], 'path': path}}

  def eval_stats(params, data):
    ex = data['examples']
    labelled = ex['example_mask'][:, None] & data['task_mask'][None, :]
    if 'label_mask' in ex:
      labelled = labelled & ex['label_mask']
    return {**inner_stats(params, data), **policy.costs(data, labelled)}

  return problem._replace(client_data=client_data, eval_stats=eval_stats)

